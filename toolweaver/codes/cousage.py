"""Tool co-usage graph: which tools are needed together.

A *group* is a set of tools used together: the relevant tools of one query (qrels) or
the tools called in one trajectory. Counts over groups:

    C_uu = number of groups that contain u
    C_uv = number of groups that contain both u and v        (u != v)
    A_uv = C_uv / sqrt(C_uu * C_vv)                          (cosine of the incidence rows)

A_uv lies in (0, 1], is symmetric, and exists only for pairs seen together, so the
graph is sparse and stored once per pair with src < dst. C_uv >= 1 implies C_uu >= 1
and C_vv >= 1, so there is no division by zero; tools never co-used simply have no edge.
A tool repeated inside one group (a trajectory calling it twice) counts once.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoUsageEdge:
    """One row of the `cousage` table."""

    src: str
    dst: str
    count: int
    weight: float


def groups_from_pairs(pairs: Iterable[tuple[str, str]]) -> list[frozenset[str]]:
    """(group_id, tool_id) pairs, e.g. (query_id, tool_id) from qrels -> groups, by group id."""
    members: dict[str, set[str]] = {}
    for group_id, tool_id in pairs:
        members.setdefault(group_id, set()).add(tool_id)
    return [frozenset(members[g]) for g in sorted(members)]


def cousage_counts(groups: Iterable[Iterable[str]]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Groups -> (C_uu per tool, C_uv per pair with u < v)."""
    diag: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for group in groups:
        tools = sorted(set(group))
        diag.update(tools)
        pairs.update(combinations(tools, 2))  # sorted input -> every pair already has u < v
    return diag, pairs


def cousage_edges(groups: Iterable[Iterable[str]]) -> list[CoUsageEdge]:
    """Groups -> edges (src < dst) with counts and A_uv weights, sorted by (src, dst)."""
    diag, pairs = cousage_counts(groups)
    edges = [CoUsageEdge(u, v, count, count / math.sqrt(diag[u] * diag[v])) for (u, v), count in sorted(pairs.items())]
    logger.info("co-usage graph: %d tools in groups, %d edges", len(diag), len(edges))
    return edges


def edges_to_indices(
    edges: Sequence[CoUsageEdge], tool_index: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges -> (src (E,) int64, dst (E,) int64, weight (E,) float32) over catalog rows.

    Edges that touch a tool outside the catalog are dropped (and counted in the log):
    qrels may name tools whose docs were quarantined.
    """
    kept = [e for e in edges if e.src in tool_index and e.dst in tool_index]
    if len(kept) < len(edges):
        logger.warning(
            "co-usage: dropped %d of %d edges naming tools outside the catalog", len(edges) - len(kept), len(edges)
        )
    src = np.fromiter((tool_index[e.src] for e in kept), dtype=np.int64, count=len(kept))
    dst = np.fromiter((tool_index[e.dst] for e in kept), dtype=np.int64, count=len(kept))
    weight = np.fromiter((e.weight for e in kept), dtype=np.float32, count=len(kept))
    return src, dst, weight
