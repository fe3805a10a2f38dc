"""ToolGen's released ShareGPT training files (retrieval / memorisation / agent data).

Expected layout: `path` is one `.json` / `.jsonl` file or a folder of them (searched
recursively, sorted). A `.json` file holds a list of examples, a `.jsonl` file one
example per line. Each example is

    {"conversations": [{"role": "system"|"user"|"assistant", "content": str, "loss": bool}, ...]}

An example whose assistant messages contain ToolGen tool tokens `<<tool_name&&api_name>>`
becomes one query (text = its first user message; `query_id` =
`toolgen/<file stem>/<example index>`, split `train`, group = file stem) and one qrel
(relevance 1) per distinct token. `<<Finish>>` is an end marker, not a tool. Examples
without tool tokens are counted (`examples_without_tool_tokens`), not quarantined.
No tool docs come from this source.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from toolweaver.ingest import names
from toolweaver.ingest.isolation import isolate, read_files
from toolweaver.ingest.quarantine import MISSING_FIELD, decode_json, decode_jsonl, expect
from toolweaver.ingest.records import ParseResult, QrelRecord, QueryRecord

SPLIT = "train"
TOOL_TOKEN = re.compile(r"<<([^<>]*?)&&([^<>]*?)>>")


def parse(path: Path, source: str = "toolgen") -> ParseResult:
    result = ParseResult(source)
    for rel, raw in read_files(path, result, suffixes=(".json", ".jsonl")):
        group = PurePosixPath(rel).stem
        examples: list[tuple[int, Any]] = []  # stays empty when the file itself fails
        with isolate(result, rel):
            examples = _examples(result, rel, raw)
        for index, example in examples:
            with isolate(result, f"{rel}#{index}"):
                _parse_example(result, f"{rel}#{index}", example, group=group, raw_id=str(index))
    return result


def _examples(result: ParseResult, rel: str, raw: bytes) -> list[tuple[int, Any]]:
    if rel.endswith(".jsonl"):
        return decode_jsonl(raw, rel, result)
    data = decode_json(raw, rel, result)
    if data is None or not expect(data, list, rel, result):
        return []
    return list(enumerate(data))


def _parse_example(result: ParseResult, loc: str, example: Any, *, group: str, raw_id: str) -> None:
    if not expect(example, dict, loc, result):
        return
    turns = example.get("conversations")
    if not expect(turns, list, f"{loc}.conversations", result):
        return
    messages = [m for m in turns if isinstance(m, dict) and isinstance(m.get("content"), str)]
    users = [m["content"] for m in messages if m.get("role") == "user"]
    tokens = [t for m in messages if m.get("role") == "assistant" for t in TOOL_TOKEN.findall(m["content"])]
    result.count("examples_read")
    if not tokens:
        result.count("examples_without_tool_tokens")
        return
    if not users:
        result.reject(loc, MISSING_FIELD, "no user message to use as the query")
        return
    query_id = f"{result.source}/{group}/{raw_id}"
    result.queries.append(QueryRecord(query_id, raw_id, users[0], result.source, SPLIT, group))
    for tool_name, api_name in sorted(set(tokens)):
        problem = names.name_problem(tool_name) or names.name_problem(api_name)
        if problem is not None:
            result.reject(loc, problem, f"<<{tool_name}&&{api_name}>>")
            continue
        result.qrels.append(QrelRecord(query_id, names.tool_id(tool_name, api_name), 1, result.source))
