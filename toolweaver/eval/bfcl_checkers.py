"""bfcl-eval's own scorers (AST checker, multi-turn checker), imported without its model clients.

`bfcl_eval.eval_checker.ast_eval.ast_checker` imports `bfcl_eval.constants.model_config`
for one lookup (`MODEL_CONFIG_MAPPING[model].underscore_to_dot`, whether a vendor API
rewrote `.` to `_` in function names), and that module imports every model client
(anthropic, openai, cohere, …), which a `--no-deps` install of bfcl-eval lacks and a
scorer does not need. The loader below puts a stand-in for that one module in
`sys.modules` only while the checker is imported, then restores whatever was there: the
checker keeps a reference to the stand-in's mapping, nothing else in the process sees
it. The stand-in knows one model name, `toolweaver`, whose calls keep their dots (our
agent emits the documented name). Everything else executed is bfcl-eval's own code;
`tests/eval/test_calls_checkers.py` proves parity on BFCL's own possible answers.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass
from functools import cache
from typing import Any

MODEL_NAME = "toolweaver"
_MODEL_CONFIG = "bfcl_eval.constants.model_config"
_AST_CHECKER = "bfcl_eval.eval_checker.ast_eval.ast_checker"
_MULTI_TURN_CHECKER = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker"
_MULTI_TURN_UTILS = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils"


@dataclass(frozen=True)
class _StandInModelConfig:
    """The one field the AST checker reads from bfcl-eval's ModelConfig."""

    underscore_to_dot: bool = False


def _stand_in_model_config() -> types.ModuleType:
    module = types.ModuleType(_MODEL_CONFIG, "stand-in: toolweaver.eval.bfcl_checkers (no model clients)")
    module.MODEL_CONFIG_MAPPING = {MODEL_NAME: _StandInModelConfig()}  # type: ignore[attr-defined]
    return module


@cache
def ast_module() -> types.ModuleType:
    """bfcl-eval's `ast_checker` module, imported with the model-config stand-in."""
    if _AST_CHECKER in sys.modules:
        return sys.modules[_AST_CHECKER]
    previous = sys.modules.get(_MODEL_CONFIG)
    sys.modules[_MODEL_CONFIG] = _stand_in_model_config()
    try:
        return importlib.import_module(_AST_CHECKER)
    finally:
        if previous is None:
            del sys.modules[_MODEL_CONFIG]
        else:
            sys.modules[_MODEL_CONFIG] = previous


@cache
def multi_turn_module() -> types.ModuleType:
    """bfcl-eval's `multi_turn_checker` module (imports cleanly: no stand-in needed)."""
    return importlib.import_module(_MULTI_TURN_CHECKER)


def ast_check(
    functions: list[dict[str, Any]], calls: list[dict[str, dict[str, Any]]], possible_answer: list[Any], category: str
) -> dict[str, Any]:
    """bfcl-eval's `ast_checker` on one question: `calls` = `[{name: {arg: value}}]`.
    Returns its verdict dict (`valid`, and `error`/`error_type` when invalid)."""
    module = ast_module()
    language = importlib.import_module("bfcl_eval.constants.enums").Language.PYTHON
    return module.ast_checker(functions, calls, possible_answer, language, category, MODEL_NAME)


def multi_turn_check(
    calls_per_turn: list[list[list[str]]], ground_truth: list[list[str]], entry: dict[str, Any], category: str
) -> dict[str, Any]:
    """bfcl-eval's `multi_turn_checker` (state and response checks after every turn).
    `calls_per_turn[t][s]` = the call strings (`f(a=1)`) of step s of turn t.

    bfcl-eval keeps the simulated class instances in its utils module's globals, keyed by
    model name and entry id, so that later turns of one run see earlier state; a second
    check of the same entry would start from the first one's final state. Each check gets
    its own model name and its instances are dropped afterwards."""
    global _checks
    _checks += 1
    run_name = f"{MODEL_NAME}_check{_checks}"
    utils = importlib.import_module(_MULTI_TURN_UTILS)
    try:
        return multi_turn_module().multi_turn_checker(calls_per_turn, ground_truth, entry, category, run_name)
    finally:
        for key in [k for k in vars(utils) if k.startswith(f"{run_name}_")]:
            delattr(utils, key)


_checks = 0
