"""Berkeley Function Calling Leaderboard data, read from the installed `bfcl-eval` package.

The package is located with `importlib.util.find_spec("bfcl_eval")` and never
imported (its `__init__` pulls heavy dependencies); its `data/` folder holds:

- `BFCL_v4_<category>.json` (JSON lines): `{"id", "question": [[messages of turn 1], ...],
  "function": [docs]}`; multi-turn files carry `involved_classes` instead of `function`;
- `possible_answer/BFCL_v4_<category>.json`: `{"id", "ground_truth"}`, where the ground
  truth is a list of `{function_name: {arg: [allowed values]}}` (single turn), a list
  per turn of call strings `"name(arg=...)"` (multi-turn), or plain answer strings
  (memory, web search: no calls, so skipped and counted);
- `multi_turn_func_doc/<class>.json` (JSON lines): the docs of the multi-turn classes.

Mapping: a function `a.b.c` becomes tool_name `a.b`, api_name `c`; a name without a
dot gets tool_name `bfcl`. Category = question file category (or the func-doc file
stem). Questions with call ground truth become queries (`bfcl/<category>/<id>`,
split `test`, text = the user messages of the first turn) plus one qrel per called
function; multi-turn ground truth additionally becomes a trajectory whose messages
are the user turns interleaved with the ground-truth calls, `tool_ids` in call order.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from toolweaver.ingest import names
from toolweaver.ingest.docs import build_tool
from toolweaver.ingest.isolation import isolate, read_file
from toolweaver.ingest.quarantine import BAD_CALL, FILE_MAX_BYTES, MISSING_FIELD, decode_jsonl, expect
from toolweaver.ingest.records import ParseResult, QrelRecord, QueryRecord, TrajectoryRecord, canonical_json

SPLIT = "test"
NO_DOT_TOOL = "bfcl"
_PREFIX = "BFCL_v4_"
_ID_SUFFIX = re.compile(r"_\d+(?:-[\w]+)*$")
_CALL_NAME = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*\(")


def default_data_dir() -> Path:
    """The data folder of the installed `bfcl-eval` package, found without importing it
    (its __init__ pulls heavy dependencies)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package bfcl-eval is not installed: run `make setup` (pip install --no-deps bfcl-eval)"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"bfcl-eval is installed but has no data folder at {data}")
    return data


def split_function(name: str) -> tuple[str, str]:
    """`a.b.c` -> (`a.b`, `c`); `f` -> (`bfcl`, `f`)."""
    tool_name, dot, api_name = name.rpartition(".")
    return (tool_name, api_name) if dot and tool_name else (NO_DOT_TOOL, name)


def function_tool_id(name: str) -> str:
    return names.tool_id(*split_function(name))


def parse(path: Path | None = None, source: str = "bfcl") -> ParseResult:
    root = default_data_dir() if path is None else path
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: expected the bfcl_eval data folder")
    result = ParseResult(source)
    for doc_file in sorted((root / "multi_turn_func_doc").glob("*.json")):
        rel = f"multi_turn_func_doc/{doc_file.name}"
        for line, doc in _lines(result, root, rel):
            with isolate(result, f"{rel}#L{line}"):
                _parse_function(result, f"{rel}#L{line}", doc, category=doc_file.stem)
    for question_file in sorted(root.glob(f"{_PREFIX}*.json")):
        if _is_single_document(question_file, result):
            # e.g. BFCL_v4_format_sensitivity.json: one pretty-printed object of test-id
            # lists, not JSON-lines questions.
            result.count("non_question_files")
            continue
        category = question_file.stem.removeprefix(_PREFIX)
        answers = _answers(result, root, question_file.name)
        for line, item in _lines(result, root, question_file.name):
            with isolate(result, f"{question_file.name}#L{line}"):
                _parse_question(result, f"{question_file.name}#L{line}", item, category, answers)
    return result


def _is_single_document(path: Path, result: ParseResult) -> bool:
    """True for a pretty-printed JSON document (its first line alone is not JSON)."""
    raw = read_file(path, path.name, result, max_bytes=FILE_MAX_BYTES * 8)
    if raw is None:
        return True  # refused or unreadable (quarantined): not read as questions either
    first = raw.lstrip().split(b"\n", 1)[0]
    try:
        json.loads(first)
        return False  # JSON lines
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        pass
    try:
        json.loads(raw)
        return True
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return False  # broken JSON lines: the line reader quarantines each bad line


