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
stem).

Tool identity: in BFCL one function name often carries several documents (426 of the
1,274 names of the six single-turn categories), so a tool is one distinct function
document: `tool_id` = `<tool_name>&&<api_name>~<first 10 hex of doc_hash>` (`doc_hash`
covers name, description and parameters, not the category, so the same document in two
categories is one tool). A question's calls resolve to the documents that question was
given (multi-turn calls: to the docs of its involved classes).

Questions with call ground truth become queries (`bfcl/<category>/<id>`, text = the
user messages of the first turn) plus one qrel per called function. The split is BFCL's
one split (`toolweaver.align.splits.bfcl_half`, by the question's or conversation's own
id): the train half gets split `train`, the held-out half `test` (a held-out source
split, so no example built from it is trained on). Multi-turn ground truth additionally
becomes a trajectory: the user turns interleaved with one assistant message per call,
written as `function_call` with JSON arguments (BFCL's call strings sometimes pass
positional arguments: they are named by the document's parameter order) in the stored
document's property order (sorted); `tool_ids` in call order.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from toolweaver.align.splits import bfcl_half
from toolweaver.ingest import names
from toolweaver.ingest.docs import build_tool
from toolweaver.ingest.isolation import isolate, read_file
from toolweaver.ingest.quarantine import BAD_CALL, FILE_MAX_BYTES, MISSING_FIELD, decode_jsonl, expect
from toolweaver.ingest.records import (
    ParseResult,
    QrelRecord,
    QueryRecord,
    ToolRecord,
    TrajectoryRecord,
    canonical_json,
)

TRAIN_SPLIT, HELDOUT_SPLIT = "train", "test"
DIGEST_SEP, DIGEST_CHARS = "~", 10
NO_DOT_TOOL = "bfcl"
_PREFIX = "BFCL_v4_"
_ID_SUFFIX = re.compile(r"_\d+(?:-[\w]+)*$")


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


def document_tool_id(record: ToolRecord) -> str:
    """One distinct function document: name plus the start of its doc digest."""
    return f"{names.tool_id(record.tool_name, record.api_name)}{DIGEST_SEP}{record.doc_hash[:DIGEST_CHARS]}"


def document_id(doc: dict[str, Any]) -> str | None:
    """The tool id of one BFCL function document as ingest gives it (None when ingest
    would quarantine it): how evaluation maps a question's functions to catalog tools."""
    name = doc.get("name")
    if not isinstance(name, str) or names.name_problem(name) is not None:
        return None
    tool_name, api_name = split_function(name)
    record = build_tool(
        ParseResult("bfcl"),
        "",
        tool_name=tool_name,
        api_name=api_name,
        category="",
        description=doc.get("description"),
        parameters=doc.get("parameters", {}),
    )
    return None if record is None else document_tool_id(record)


# bfcl-eval's class -> doc file (multi_turn_checker.MULTI_TURN_FUNC_DOC_FILE_MAPPING), copied:
# this adapter reads the data files and never imports the package.
CLASS_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
    "WebSearchAPI": "web_search",
    "MemoryAPI_kv": "memory_kv",
    "MemoryAPI_vector": "memory_vector",
    "MemoryAPI_rec_sum": "memory_rec_sum",
}


def parse(path: Path | None = None, source: str = "bfcl") -> ParseResult:
    root = default_data_dir() if path is None else path
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: expected the bfcl_eval data folder")
    result = ParseResult(source)
    class_docs: dict[str, dict[str, _Doc]] = {}
    for doc_file in sorted((root / "multi_turn_func_doc").glob("*.json")):
        rel = f"multi_turn_func_doc/{doc_file.name}"
        docs = class_docs.setdefault(doc_file.stem, {})
        for line, doc in _lines(result, root, rel):
            with isolate(result, f"{rel}#L{line}"):
                parsed = _parse_function(result, f"{rel}#L{line}", doc, category=doc_file.stem)
                if parsed is not None:
                    docs[parsed.name] = parsed
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
                _parse_question(result, f"{question_file.name}#L{line}", item, category, answers, class_docs)
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


@dataclass(frozen=True)
class _Doc:
    """A parsed function document: its BFCL name, tool id and parameter order."""

    name: str
    tool_id: str
    parameter_order: tuple[str, ...]


