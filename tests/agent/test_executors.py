"""Executors: parity with bfcl-eval's own execution of BFCL's ground-truth calls, and
the "no executor" observation."""

from __future__ import annotations

import importlib.util

import pytest

from toolweaver.agent.executors import NO_EXECUTOR, BfclExecutor, NoExecutor
from toolweaver.align.splits import bfcl_half
from toolweaver.eval.calls import load_category
from toolweaver.ingest.bfcl import default_data_dir, parse_call

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval is not installed")


CLASSES = {
    "GorillaFileSystem",
    "MathAPI",
    "MessageAPI",
    "TwitterAPI",
    "TicketAPI",
    "TradingBot",
    "TravelAPI",
    "VehicleControlAPI",
}


def _heldout_conversations(n: int) -> list[dict]:
    entries = load_category(default_data_dir(), "multi_turn_base")
    return [e for e in entries if bfcl_half(e["id"]) == "heldout"][:n]


def _covering_every_class() -> list[dict]:
    """The first held-out conversation of each class (one conversation may cover several)."""
    chosen: list[dict] = []
    for entry in _heldout_conversations(200):
        if set(entry["involved_classes"]) - {c for e in chosen for c in e["involved_classes"]}:
            chosen.append(entry)
    return chosen


def test_ground_truth_runs_as_in_bfcl_eval() -> None:
    """Same observations after every call and the same final state as bfcl-eval's own
    `execute_multi_turn_func_call` (its `eval` path) on held-out conversations."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import state_checker
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import execute_multi_turn_func_call

    entries = _covering_every_class()
    assert {c for e in entries for c in e["involved_classes"]} == CLASSES
    for entry in entries:
        ours = BfclExecutor(entry["initial_config"], entry["involved_classes"])
        for turn in entry["ground_truth"]:
            expected, theirs = execute_multi_turn_func_call(
                turn, entry["initial_config"], entry["involved_classes"], "tw_parity", entry["id"]
            )
            observed = []
            for call in turn:
                name, arguments = parse_call(call)
                observed.append(ours.run(name, arguments))
            assert observed == expected, entry["id"]
            assert state_checker(ours.instances, theirs)["valid"], entry["id"]


def test_a_wrong_argument_changes_the_state() -> None:
    """The parity above can fail: a different folder name leaves a different file system."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import state_checker

    entry = next(e for e in _heldout_conversations(40) if e["involved_classes"] == ["GorillaFileSystem"])
    right = BfclExecutor(entry["initial_config"], entry["involved_classes"])
    wrong = BfclExecutor(entry["initial_config"], entry["involved_classes"])
    right.run("mkdir", {"dir_name": "reports"})
    wrong.run("mkdir", {"dir_name": "report"})
    assert not state_checker(wrong.instances, right.instances)["valid"]


def test_unknown_tools_get_the_no_executor_observation() -> None:
    entry = _heldout_conversations(1)[0]
    executor = BfclExecutor(entry["initial_config"], entry["involved_classes"])
    assert not executor.can_run("get_weather")
    assert executor.run("get_weather", {"city": "Paris"}) == NO_EXECUTOR.format(name="get_weather")
    assert NoExecutor().run("cd", {"folder": "a"}) == NO_EXECUTOR.format(name="cd")


def test_only_bfcl_classes_can_be_instantiated() -> None:
    with pytest.raises(KeyError, match="not one of bfcl-eval's executable classes"):
        BfclExecutor({}, ["os"])