def _lines(result: ParseResult, root: Path, rel: str) -> list[tuple[int, Any]]:
    raw = read_file(root / rel, rel, result, max_bytes=FILE_MAX_BYTES * 8)
    return [] if raw is None else decode_jsonl(raw, rel, result)


def _answers(result: ParseResult, root: Path, name: str) -> dict[str, list[Any]]:
    rel = f"possible_answer/{name}"
    if not (root / rel).is_file():
        return {}
    out: dict[str, list[Any]] = {}
    for line, item in _lines(result, root, rel):
        loc = f"{rel}#L{line}"
        with isolate(result, loc):
            if expect(item, dict, loc, result) and expect(
                item.get("ground_truth"), list, f"{loc}.ground_truth", result
            ):
                out[str(item.get("id"))] = item["ground_truth"]
    return out


def _parse_function(result: ParseResult, loc: str, doc: Any, *, category: str) -> None:
    if not expect(doc, dict, loc, result):
        return
    name = doc.get("name")
    problem = names.name_problem(name)
    if problem is not None:
        result.reject(loc, problem, doc)
        return
    result.count("function_docs_read")
    tool_name, api_name = split_function(name)
    record = build_tool(
        result,
        loc,
        tool_name=tool_name,
        api_name=api_name,
        category=category,
        description=doc.get("description"),
        parameters=doc.get("parameters", {}),
    )
    if record is not None:
        result.tools.append(record)


def _parse_question(result: ParseResult, loc: str, item: Any, category: str, answers: dict[str, list[Any]]) -> None:
    if not expect(item, dict, loc, result):
        return
    raw_id = item.get("id")
    if not isinstance(raw_id, str):
        result.reject(loc, MISSING_FIELD, {"id": raw_id})
        return
    for index, doc in enumerate(item.get("function") or []):
        _parse_function(result, f"{loc}.function[{index}]", doc, category=category)
    truth = answers.get(raw_id)
    turns = item.get("question")
    if truth is None:
        return
    if not truth or not all(isinstance(t, (dict, list)) for t in truth):
        result.count("questions_without_call_ground_truth")  # memory / web search answers
        return
    if not expect(turns, list, f"{loc}.question", result):
        return
    group = _ID_SUFFIX.sub("", raw_id) or category
    query_id = f"{result.source}/{group}/{raw_id}"
    result.queries.append(QueryRecord(query_id, raw_id, _first_user_text(turns), result.source, SPLIT, group))
    if all(isinstance(t, dict) for t in truth):
        result.count("questions_with_call_ground_truth")
        called = [name for call in truth for name in call]
    else:
        result.count("multi_turn_questions")
        called = _trajectory(result, loc, query_id, turns, truth)
    for tool_id in sorted({function_tool_id(name) for name in called}):
        result.qrels.append(QrelRecord(query_id, tool_id, 1, result.source))


def _first_user_text(turns: list[Any]) -> str:
    first = turns[0] if turns and isinstance(turns[0], list) else []
    return "\n".join(
        m["content"]
        for m in first
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
    )


def _trajectory(result: ParseResult, loc: str, query_id: str, turns: list[Any], truth: list[Any]) -> list[str]:
    messages: list[dict[str, Any]] = []
    called: list[str] = []
    for turn_index, calls in enumerate(truth):
        user = turns[turn_index] if turn_index < len(turns) and isinstance(turns[turn_index], list) else []
        messages.extend(m for m in user if isinstance(m, dict))
        for call_index, call in enumerate(calls if isinstance(calls, list) else []):
            match = _CALL_NAME.match(call) if isinstance(call, str) else None
            if match is None:
                result.reject(f"{loc}.ground_truth[{turn_index}][{call_index}]", BAD_CALL, call)
                continue
            messages.append({"role": "assistant", "content": call})
            called.append(match.group(1))
    tool_ids = tuple(function_tool_id(name) for name in called)
    result.trajectories.append(TrajectoryRecord(query_id, query_id, canonical_json(messages), tool_ids, result.source))
    return called
