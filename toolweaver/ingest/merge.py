"""One row per tool_id across sources and files: a deterministic, order-free pick.

Rule (applied to every record of a tool_id, after dropping exact repeats of the same
(tool_id, source, origin, doc_hash)):

1. source rank: toolbench > stabletoolbench > bfcl > beir > toolgen (unknown last);
2. then the longer description;
3. then the smaller doc_hash;
4. then the smaller origin (a total order, so ties cannot depend on input order).

The first record is the `tools` row; every other record goes to `tool_doc_variants`
with its own provenance (source, origin) and a reason naming how it differs
("different doc", "same doc, other category", "same doc") and the winner. Identical
docs from other files are variants too, so the row counts add up:
tools + variants = distinct input records. A tool_id is never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, astuple
from typing import Any, TypeVar

from toolweaver.ingest.records import QrelRecord, QueryRecord, ToolRecord, TrajectoryRecord, VariantRecord

R = TypeVar("R")

SOURCE_RANK: dict[str, int] = {"toolbench": 0, "stabletoolbench": 1, "bfcl": 2, "beir": 3, "toolgen": 4}


def pick_key(record: ToolRecord) -> tuple[int, int, str, str]:
    return (SOURCE_RANK.get(record.source, len(SOURCE_RANK)), -len(record.description), record.doc_hash, record.origin)


def merge_tools(records: Iterable[ToolRecord]) -> tuple[list[ToolRecord], list[VariantRecord]]:
    """Return (tools sorted by tool_id, variants sorted by (tool_id, pick order))."""
    groups: dict[str, dict[tuple[str, str, str], ToolRecord]] = defaultdict(dict)
    for record in records:
        groups[record.tool_id].setdefault((record.source, record.origin, record.doc_hash), record)
    tools: list[ToolRecord] = []
    variants: list[VariantRecord] = []
    for tool_id in sorted(groups):
        ranked = sorted(groups[tool_id].values(), key=pick_key)
        winner = ranked[0]
        tools.append(winner)
        variants.extend(_variant(loser, winner) for loser in ranked[1:])
    return tools, variants


def _variant(loser: ToolRecord, winner: ToolRecord) -> VariantRecord:
    if loser.doc_hash != winner.doc_hash:
        kind = "different doc"
    elif loser.category != winner.category:
        kind = "same doc, other category"
    else:
        kind = "same doc"
    reason = f"{kind}; lost to {winner.source}:{winner.origin}"
    return VariantRecord(**asdict(loser), reason=reason)


def variant_to_tool(variant: VariantRecord) -> ToolRecord:
    """A stored variant back as a candidate record, so a later merge can reconsider it."""
    return ToolRecord(*astuple(variant)[:-1])


def merge_queries(records: Iterable[QueryRecord]) -> list[QueryRecord]:
    """One row per query_id; a non-empty text wins, then the smallest record (order-free)."""
    return _best_per_key(records, key=lambda r: r.query_id, rank=_query_key)


def _query_key(record: QueryRecord) -> tuple[bool, tuple[str, ...]]:
    return (not record.text.strip(), astuple(record))


def _best_per_key(records: Iterable[R], *, key: Callable[[R], str], rank: Callable[[R], Any]) -> list[R]:
    """The lowest-`rank` record of each `key`, sorted by key: independent of input order."""
    best: dict[str, R] = {}
    for record in records:
        current = best.get(key(record))
        if current is None or rank(record) < rank(current):
            best[key(record)] = record
    return [best[k] for k in sorted(best)]


def merge_qrels(records: Iterable[QrelRecord]) -> tuple[list[QrelRecord], int]:
    """Distinct (query_id, tool_id) pairs (highest relevance kept) and the number of repeats."""
    best: dict[tuple[str, str], QrelRecord] = {}
    repeats = 0
    for record in records:
        key = (record.query_id, record.tool_id)
        current = best.get(key)
        if current is not None:
            repeats += 1
        if current is None or (record.relevance, record.source) > (current.relevance, current.source):
            best[key] = record
    return [best[k] for k in sorted(best)], repeats


def merge_trajectories(records: Iterable[TrajectoryRecord]) -> list[TrajectoryRecord]:
    """One row per trajectory_id; later files cannot reorder the pick (smallest record wins)."""
    return _best_per_key(records, key=lambda r: r.trajectory_id, rank=astuple)
