"""Retrieval metrics for tool retrieval, in two labelled NDCG conventions.

- ``standard``: the ideal ranking places every relevant tool first (capped at k), so a
  query that needs tools {A, B} but only gets A at rank 1 scores NDCG@5 < 1.
- ``toolgen``: the ideal ranking counts only the relevant tools that appear in the
  retrieved top-k (ToolGen's evaluation builds the relevance vector from the retrieved
  hits alone before calling ``sklearn.metrics.ndcg_score``; the ToolGen and ToolWeaver
  papers report this). The same query scores 1.0 there.

Gains are the graded relevances of the qrels (binary in ToolBench/ToolLens).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

Convention = Literal["standard", "toolgen"]
CONVENTIONS: tuple[Convention, ...] = ("standard", "toolgen")
NDCG_KS: tuple[int, ...] = (1, 3, 5)
METRICS: tuple[str, ...] = ("ndcg@1", "ndcg@3", "ndcg@5", "recall@5", "exact_set_acc")


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: sum_i gain_i / log2(i + 2), i counted from 0."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def ndcg_at_k(
    ranked: Sequence[str],
    relevance: Mapping[str, float],
    k: int,
    convention: Convention,
) -> float:
    """NDCG@k of one ranked list of tool ids against its graded qrels.

    Returns 0.0 when nothing relevant is retrieved (both conventions), matching
    sklearn's ``ndcg_score`` on an all-zero relevance vector.
    """
    _check_k(k)
    if not relevance:
        raise ValueError("a query without relevant tools cannot be scored; drop it before evaluating")
    top = list(ranked[:k])
    gains = [float(relevance.get(tool_id, 0.0)) for tool_id in top]
    if convention == "standard":
        ideal = sorted((float(r) for r in relevance.values()), reverse=True)[:k]
    elif convention == "toolgen":
        ideal = sorted(gains, reverse=True)
    else:
        raise ValueError(f"unknown NDCG convention {convention!r}; use one of {CONVENTIONS}")
    ideal_dcg = dcg(ideal)
    return dcg(gains) / ideal_dcg if ideal_dcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """Fraction of the relevant tools (relevance > 0) found in the top-k."""
    _check_k(k)
    relevant = {t for t, r in relevance.items() if r > 0}
    if not relevant:
        raise ValueError("a query without relevant tools cannot be scored; drop it before evaluating")
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def exact_set_accuracy(ranked: Sequence[str], relevance: Mapping[str, float]) -> float:
    """1.0 when the top-|R| tools are exactly the relevant set R, else 0.0.

    For a multi-tool query the model must name every needed tool and nothing else
    within the first |R| positions (order inside them does not matter).
    """
    relevant = {t for t, r in relevance.items() if r > 0}
    if not relevant:
        raise ValueError("a query without relevant tools cannot be scored; drop it before evaluating")
    return float(set(ranked[: len(relevant)]) == relevant)


def query_metrics(ranked: Sequence[str], relevance: Mapping[str, float]) -> dict[tuple[str, str], float]:
    """Every metric for one query, keyed ``(convention, metric)``.

    Recall and exact-set accuracy do not depend on the NDCG convention; they are
    reported under both labels so each convention's table is complete. Exact-set
    accuracy is only defined for multi-tool queries (|R| >= 2) and is absent otherwise.
    """
    out: dict[tuple[str, str], float] = {}
    recall = recall_at_k(ranked, relevance, 5)
    multi_tool = sum(1 for r in relevance.values() if r > 0) >= 2
    for convention in CONVENTIONS:
        for k in NDCG_KS:
            out[(convention, f"ndcg@{k}")] = ndcg_at_k(ranked, relevance, k, convention)
        out[(convention, "recall@5")] = recall
        if multi_tool:
            out[(convention, "exact_set_acc")] = exact_set_accuracy(ranked, relevance)
    return out


def mean_metrics(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
) -> dict[tuple[str, str], tuple[float, int]]:
    """Mean of :func:`query_metrics` over the queries of ``qrels``: key -> (mean, n).

    ``n`` is the number of queries the metric is defined on (all queries, or the
    multi-tool ones for exact-set accuracy). Every query in ``qrels`` must have a
    ranking; a missing one is an error, not a silent zero, because it means the
    method skipped a query.
    """
    missing = [q for q in qrels if q not in rankings]
    if missing:
        raise ValueError(f"{len(missing)} queries have no ranking (first: {missing[:3]})")
    if not qrels:
        raise ValueError("no queries to evaluate")
    totals: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], int] = {}
    for query_id, relevance in qrels.items():
        for key, value in query_metrics(rankings[query_id], relevance).items():
            totals[key] = totals.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {key: (totals[key] / counts[key], counts[key]) for key in totals}
