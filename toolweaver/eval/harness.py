"""Evaluation harness: every method, the same split, the same candidates, both conventions.

Settings (as in the ToolGen/ToolWeaver papers):

- ``in-domain``: candidates are the evaluated set's own tools (e.g. the 464 ToolLens
  APIs, or the APIs named in the StableToolBench queries' ``api_list``);
- ``multi-domain``: candidates are the whole catalog the methods were fitted on.

A method is fitted once on the training queries and the full catalog, then ranks every
evaluation set under every setting. Rows are plain records whose fields are the
``eval_results`` columns; ``tasks/stages/evaluate.py`` writes them through ``storage``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from toolweaver.eval.base import RetrievalMethod, TrainQuery
from toolweaver.eval.metrics import mean_metrics

logger = logging.getLogger(__name__)

Setting = Literal["in-domain", "multi-domain"]
SETTINGS: tuple[Setting, ...] = ("in-domain", "multi-domain")
RANK_DEPTH = 5  # every reported metric is at most @5


@dataclass(frozen=True)
class EvalSet:
    """One evaluated query set: texts, graded qrels, and its in-domain candidate tools."""

    dataset: str
    split: str
    queries: Mapping[str, str]  # query_id -> text
    qrels: Mapping[str, Mapping[str, float]]  # query_id -> tool_id -> relevance
    domain_tool_ids: Sequence[str]

    def __post_init__(self) -> None:
        unlabeled = [q for q in self.qrels if q not in self.queries]
        if unlabeled:
            raise ValueError(
                f"{self.dataset}/{self.split}: {len(unlabeled)} qrels queries have no text (first: {unlabeled[:3]})"
            )
        if not self.qrels:
            raise ValueError(f"{self.dataset}/{self.split}: no query has a relevant tool")


@dataclass(frozen=True)
class TrainSet:
    """Training queries of one dataset (may be empty: StableToolBench has none)."""

    dataset: str
    queries: Sequence[TrainQuery] = ()
    qrels: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalRow:
    """One ``eval_results`` row."""

    method: str
    setting: str
    convention: str
    metric: str
    value: float
    n_queries: int
    dataset: str
    split: str
    zero_shot: bool
    model: str
    data_versions: str  # JSON: table -> version (or the BEIR folder digest)
    fit_s: float
    rank_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def candidates_for(eval_set: EvalSet, catalog: Mapping[str, str], setting: Setting) -> list[str]:
    """Sorted candidate tool ids of one setting; in-domain tools missing from the catalog fail loudly.

    Sorted, so that methods breaking score ties by candidate position break them by
    tool id: the same candidates in another order give the same ranking.
    """
    if setting == "multi-domain":
        return sorted(catalog)
    missing = [t for t in eval_set.domain_tool_ids if t not in catalog]
    if missing:
        raise KeyError(
            f"{eval_set.dataset}: {len(missing)} in-domain tools are not in the catalog (first: {missing[:3]})"
        )
    return sorted(set(eval_set.domain_tool_ids))


def rank_set(method: RetrievalMethod, eval_set: EvalSet, candidates: Sequence[str]) -> dict[str, list[str]]:
    """Ranked tool ids (top ``RANK_DEPTH``) for every labelled query of the set."""
    query_ids = list(eval_set.qrels)
    rankings = method.rank([eval_set.queries[q] for q in query_ids], candidates, RANK_DEPTH)
    if len(rankings) != len(query_ids):
        raise RuntimeError(f"{method.method_id}: returned {len(rankings)} rankings for {len(query_ids)} queries")
    return {q: [tool_id for tool_id, _ in ranked] for q, ranked in zip(query_ids, rankings, strict=True)}


def evaluate_method(
    method: RetrievalMethod,
    catalog: Mapping[str, str],
    train: TrainSet,
    eval_sets: Sequence[EvalSet],
    settings: Sequence[Setting] = SETTINGS,
    data_versions: Mapping[str, object] | None = None,
) -> list[EvalRow]:
    """Fit ``method`` once, rank every set under every setting, return one row per metric."""
    started = time.perf_counter()
    method.fit(train.queries, train.qrels, catalog)
    fit_s = time.perf_counter() - started
    logger.info("%s: fitted in %.1f s", method.method_id, fit_s)
    versions = json.dumps(dict(data_versions or {}), sort_keys=True)
    rows: list[EvalRow] = []
    for eval_set in eval_sets:
        # A method trained on another dataset's queries (or on none) is zero-shot here.
        zero_shot = bool(method.zero_shot) or not train.queries or train.dataset != eval_set.dataset
        for setting in settings:
            candidates = candidates_for(eval_set, catalog, setting)
            started = time.perf_counter()
            rankings = rank_set(method, eval_set, candidates)
            rank_s = time.perf_counter() - started
            scores = mean_metrics(rankings, eval_set.qrels)
            logger.info(
                "%s %s/%s %s: ndcg@5 standard %.4f toolgen %.4f (%d queries, %d candidates, %.1f s)",
                method.method_id,
                eval_set.dataset,
                eval_set.split,
                setting,
                scores[("standard", "ndcg@5")][0],
                scores[("toolgen", "ndcg@5")][0],
                len(rankings),
                len(candidates),
                rank_s,
            )
            rows.extend(
                EvalRow(
                    method=method.method_id,
                    setting=setting,
                    convention=convention,
                    metric=metric,
                    value=value,
                    n_queries=n,
                    dataset=eval_set.dataset,
                    split=eval_set.split,
                    zero_shot=zero_shot,
                    model=str(getattr(method, "model_id", "")),
                    data_versions=versions,
                    fit_s=fit_s,
                    rank_s=rank_s,
                )
                for (convention, metric), (value, n) in sorted(scores.items())
            )
    return rows
