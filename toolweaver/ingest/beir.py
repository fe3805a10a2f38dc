"""BEIR-format retrieval sets (ToolLens): `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

Corpus docs: `{"_id", "title", "text"}`. ToolLens text has the shape

    category_name:<c>, tool_name:<t>, api_name:<a>, api_description:<d>,
    required_params: <JSON list>, optional_params: <JSON list>, return_schema: <...>

which is parsed into category / tool_name / api_name / description / parameters, so
the doc joins the ToolBench catalog under the same raw `tool_id`. A doc without that
shape keeps its text as description under tool_name = title (or the dataset folder
name when the title is empty) and api_name = its `_id`.

Queries: `query_id` = `beir/<split>/<raw id>`. A query gets one row per split whose
qrels name it (split = qrels file stem); a query in no qrels file gets split
`unlabelled`. Qrels: corpus-id -> the doc's tool_id; rows naming an unknown corpus id
or query id are quarantined; repeated (query, corpus) rows are counted
(`qrels_duplicate_rows`) and stored once.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from toolweaver.ingest.docs import build_tool
from toolweaver.ingest.quarantine import (
    MISSING_FIELD,
    NON_UTF8,
    UNKNOWN_CORPUS_ID,
    UNKNOWN_QUERY_ID,
    WRONG_TYPE,
    decode_jsonl,
    expect,
)
from toolweaver.ingest.records import ParseResult, QrelRecord, QueryRecord

UNLABELLED = "unlabelled"
_TOOLLENS = re.compile(
    r"^category_name:(?P<category>.*?), tool_name:(?P<tool>.*?), api_name:(?P<api>.*?), "
    r"api_description:(?P<description>.*?), required_params: (?P<required>.*?), "
    r"optional_params: (?P<optional>.*?), return_schema: (?P<returns>.*)$",
    re.DOTALL,
)


def parse(path: Path, source: str = "beir") -> ParseResult:
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: BEIR layout needs {name}, queries.jsonl and qrels/<split>.tsv")
    result = ParseResult(source)
    corpus = _parse_corpus(result, path)
    splits_of, pairs = _parse_qrels(result, path, corpus)
    raw_queries = _parse_queries(result, path)
    query_ids: dict[tuple[str, str], str] = {}
    for raw_id, text in raw_queries.items():
        for split in sorted(splits_of.get(raw_id, {UNLABELLED})):
            query_id = f"{source}/{split}/{raw_id}"
            query_ids[(split, raw_id)] = query_id
            result.queries.append(QueryRecord(query_id, raw_id, text, source, split, split))
    for (split, raw_qid, tool_id), (relevance, loc) in sorted(pairs.items()):
        known_id = query_ids.get((split, raw_qid))
        if known_id is None:
            result.reject(loc, UNKNOWN_QUERY_ID, f"query-id {raw_qid!r} is not in queries.jsonl")
            continue
        result.qrels.append(QrelRecord(known_id, tool_id, relevance, source))
    return result


def _parse_corpus(result: ParseResult, root: Path) -> dict[str, str]:
    """Parse corpus.jsonl into tool records; return corpus-id -> tool_id."""
    result.files.add("corpus.jsonl")
    corpus: dict[str, str] = {}
    for line, doc in decode_jsonl((root / "corpus.jsonl").read_bytes(), "corpus.jsonl", result):
        loc = f"corpus.jsonl#L{line}"
        if not expect(doc, dict, loc, result):
            continue
        doc_id, text = doc.get("_id"), doc.get("text")
        if doc_id is None or not isinstance(text, str):
            result.reject(loc, MISSING_FIELD if doc_id is None or text is None else WRONG_TYPE, doc)
            continue
        record = build_tool(result, loc, **_doc_fields(str(doc_id), text, doc.get("title"), root.name))
        if record is not None:
            result.tools.append(record)
            corpus[str(doc_id)] = record.tool_id
    return corpus


def _doc_fields(doc_id: str, text: str, title: Any, dataset: str) -> dict[str, Any]:
    match = _TOOLLENS.match(text)
    if match is None:
        name = title if isinstance(title, str) and title.strip() else dataset
        return {"tool_name": name, "api_name": doc_id, "category": "", "description": text, "parameters": {}}
    return {
        "tool_name": match["tool"],
        "api_name": match["api"],
        "category": match["category"],
        "description": match["description"],
        "parameters": {"required": _json_or_text(match["required"]), "optional": _json_or_text(match["optional"])},
    }


def _json_or_text(text: str) -> Any:
    """ToolLens params are JSON lists; keep the raw text when one is not (never guess)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_qrels(
    result: ParseResult, root: Path, corpus: dict[str, str]
) -> tuple[dict[str, set[str]], dict[tuple[str, str, str], tuple[int, str]]]:
    """Return raw query id -> splits, and (split, raw qid, tool_id) -> (relevance, locator)."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    pairs: dict[tuple[str, str, str], tuple[int, str]] = {}
    seen_rows: set[tuple[str, str, str]] = set()
    for tsv in sorted((root / "qrels").glob("*.tsv")):
        rel = f"qrels/{tsv.name}"
        result.files.add(rel)
        split = tsv.stem
        for number, fields in _tsv_rows(result, rel, tsv.read_bytes()):
            loc = f"{rel}#L{number}"
            raw_qid, corpus_id, score = fields
            result.count("qrels_rows_read")
            if (split, raw_qid, corpus_id) in seen_rows:
                result.count("qrels_duplicate_rows")
                continue
            seen_rows.add((split, raw_qid, corpus_id))
            if corpus_id not in corpus:
                result.reject(loc, UNKNOWN_CORPUS_ID, "\t".join(fields))
                continue
            if not re.fullmatch(r"-?\d+", score):
                result.reject(loc, WRONG_TYPE, f"score is not an integer: {score!r}")
                continue
            splits_of[raw_qid].add(split)
            key = (split, raw_qid, corpus[corpus_id])
            pairs[key] = max(pairs.get(key, (int(score), loc)), (int(score), loc))
    return splits_of, pairs


def _tsv_rows(result: ParseResult, rel: str, raw: bytes) -> list[tuple[int, list[str]]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        result.reject(rel, NON_UTF8, f"{err}")
        return []
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("\t")
        if number == 1 and fields[:2] == ["query-id", "corpus-id"]:
            continue  # the BEIR header
        if not line.strip():
            continue
        if len(fields) != 3:
            result.reject(f"{rel}#L{number}", MISSING_FIELD, line)
            continue
        rows.append((number, fields))
    return rows


def _parse_queries(result: ParseResult, root: Path) -> dict[str, str]:
    result.files.add("queries.jsonl")
    queries: dict[str, str] = {}
    for line, item in decode_jsonl((root / "queries.jsonl").read_bytes(), "queries.jsonl", result):
        loc = f"queries.jsonl#L{line}"
        if not expect(item, dict, loc, result):
            continue
        raw_id, text = item.get("_id"), item.get("text")
        if raw_id is None or text is None:
            result.reject(loc, MISSING_FIELD, item)
        elif expect(text, str, loc, result):
            queries[str(raw_id)] = text
    return queries
