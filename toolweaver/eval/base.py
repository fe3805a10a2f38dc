"""The retrieval-method protocol every evaluated method follows, and shared helpers.

A method is fitted once on the training queries and the tool catalog, then ranks
query texts against any subset of the catalog (in-domain: the evaluated set's tools;
multi-domain: the whole catalog).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

Ranking = list[tuple[str, float]]


@dataclass(frozen=True)
class TrainQuery:
    """One training query and the tools it needs (relevance > 0)."""

    query_id: str
    text: str


@runtime_checkable
class RetrievalMethod(Protocol):
    """What the harness needs from a method (baseline or LLM adapter)."""

    method_id: str
    zero_shot: bool

    def fit(
        self,
        train_queries: Sequence[TrainQuery],
        qrels: Mapping[str, Mapping[str, float]],
        tools: Mapping[str, str],
    ) -> None:
        """Learn from ``train_queries`` (qrels keyed by query id) over ``tools`` (id -> doc text)."""

    def rank(self, query_texts: Sequence[str], candidate_tool_ids: Sequence[str], k: int) -> list[Ranking]:
        """Top-k ``(tool_id, score)`` per query, best first, drawn from the candidates only."""


def top_k(scores: np.ndarray, tool_ids: Sequence[str], k: int) -> Ranking:
    """The k best ``(tool_id, score)`` of one score vector, ties broken by position.

    ``scores``: (N,) aligned with ``tool_ids``. A stable sort keeps equal scores in
    candidate order, so rankings are reproducible run to run.
    """
    if scores.shape != (len(tool_ids),):
        raise ValueError(f"scores shape {scores.shape} does not match {len(tool_ids)} candidates")
    order = np.argsort(-scores, kind="stable")[:k]
    return [(tool_ids[i], float(scores[i])) for i in order]


def check_candidates(candidate_tool_ids: Sequence[str], known: Mapping[str, int], method_id: str) -> np.ndarray:
    """Index positions of the candidates in the fitted catalog; unknown ids fail loudly."""
    unknown = [t for t in candidate_tool_ids if t not in known]
    if unknown:
        raise KeyError(
            f"{method_id}: {len(unknown)} candidate tools were not in the catalog given to fit() "
            f"(first: {unknown[:3]}); fit on the full catalog before ranking"
        )
    return np.fromiter((known[t] for t in candidate_tool_ids), dtype=np.int64, count=len(candidate_tool_ids))


def as_float(value: object) -> float:
    """A number read from a table row (rows are typed `object`); anything else is an error."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, got {value!r}")
