"""The ingest stage: run one parser, merge with what the store holds, write the tables.

Re-ingesting the same files is idempotent: rows that came from the files parsed now
are replaced (not duplicated), every table is written sorted, and `Store.write` skips
a table whose content digest did not change, so no new version appears.

Replacement rules (per ingest of source S over files F):
- tools / variants: earlier records of S whose origin file is in F are dropped, the
  rest of the store's records (tools and variants alike) join the new ones, and
  `toolweaver.ingest.merge.merge_tools` re-picks one row per tool_id (order-free);
- queries, qrels, trajectories: keys produced now (query_id, trajectory_id) replace
  the stored rows with those keys (qrels: all pairs of the re-ingested queries);
- quarantine: earlier rows of S whose locator file is in F are replaced.
With `snapshot=True`, F is every file S ever had: the path is S's whole catalog.
Tools that leave the merged catalog are retired, never silently dropped: every ingest
appends its added / changed (old and new doc_hash) / retired tools to `tool_events`
(tasks/stages/lifecycle.py).
Qrels naming a tool_id absent from the merged catalog are quarantined
(`qrel_unknown_tool`), so every stored qrel joins `tools` when written; qrels of a tool
retired later stay (they are history) and the datasets and evaluate stages leave them out.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import astuple, fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from storage import SCHEMAS, Store, TableRef
from tasks.digests import sha256_json
from tasks.stages.lifecycle import TOOL_EVENTS, changes_payload, record_changes
from toolweaver.ingest import parse_source
from toolweaver.ingest.lifecycle import catalog_changes
from toolweaver.ingest.merge import merge_qrels, merge_queries, merge_tools, merge_trajectories, variant_to_tool
from toolweaver.ingest.quarantine import UNKNOWN_TOOL
from toolweaver.ingest.records import (
    ParseResult,
    QrelRecord,
    QuarantineRecord,
    QueryRecord,
    ToolRecord,
    TrajectoryRecord,
    VariantRecord,
    make_excerpt,
)

log = logging.getLogger(__name__)

TABLES: tuple[str, ...] = ("tools", "tool_doc_variants", "queries", "qrels", "trajectories", "quarantine")


class QuarantineError(RuntimeError):
    """`strict=True` and the parser quarantined records; nothing was written."""


def ingest(
    store: Store,
    source: str,
    path: Path | None,
    *,
    strict: bool = False,
    run_id: str | None = None,
    snapshot: bool = False,
) -> dict[str, Any]:
    """Ingest `source` from `path` into `store`; return a summary (counts, quarantine reasons,
    tool lifecycle changes, refs).

    `snapshot`: `path` is the source's whole catalog, so every earlier record of the source
    is replaced (tools it no longer documents are retired), not only those of the files read.
    Raises QuarantineError (before writing anything) when `strict` and a record was quarantined.
    """
    stored = _read_stored(store)
    result = parse_source(source, path, [(t.tool_name, t.api_name) for t in stored["tools"]])
    rows, new_quarantine, repeats = _merge_with_store(stored, result, snapshot=snapshot)
    reasons = Counter(q.reason for q in new_quarantine)
    if strict and new_quarantine:
        raise QuarantineError(
            f"--strict: {len(new_quarantine)} quarantined record(s) in {path}: "
            f"{dict(sorted(reasons.items()))}; nothing written"
        )
    inputs = [ref for ref in (store.latest(t) for t in TABLES) if ref is not None]
    config_hash = sha256_json({"stage": "ingest", "source": source})
    # Events first: a crash before the tables are written repeats them on the next ingest
    # (harmless) instead of losing them.
    changes = catalog_changes(stored["tools"], rows["tools"])
    events = record_changes(store, changes, result, path=path, snapshot=snapshot, run_id=run_id, inputs=inputs)
    refs = {
        t: store.write(t, to_arrow(t, rows[t]), run_id=run_id, config_hash=config_hash, inputs=inputs) for t in TABLES
    }
    summary = {
        "source": source,
        "path": None if path is None else str(path),
        "files": len(result.files),
        "parsed": {
            "tool_records": len(result.tools),
            "queries": len(result.queries),
            "qrels_pairs": len({(q.query_id, q.tool_id) for q in result.qrels}),
            "qrels_repeated_pairs": repeats,
            "trajectories": len(result.trajectories),
        },
        "stats": dict(sorted(result.stats.items())),
        "quarantine": dict(sorted(reasons.items())),
        "tables": {t: refs[t].rows for t in TABLES},
        "lifecycle": changes_payload(changes),
        "refs": refs | ({TOOL_EVENTS: events} if events is not None else {}),
    }
    log.info("ingest %s: %s", source, json.dumps({k: v for k, v in summary.items() if k != "refs"}))
    return summary


def _merge_with_store(
    stored: dict[str, list[Any]], result: ParseResult, *, snapshot: bool = False
) -> tuple[dict[str, list[Any]], list[QuarantineRecord], int]:
    """The full new content of every table, the newly quarantined records, and repeated qrel pairs."""
    source = result.source

    def from_these_files(src: str, locator: str) -> bool:
        return src == source and (snapshot or locator.split("#", 1)[0] in result.files)

    stored_docs = [*stored["tools"], *map(variant_to_tool, stored["tool_doc_variants"])]
    tools, variants = merge_tools(
        [*(t for t in stored_docs if not from_these_files(t.source, t.origin)), *result.tools]
    )

    new_qids = {q.query_id for q in result.queries} | {q.query_id for q in result.qrels}
    queries = merge_queries([*(q for q in stored["queries"] if q.query_id not in new_qids), *result.queries])
    known = {t.tool_id for t in tools}
    fresh_qrels, repeats = merge_qrels(result.qrels)
    kept_qrels = [q for q in stored["qrels"] if q.query_id not in new_qids]
    qrels, _ = merge_qrels([*kept_qrels, *(q for q in fresh_qrels if q.tool_id in known)])
    new_tids = {t.trajectory_id for t in result.trajectories}
    kept_trajectories = [t for t in stored["trajectories"] if t.trajectory_id not in new_tids]
    trajectories = merge_trajectories([*kept_trajectories, *result.trajectories])

    # A qrel whose tool is in no source's docs cannot join `tools`: quarantined (locator = query).
    flagged = [
        QuarantineRecord(source, q.query_id, UNKNOWN_TOOL, make_excerpt(q.tool_id))
        for q in fresh_qrels
        if q.tool_id not in known
    ]
    new_quarantine = [*result.quarantine, *flagged]
    old_quarantine = [
        q
        for q in stored["quarantine"]
        if not from_these_files(q.source, q.locator)
        and not (q.source == source and q.reason == UNKNOWN_TOOL and q.locator in new_qids)
    ]
    rows = {
        "tools": tools,
        "tool_doc_variants": variants,
        "queries": queries,
        "qrels": qrels,
        "trajectories": trajectories,
        "quarantine": sorted({*old_quarantine, *new_quarantine}, key=astuple),
    }
    return rows, new_quarantine, repeats


def ingest_source(store: Store, source: str, path: Path | None, *, snapshot: bool = False) -> list[TableRef]:
    """The refs written by a non-strict ingest (the shape the Prefect stage task wants)."""
    return list(ingest(store, source, path, snapshot=snapshot)["refs"].values())


# ---------------------------------------------------------------- Arrow <-> records

_RECORD_TYPES: dict[str, type] = {
    "tools": ToolRecord,
    "tool_doc_variants": VariantRecord,
    "queries": QueryRecord,
    "qrels": QrelRecord,
    "trajectories": TrajectoryRecord,
    "quarantine": QuarantineRecord,
}


def to_arrow(table: str, records: Iterable[Any]) -> pa.Table:
    """Records -> Arrow table with the declared schema (column-wise: fast for 50k rows)."""
    schema = SCHEMAS[table]
    records = list(records)
    columns = {f.name: [getattr(r, f.name) for r in records] for f in fields(_RECORD_TYPES[table])}
    if table == "trajectories":
        columns["tool_ids"] = [list(ids) for ids in columns["tool_ids"]]
    return pa.Table.from_pydict(columns, schema=schema)


def from_arrow(table: str, data: pa.Table) -> list[Any]:
    kind = _RECORD_TYPES[table]
    names = [f.name for f in fields(kind)]
    columns = [data.column(n).to_pylist() for n in names]
    if table == "trajectories":
        columns[names.index("tool_ids")] = [tuple(ids or ()) for ids in columns[names.index("tool_ids")]]
    return [kind(*row) for row in zip(*columns, strict=True)]


def _read_stored(store: Store) -> dict[str, list[Any]]:
    return {t: from_arrow(t, store.read(t)) if store.exists(t) else [] for t in TABLES}
