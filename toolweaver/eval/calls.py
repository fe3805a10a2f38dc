"""Call accuracy on BFCL, scored by bfcl-eval's own checkers (`bfcl_checkers`).

Single-turn categories are scored by the AST checker on `[{name: {arg: value}}]`;
`multi_turn_base` by the multi-turn checker (state and response after every turn) on
call strings. This module holds the pure pieces: the categories, BFCL question/answer
loading, rendering a call as the checkers expect, and the reference rendering of BFCL's
possible answers (what a perfect model would emit), used by the parity tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolweaver.eval import bfcl_checkers

SINGLE_TURN: tuple[str, ...] = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
)
MULTI_TURN: tuple[str, ...] = ("multi_turn_base",)
CATEGORIES: tuple[str, ...] = SINGLE_TURN + MULTI_TURN
_PREFIX = "BFCL_v4_"


def load_category(data_dir: Path, category: str) -> list[dict[str, Any]]:
    """The questions of one category, each with its `ground_truth` attached."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; expected one of {CATEGORIES}")
    questions = _jsonl(data_dir / f"{_PREFIX}{category}.json")
    answers = {a["id"]: a["ground_truth"] for a in _jsonl(data_dir / "possible_answer" / f"{_PREFIX}{category}.json")}
    missing = [q["id"] for q in questions if q["id"] not in answers]
    if missing:
        raise ValueError(f"{category}: {len(missing)} questions have no possible answer, e.g. {missing[:3]}")
    return [{**q, "ground_truth": answers[q["id"]]} for q in questions]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def call_string(name: str, arguments: Mapping[str, Any]) -> str:
    """`name(a=1, b='x')`: a call as the multi-turn checker executes it (Python literals)."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def reference_calls(functions: Sequence[Mapping[str, Any]], ground_truth: Sequence[Mapping[str, Any]]) -> list[dict]:
    """BFCL's possible answer rendered as one model output: per parameter the first allowed
    value; a parameter whose options include `""` (may be omitted) is left out unless the
    document lists it as required. Nested dicts in possible answers hold option lists one
    level deep (bfcl-eval's `dict_checker` reads them so)."""
    required = {f["name"]: set(f.get("parameters", {}).get("required", [])) for f in functions}
    calls = []
    for call in ground_truth:
        for name, params in call.items():
            args = {}
            for param, options in params.items():
                values = [o for o in options if o != ""]
                if values and ("" not in options or param in required.get(name, set())):
                    args[param] = _reference_value(values[0])
            calls.append({name: args})
    return calls


def _reference_value(value: Any) -> Any:
    if isinstance(value, dict):
        return _flat_options(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_flat_options(v) for v in value]
    return value


def _flat_options(options: Mapping[str, list[Any]]) -> dict[str, Any]:
    return {k: o[0] for k, o in options.items() if o and "" not in o}


def score_single_turn(question: Mapping[str, Any], calls: list[dict[str, dict[str, Any]]], category: str) -> bool:
    """AST accuracy of one question (bfcl-eval's verdict)."""
    verdict = bfcl_checkers.ast_check(list(question["function"]), calls, list(question["ground_truth"]), category)
    return bool(verdict["valid"])


def score_multi_turn(entry: Mapping[str, Any], calls_per_turn: list[list[list[str]]]) -> bool:
    """State-and-response accuracy of one conversation (bfcl-eval's verdict)."""
    verdict = bfcl_checkers.multi_turn_check(
        calls_per_turn, list(entry["ground_truth"]), dict(entry), "multi_turn_base"
    )
    return bool(verdict["valid"])
