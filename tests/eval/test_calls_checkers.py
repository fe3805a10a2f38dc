"""Scorer parity: bfcl-eval's own AST and multi-turn checkers, as loaded by
`toolweaver.eval.bfcl_checkers`, accept BFCL's own answers and reject corrupted ones."""

from __future__ import annotations

import copy
import importlib.util
import sys

import pytest

from toolweaver.align.splits import bfcl_half
from toolweaver.eval import bfcl_checkers
from toolweaver.eval.calls import SINGLE_TURN, load_category, reference_calls, score_multi_turn, score_single_turn
from toolweaver.ingest.bfcl import default_data_dir

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval is not installed")

# BFCL possible answers that contradict their own function document, so that bfcl-eval's
# checker rejects every rendering of them: the answer omits a parameter the document
# requires (or lists no value for it), or uses a parameter the document does not have.
CONTRADICTORY_ANSWERS = {
    "live_simple_106-63-0",
    "live_simple_112-68-0",
    "live_multiple_507-149-4",
    "live_multiple_862-181-3",
    "live_multiple_964-207-0",
}


def test_checker_imports_without_model_clients_and_leaves_no_stand_in() -> None:
    module = bfcl_checkers.ast_module()
    assert module.__name__ == "bfcl_eval.eval_checker.ast_eval.ast_checker"
    assert "bfcl_eval.constants.model_config" not in sys.modules  # the stand-in was removed
    assert "anthropic" not in sys.modules and "openai" not in sys.modules


@pytest.mark.parametrize("category", SINGLE_TURN)
def test_possible_answers_score_one(category: str) -> None:
    """Every question of every single-turn category (both halves): BFCL's possible answer
    scores 1.0, except the answers listed above, which contradict their documents."""
    rejected = {
        q["id"]
        for q in load_category(default_data_dir(), category)
        if not score_single_turn(q, reference_calls(q["function"], q["ground_truth"]), category)
    }
    assert rejected == {i for i in CONTRADICTORY_ANSWERS if i.startswith(category + "_")}


def _corrupt(calls: list[dict]) -> list[dict] | None:
    """The first string or number argument changed to a value no answer allows."""
    out = copy.deepcopy(calls)
    for call in out:
        for args in call.values():
            for key, value in args.items():
                if isinstance(value, str):
                    args[key] = value + " zzz corrupted"
                    return out
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    args[key] = value + 7919
                    return out
    return None


@pytest.mark.parametrize("category", SINGLE_TURN)
def test_a_corrupted_argument_is_rejected(category: str) -> None:
    questions = [q for q in load_category(default_data_dir(), category) if q["id"] not in CONTRADICTORY_ANSWERS]
    checked = 0
    for question in questions[:60]:
        corrupted = _corrupt(reference_calls(question["function"], question["ground_truth"]))
        if corrupted is not None:
            assert not score_single_turn(question, corrupted, category), question["id"]
            checked += 1
    assert checked >= 40


def test_multi_turn_checker_accepts_ground_truth_and_rejects_truncation() -> None:
    """Held-out conversations: the ground-truth call sequence passes bfcl-eval's state and
    response checks; dropping the last call of the last turn with calls fails them."""
    entries = [e for e in load_category(default_data_dir(), "multi_turn_base") if bfcl_half(e["id"]) == "heldout"]
    for entry in entries[:25]:
        truth = entry["ground_truth"]
        assert score_multi_turn(entry, [[turn] for turn in truth]), entry["id"]
        last = max(i for i, turn in enumerate(truth) if turn)
        truncated = [list(turn) for turn in truth]
        truncated[last] = truncated[last][:-1]
        assert not score_multi_turn(entry, [[turn] for turn in truncated]), entry["id"]
        # the same entry checked again starts from its initial state (no leaked instances)
        assert score_multi_turn(entry, [[turn] for turn in truth]), entry["id"]
