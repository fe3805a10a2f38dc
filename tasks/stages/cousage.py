"""The co-usage stage: the `cousage` edge table from `qrels` + `trajectories`.

Owns the `cousage` table; a no-op version-wise when nothing changed (the store skips
equal digests). The codes stage only reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from storage import SCHEMAS, Store, TableRef
from toolweaver.codes.cousage import CoUsageEdge, cousage_edges, edges_to_indices


def cousage_groups(store: Store) -> list[frozenset[str]]:
    """Co-usage groups: relevant tools per query (qrels, relevance > 0) and tools per trajectory."""
    groups: list[frozenset[str]] = []
    if store.exists("qrels"):
        qrels = store.read("qrels", columns=["query_id", "tool_id", "relevance"])
        qrels = qrels.filter(pc.field("relevance") > 0)
        members: dict[str, set[str]] = {}
        for q, t in zip(qrels.column("query_id").to_pylist(), qrels.column("tool_id").to_pylist(), strict=True):
            members.setdefault(q, set()).add(t)
        groups += [frozenset(members[q]) for q in sorted(members)]
    if store.exists("trajectories"):
        calls = store.read("trajectories", columns=["trajectory_id", "tool_ids"]).sort_by("trajectory_id")
        groups += [frozenset(ids or ()) for ids in calls.column("tool_ids").to_pylist()]
    return groups


def build_cousage(store: Store) -> TableRef:
    """Write the `cousage` table from qrels + trajectories (no new version when unchanged)."""
    edges = cousage_edges(cousage_groups(store))
    rows = pa.Table.from_pylist(
        [{"src": e.src, "dst": e.dst, "count": e.count, "weight": e.weight} for e in edges],
        schema=SCHEMAS["cousage"],
    )
    return store.write("cousage", rows, inputs=_refs(store, "qrels", "trajectories"))


def read_cousage(store: Store) -> list[CoUsageEdge]:
    if not store.exists("cousage"):
        return []
    rows = store.read("cousage")
    return [CoUsageEdge(**r) for r in rows.to_pylist()]


def cousage_rows(store: Store, tool_ids: Sequence[str]) -> Any:
    """The `cousage` edges over the rows of `tool_ids` as toolweaver.codes.CoUsageEdges."""
    from toolweaver.codes import CoUsageEdges

    src, dst, weight = edges_to_indices(read_cousage(store), {t: i for i, t in enumerate(tool_ids)})
    return CoUsageEdges(src=src, dst=dst, weight=weight)


def _refs(store: Store, *tables: str) -> list[TableRef]:
    return [ref for ref in (store.latest(t) for t in tables) if ref is not None]