def _parse_function(result: ParseResult, loc: str, doc: Any, *, category: str) -> _Doc | None:
    if not expect(doc, dict, loc, result):
        return None
    name = doc.get("name")
    problem = names.name_problem(name)
    if problem is not None:
        result.reject(loc, problem, doc)
        return None
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
    if record is None:
        return None
    record = replace(record, tool_id=document_tool_id(record))
    result.tools.append(record)
    properties = doc.get("parameters", {}).get("properties") if isinstance(doc.get("parameters"), dict) else None
    return _Doc(name, record.tool_id, tuple(properties) if isinstance(properties, dict) else ())


def _parse_question(
    result: ParseResult,
    loc: str,
    item: Any,
    category: str,
    answers: dict[str, list[Any]],
    class_docs: dict[str, dict[str, _Doc]],
) -> None:
    if not expect(item, dict, loc, result):
        return
    raw_id = item.get("id")
    if not isinstance(raw_id, str):
        result.reject(loc, MISSING_FIELD, {"id": raw_id})
        return
    given: dict[str, _Doc] = {}
    for index, doc in enumerate(item.get("function") or []):
        parsed = _parse_function(result, f"{loc}.function[{index}]", doc, category=category)
        if parsed is not None:
            given[parsed.name] = parsed
    for class_name in item.get("involved_classes") or []:
        given.update(class_docs.get(CLASS_DOC_FILES.get(str(class_name), ""), {}))
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
    split = TRAIN_SPLIT if bfcl_half(raw_id) == "train" else HELDOUT_SPLIT
    result.queries.append(QueryRecord(query_id, raw_id, _first_user_text(turns), result.source, split, group))
    if all(isinstance(t, dict) for t in truth):
        result.count("questions_with_call_ground_truth")
        called = [name for call in truth for name in call]
    else:
        result.count("multi_turn_questions")
        called = _trajectory(result, loc, query_id, turns, truth, given)
    tool_ids = set()
    for name in called:
        if name not in given:
            result.reject(loc, BAD_CALL, {"call": name, "reason": "called function has no document in the question"})
            continue
        tool_ids.add(given[name].tool_id)
    for tool_id in sorted(tool_ids):
        result.qrels.append(QrelRecord(query_id, tool_id, 1, result.source))


def _first_user_text(turns: list[Any]) -> str:
    first = turns[0] if turns and isinstance(turns[0], list) else []
    return "\n".join(
        m["content"]
        for m in first
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
    )


def _trajectory(
    result: ParseResult, loc: str, query_id: str, turns: list[Any], truth: list[Any], given: dict[str, _Doc]
) -> list[str]:
    messages: list[dict[str, Any]] = []
    called: list[str] = []
    for turn_index, calls in enumerate(truth):
        user = turns[turn_index] if turn_index < len(turns) and isinstance(turns[turn_index], list) else []
        messages.extend(m for m in user if isinstance(m, dict))
        for call_index, call in enumerate(calls if isinstance(calls, list) else []):
            parsed = parse_call(call) if isinstance(call, str) else None
            if parsed is None or parsed[0] not in given:
                result.reject(f"{loc}.ground_truth[{turn_index}][{call_index}]", BAD_CALL, call)
                continue
            name, arguments = parsed
            # Named by the document's parameter order; written in the stored document's order
            # (canonical JSON sorts property names), the order the agent's grammar emits.
            named = named_arguments(arguments, given[name].parameter_order)
            function_call = {"name": name, "arguments": json.dumps(dict(sorted(named.items())), ensure_ascii=False)}
            messages.append({"role": "assistant", "content": "", "function_call": function_call})
            called.append(name)
    tool_ids = tuple(given[name].tool_id for name in called)
    result.trajectories.append(TrajectoryRecord(query_id, query_id, canonical_json(messages), tool_ids, result.source))
    return called


def parse_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """`("mv", {"source": "a", "_0": 1})` for `mv(1, source='a')` (positional arguments as
    `_0`, `_1`…), read with `ast` and never evaluated; None when `text` is not one call of
    literals."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not isinstance(node, ast.Call):
            return None
        arguments = {f"_{i}": ast.literal_eval(a) for i, a in enumerate(node.args)}
        arguments.update({kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None})
    except (SyntaxError, ValueError):
        return None
    return ast.unparse(node.func), arguments


def named_arguments(arguments: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """Positional arguments (`_0`…) named by the document's parameter order, then all
    arguments in that order (unknown names last, as given)."""
    named = {}
    for key, value in arguments.items():
        index = int(key[1:]) if key.startswith("_") and key[1:].isdigit() else None
        named[order[index] if index is not None and index < len(order) else key] = value
    rank = {name: i for i, name in enumerate(order)}
    return dict(sorted(named.items(), key=lambda kv: rank.get(kv[0], len(rank))))
