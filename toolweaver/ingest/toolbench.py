"""The ToolBench release layout, as a folder or a streamed .tar.gz.

Files are recognised by their JSON shape (any prefix, any subset present):

- tool file `<Category>/<tool>.json`: an object with `api_list`; the category is the
  file's parent folder name; each API becomes a tool record keyed by the raw
  `tool_name` (falling back to `name`) and the API's `name`;
- instruction file (`G*_query.json`): a list of queries, see `instructions.py`;
  `query_group` is the file stem without `_query` (`G1_query.json` -> `G1`);
- answer file (`G*_answer/<id>_*.json`): an object with `answer_generation`; its
  longest `train_messages` list becomes a trajectory
  (`trajectory_id` = `toolbench/<group>/<file stem>`, `query_id` =
  `toolbench/<group>/<id>`, group = parent folder without `_answer`). Calls name
  functions by ToolBench's standardised name; they are resolved through an index of
  the catalog (this ingest's tools plus the `catalog` passed in). A call that matches
  no tool or several tools is quarantined (`unresolved_call` / `ambiguous_call`) and
  left out of `tool_ids`; `Finish` is the end marker, not a tool.
  Answer files without `train_messages` (failed searches) are counted, not quarantined.

Queries of this source get split `train` (ToolBench instructions are training data).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from toolweaver.ingest import names
from toolweaver.ingest.docs import build_tool
from toolweaver.ingest.instructions import parse_instruction_file
from toolweaver.ingest.isolation import isolate, read_files
from toolweaver.ingest.quarantine import (
    AMBIGUOUS_CALL,
    MISSING_FIELD,
    UNRESOLVED_CALL,
    WRONG_TYPE,
    decode_json,
    expect,
)
from toolweaver.ingest.records import ParseResult, QueryRecord, TrajectoryRecord, canonical_json

log = logging.getLogger(__name__)

SPLIT = "train"
FINISH = "Finish"


def parse(path: Any, catalog: Iterable[tuple[str, str]] = (), source: str = "toolbench") -> ParseResult:
    """Parse tool, instruction and answer files under `path` (folder or .tar.gz).

    `catalog`: (tool_name, api_name) pairs already known (e.g. the store's tools),
    used with this ingest's own tools to resolve answer-file calls.
    """
    result = ParseResult(source)
    answers: list[tuple[str, dict[str, Any]]] = []
    for rel, raw in read_files(path, result):
        with isolate(result, rel):
            _parse_file(result, rel, raw, answers)
    index = function_index([*catalog, *((t.tool_name, t.api_name) for t in result.tools)])
    for rel, data in answers:
        with isolate(result, rel):
            _parse_answer_file(result, rel, data, index)
    return result


def _parse_file(result: ParseResult, rel: str, raw: bytes, answers: list[tuple[str, dict[str, Any]]]) -> None:
    data = decode_json(raw, rel, result)
    if data is None:
        return
    if isinstance(data, list):
        group = _strip_suffix(PurePosixPath(rel).stem, "_query")
        parse_instruction_file(result, rel, data, group=group, split=SPLIT)
    elif isinstance(data, dict) and "answer_generation" in data:
        answers.append((rel, data))  # resolved once every tool of this ingest is known
    elif isinstance(data, dict) and "api_list" in data:
        _parse_tool_file(result, rel, data)
    else:
        result.reject(rel, WRONG_TYPE, "not a ToolBench tool, instruction or answer file: " + str(data)[:300])


def function_index(pairs: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """Standardised function name -> the tool_ids that produce it (usually one)."""
    index: dict[str, set[str]] = defaultdict(set)
    for tool_name, api_name in pairs:
        index[names.function_name(tool_name, api_name)].add(names.tool_id(tool_name, api_name))
    return {name: frozenset(ids) for name, ids in index.items()}


def _parse_tool_file(result: ParseResult, rel: str, data: dict[str, Any]) -> None:
    result.count("tool_files")
    parts = PurePosixPath(rel).parts
    category = parts[-2] if len(parts) >= 2 else ""
    tool_name = data.get("tool_name", data.get("name"))
    apis = data["api_list"]
    if not expect(apis, list, f"{rel}#api_list", result):
        return
    for index, api in enumerate(apis):
        loc = f"{rel}#api_list[{index}]"
        result.count("api_entries")
        with isolate(result, loc):
            _parse_tool_api(result, loc, api, tool_name, category)


def _parse_tool_api(result: ParseResult, loc: str, api: Any, tool_name: Any, category: str) -> None:
    if not expect(api, dict, loc, result):
        return
    required = api.get("required_parameters", [])
    optional = api.get("optional_parameters", [])
    if not (
        expect(required, list, f"{loc}.required_parameters", result)
        and expect(optional, list, f"{loc}.optional_parameters", result)
    ):
        return
    record = build_tool(
        result,
        loc,
        tool_name=tool_name,
        api_name=api.get("name"),
        category=category,
        description=api.get("description"),
        parameters={"required": required, "optional": optional},
    )
    if record is not None:
        result.tools.append(record)


def _parse_answer_file(result: ParseResult, rel: str, data: dict[str, Any], index: dict[str, frozenset[str]]) -> None:
    result.count("answer_files")
    generation = data["answer_generation"]
    if not expect(generation, dict, f"{rel}#answer_generation", result):
        return
    path = PurePosixPath(rel)
    group = _strip_suffix(path.parent.name, "_answer")
    raw_id = path.stem.split("_", 1)[0]
    query_id = f"{result.source}/{group}/{raw_id}"
    text = generation.get("query")
    if isinstance(text, str) and text.strip():
        result.queries.append(QueryRecord(query_id, raw_id, text, result.source, SPLIT, group))
    paths = generation.get("train_messages") or []
    if not expect(paths, list, f"{rel}#train_messages", result):
        return
    if not paths:
        result.count("answers_without_train_messages")
        log.info("%s: no train_messages (a failed search); no trajectory", rel)
        return
    # train_messages holds growing prefixes of one conversation; the longest is complete.
    longest = max(range(len(paths)), key=lambda k: (len(paths[k]) if isinstance(paths[k], list) else -1, -k))
    messages = paths[longest]
    loc = f"{rel}#train_messages[{longest}]"
    if not expect(messages, list, loc, result):
        return
    tool_ids = _resolve_calls(result, loc, messages, index)
    result.trajectories.append(
        TrajectoryRecord(
            f"{result.source}/{group}/{path.stem}", query_id, canonical_json(messages), tuple(tool_ids), result.source
        )
    )


def _resolve_calls(result: ParseResult, loc: str, messages: list[Any], index: dict[str, frozenset[str]]) -> list[str]:
    tool_ids: list[str] = []
    for position, message in enumerate(messages):
        call = message.get("function_call") if isinstance(message, dict) else None
        if call is None:
            continue
        name = call.get("name") if isinstance(call, dict) else None
        if not isinstance(name, str):
            result.reject(f"{loc}[{position}]", MISSING_FIELD, call)
            continue
        if name == FINISH:
            continue
        matches = index.get(name, frozenset())
        if len(matches) == 1:
            tool_ids.append(next(iter(matches)))
        elif not matches:
            result.reject(f"{loc}[{position}]", UNRESOLVED_CALL, f"{name}: no catalog tool has this standardised name")
        else:
            result.reject(f"{loc}[{position}]", AMBIGUOUS_CALL, f"{name}: {sorted(matches)}")
    return tool_ids


def _strip_suffix(text: str, suffix: str) -> str:
    return text[: -len(suffix)] if text.endswith(suffix) and text != suffix else text
