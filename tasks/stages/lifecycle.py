"""Tool lifecycle in the store: the append-only `tool_events` table and what reads it.

Every ingest compares the catalog before and after (`toolweaver.ingest.lifecycle`) and
appends one row per tool added, changed (old and new doc_hash), retired or restored,
with when, why and which ingest saw it. Nothing is deleted: a retired tool's rows stay
in the history of `tools`, its code stays in `codes` (so no other tool ever gets it),
and its latest event says it is retired, which is what the rest of the pipeline reads:

    retired_tools(store)         tool ids whose latest event is `retired`
    active_codes(store, codes)   a {tool_id: code} map without them (the decoding trie)
    changed_since(store, t)      active tools whose doc changed after `t` (the update set)
    preview_changes(...)         the changes an ingest would make, writing nothing (the sensor)

    toolweaver sql "SELECT tool_id, recorded_at, reason FROM tool_events WHERE event = 'retired'"
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from storage import SCHEMAS, Store, TableRef
from tasks.digests import sha256_json
from toolweaver.ingest.lifecycle import ADDED, CHANGED, RESTORED, RETIRED, CatalogChanges, ToolChange
from toolweaver.ingest.records import ParseResult

logger = logging.getLogger(__name__)

Row = TypeVar("Row", bound=Mapping[str, Any])

TOOL_EVENTS = "tool_events"
TOOL_EVENTS_SCHEMA = SCHEMAS[TOOL_EVENTS]
PREVIEW_IDS = 50  # tool ids per kind carried in an event payload (counts are always complete)


def latest_events(store: Store) -> dict[str, dict[str, Any]]:
    """{tool_id: its newest `tool_events` row} (empty when nothing was recorded yet)."""
    if not store.exists(TOOL_EVENTS):
        return {}
    rows = store.read(TOOL_EVENTS).to_pylist()
    # `recorded_at` orders events; the row order of one append breaks ties (one event per tool per ingest).
    newest: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["recorded_at"]):
        newest[row["tool_id"]] = row
    return newest


def retired_tools(store: Store) -> frozenset[str]:
    """Tool ids whose latest event is `retired`: out of the trie and every candidate set."""
    return frozenset(t for t, row in latest_events(store).items() if row["event"] == RETIRED)


def active_codes(store: Store, codes: Mapping[str, str]) -> dict[str, str]:
    """`codes` without the retired tools (what a constrained decoder may emit)."""
    retired = retired_tools(store)
    return {t: c for t, c in codes.items() if t not in retired}


def changed_since(store: Store, since: datetime) -> frozenset[str]:
    """Tools whose doc changed after `since` and that are not retired now."""
    if not store.exists(TOOL_EVENTS):
        return frozenset()
    rows = store.read(TOOL_EVENTS, columns=["tool_id", "event", "recorded_at"]).to_pylist()
    changed = {r["tool_id"] for r in rows if r["event"] == CHANGED and r["recorded_at"] > since}
    return frozenset(changed - retired_tools(store))


def retired_since(store: Store, since: datetime) -> frozenset[str]:
    """Tools retired after `since` and still retired."""
    return frozenset(
        t for t, row in latest_events(store).items() if row["event"] == RETIRED and row["recorded_at"] > since
    )


def record_changes(
    store: Store,
    changes: CatalogChanges,
    result: ParseResult,
    *,
    path: Path | None,
    snapshot: bool,
    run_id: str | None = None,
    inputs: Sequence[TableRef] = (),
) -> TableRef | None:
    """Append one `tool_events` row per change of one ingest; None when nothing changed."""
    if not changes:
        return None
    previous = latest_events(store)
    quarantined = {q.locator: q.reason for q in result.quarantine}
    now = datetime.now(UTC)
    rows = [
        _event_row(c, previous.get(c.tool_id), quarantined, result.source, path, snapshot, run_id, now)
        for c in changes.all()
    ]
    ref = store.write(
        TOOL_EVENTS,
        pa.Table.from_pylist(rows, schema=TOOL_EVENTS_SCHEMA),
        mode="append",
        run_id=run_id,
        config_hash=sha256_json({"stage": "ingest", "source": result.source, "snapshot": snapshot}),
        inputs=inputs,
    )
    logger.info("tool events (%s): %s", result.source, changes.counts())
    return ref


def _event_row(
    change: ToolChange,
    previous: Mapping[str, Any] | None,
    quarantined: Mapping[str, str],
    source: str,
    path: Path | None,
    snapshot: bool,
    run_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    event = change.kind
    if event == ADDED and previous is not None and previous["event"] == RETIRED:
        event = RESTORED
    return {
        "tool_id": change.tool_id,
        "event": event,
        "source": source,
        "old_doc_hash": change.old.doc_hash if change.old else None,
        "new_doc_hash": change.new.doc_hash if change.new else None,
        "reason": _reason(change, event, previous, quarantined, source, snapshot),
        "ingested_path": None if path is None else str(path),
        "run_id": run_id,
        "recorded_at": now,
    }


def _reason(
    change: ToolChange,
    event: str,
    previous: Mapping[str, Any] | None,
    quarantined: Mapping[str, str],
    source: str,
    snapshot: bool,
) -> str:
    old, new = change.old, change.new
    if event == RESTORED:
        return f"documented again by {source} ({new.origin}) after its retirement at {previous['recorded_at']}"  # type: ignore[index, union-attr]
    if event == ADDED:
        return f"new in {source} ({new.origin})"  # type: ignore[union-attr]
    if event == CHANGED:
        return f"doc changed: {old.source}:{old.origin} -> {new.source}:{new.origin}"  # type: ignore[union-attr]
    if old.origin in quarantined:  # type: ignore[union-attr]
        return f"its record {old.origin} is now quarantined ({quarantined[old.origin]})"  # type: ignore[union-attr]
    if snapshot:
        return f"not in the new {source} snapshot (was {old.origin})"  # type: ignore[union-attr]
    return f"no longer in re-ingested {source} file {old.origin.split('#', 1)[0]}"  # type: ignore[union-attr]


def changes_payload(changes: CatalogChanges, limit: int = PREVIEW_IDS) -> dict[str, Any]:
    """Counts and (the first `limit`) ids per kind: the JSON an event or a report carries."""
    return {
        "counts": changes.counts(),
        "added": [c.tool_id for c in changes.added[:limit]],
        "changed": [c.tool_id for c in changes.changed[:limit]],
        "retired": [c.tool_id for c in changes.retired[:limit]],
    }


def filter_qrels(rows: Iterable[Row], retired: frozenset[str]) -> list[Row]:
    """qrels rows whose tool is not retired (a retired tool is no answer any more)."""
    return [r for r in rows if r["tool_id"] not in retired]
