"""ToolBench-format instruction files (shared by the toolbench and stabletoolbench sources).

An instruction file is a JSON list of queries:

    {"query": str, "query_id": int|str, "relevant APIs": [[tool_name, api_name], ...],
     "api_list": [{"category_name", "tool_name", "api_name", "api_description",
                   "required_parameters", "optional_parameters", ...}, ...]}

Each query gives one `queries` row (`query_id` = `<source>/<group>/<raw id>`), one
`qrels` row (relevance 1) per relevant API, and one tool record per `api_list` entry.
"""

from __future__ import annotations

from typing import Any

from toolweaver.ingest import names
from toolweaver.ingest.docs import build_tool
from toolweaver.ingest.isolation import isolate
from toolweaver.ingest.quarantine import MISSING_FIELD, expect
from toolweaver.ingest.records import ParseResult, QrelRecord, QueryRecord


def parse_instruction_file(result: ParseResult, rel: str, data: Any, *, group: str, split: str) -> None:
    if not expect(data, list, rel, result):
        return
    result.count("instruction_files")
    for index, item in enumerate(data):
        with isolate(result, f"{rel}#{index}"):
            _parse_query(result, f"{rel}#{index}", item, group=group, split=split)


def _parse_query(result: ParseResult, loc: str, item: Any, *, group: str, split: str) -> None:
    if not expect(item, dict, loc, result):
        return
    text, raw_id = item.get("query"), item.get("query_id")
    if text is None or raw_id is None:
        result.reject(loc, MISSING_FIELD, {k: item.get(k) for k in ("query", "query_id")})
        return
    if not expect(text, str, f"{loc}.query", result) or not expect(raw_id, (int, str), f"{loc}.query_id", result):
        return
    query_id = f"{result.source}/{group}/{raw_id}"
    result.queries.append(QueryRecord(query_id, str(raw_id), text, result.source, split, group))
    result.count("queries_read")
    for api_index, api in enumerate(_as_list(item.get("api_list"), f"{loc}.api_list", result)):
        _parse_api(result, f"{loc}.api_list[{api_index}]", api)
    for rel_index, pair in enumerate(_as_list(item.get("relevant APIs"), f"{loc}.relevant APIs", result)):
        ploc = f"{loc}.relevant APIs[{rel_index}]"
        if not expect(pair, list, ploc, result) or len(pair) != 2:
            if isinstance(pair, list):
                result.reject(ploc, MISSING_FIELD, pair)
            continue
        problem = names.name_problem(pair[0]) or names.name_problem(pair[1])
        if problem is not None:
            result.reject(ploc, problem, pair)
            continue
        result.qrels.append(QrelRecord(query_id, names.tool_id(pair[0], pair[1]), 1, result.source))


def _parse_api(result: ParseResult, loc: str, api: Any) -> None:
    if not expect(api, dict, loc, result):
        return
    result.count("api_entries")
    required = api.get("required_parameters", [])
    optional = api.get("optional_parameters", [])
    if not expect(required, list, f"{loc}.required_parameters", result):
        return
    if not expect(optional, list, f"{loc}.optional_parameters", result):
        return
    record = build_tool(
        result,
        loc,
        tool_name=api.get("tool_name"),
        api_name=api.get("api_name"),
        category=api.get("category_name"),
        description=api.get("api_description"),
        parameters={"required": required, "optional": optional},
    )
    if record is not None:
        result.tools.append(record)


def _as_list(value: Any, loc: str, result: ParseResult) -> list[Any]:
    """A missing list is empty; a present non-list is quarantined and treated as empty."""
    if value is None:
        return []
    return value if expect(value, list, loc, result) else []
