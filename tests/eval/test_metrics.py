"""Known answers for every metric, the two NDCG conventions, and parity with sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolweaver.eval.metrics import (
    dcg,
    exact_set_accuracy,
    mean_metrics,
    ndcg_at_k,
    query_metrics,
    recall_at_k,
)

L3 = 1 / math.log2(3)  # gain discount at rank 2


def test_dcg_known_answer() -> None:
    assert dcg([1, 1, 1]) == pytest.approx(1 + L3 + 0.5)
    assert dcg([]) == 0.0


def test_required_case_conventions_differ() -> None:
    """Relevant {A, B}, only A retrieved at rank 1: standard NDCG@5 < 1, ToolGen = 1."""
    ranked, rel = ["A", "X", "Y", "Z", "W"], {"A": 1, "B": 1}
    assert ndcg_at_k(ranked, rel, 5, "standard") == pytest.approx(1 / (1 + L3))
    assert ndcg_at_k(ranked, rel, 5, "standard") < 1
    assert ndcg_at_k(ranked, rel, 5, "toolgen") == 1.0


def test_ndcg_known_answers() -> None:
    assert ndcg_at_k(["X", "A"], {"A": 1}, 5, "standard") == pytest.approx(L3)
    assert ndcg_at_k(["X", "A"], {"A": 1}, 5, "toolgen") == pytest.approx(L3)
    assert ndcg_at_k(["X", "A"], {"A": 1}, 1, "standard") == 0.0
    assert ndcg_at_k(["X", "A"], {"A": 1}, 1, "toolgen") == 0.0
    # Three relevant, two retrieved at ranks 2 and 3.
    ranked, rel = ["X", "A", "B"], {"A": 1, "B": 1, "C": 1}
    assert ndcg_at_k(ranked, rel, 5, "standard") == pytest.approx((L3 + 0.5) / (1 + L3 + 0.5))
    assert ndcg_at_k(ranked, rel, 5, "toolgen") == pytest.approx((L3 + 0.5) / (1 + L3))
    # The standard ideal is capped at k: 3 relevant tools, k = 1, A first -> 1.0.
    assert ndcg_at_k(["A"], rel, 1, "standard") == 1.0


def test_ndcg_graded_relevance() -> None:
    ranked, rel = ["B", "A"], {"A": 2, "B": 1}
    expected = (1 + 2 * L3) / (2 + 1 * L3)
    assert ndcg_at_k(ranked, rel, 5, "standard") == pytest.approx(expected)
    assert ndcg_at_k(ranked, rel, 5, "toolgen") == pytest.approx(expected)


def test_nothing_relevant_retrieved_scores_zero() -> None:
    for convention in ("standard", "toolgen"):
        assert ndcg_at_k(["X", "Y"], {"A": 1}, 5, convention) == 0.0


def test_bad_inputs_fail_loudly() -> None:
    with pytest.raises(ValueError, match="convention"):
        ndcg_at_k(["A"], {"A": 1}, 5, "trec")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(["A"], {"A": 1}, 0, "standard")
    with pytest.raises(ValueError, match="without relevant"):
        recall_at_k(["A"], {}, 5)


def test_recall_and_exact_set_known_answers() -> None:
    rel = {"A": 1, "B": 1, "C": 1}
    assert recall_at_k(["A", "X", "B", "Y", "Z", "C"], rel, 5) == pytest.approx(2 / 3)
    assert exact_set_accuracy(["B", "A", "C"], {"A": 1, "B": 1}) == 1.0  # order inside |R| is free
    assert exact_set_accuracy(["A", "C", "B"], {"A": 1, "B": 1}) == 0.0


def test_query_metrics_labels_and_single_tool_exact_set() -> None:
    multi = query_metrics(["A", "X"], {"A": 1, "B": 1})
    assert multi[("standard", "ndcg@5")] < multi[("toolgen", "ndcg@5")] == 1.0
    assert multi[("standard", "exact_set_acc")] == 0.0
    single = query_metrics(["A"], {"A": 1})
    assert ("standard", "exact_set_acc") not in single  # defined for multi-tool queries only


def test_mean_metrics_counts_and_missing_ranking() -> None:
    qrels = {"q1": {"A": 1}, "q2": {"A": 1, "B": 1}}
    means = mean_metrics({"q1": ["A"], "q2": ["X", "Y"]}, qrels)
    assert means[("standard", "ndcg@1")] == (0.5, 2)
    assert means[("toolgen", "exact_set_acc")] == (0.0, 1)
    with pytest.raises(ValueError, match="no ranking"):
        mean_metrics({"q1": ["A"]}, qrels)


def _sklearn_toolgen(ranked: list[str], rel: dict[str, int], k: int) -> float:
    """ToolGen's evaluation: a relevance vector built from the retrieved hits, sklearn's ndcg."""
    from sklearn.metrics import ndcg_score

    top = ranked[:k]
    true = np.array([[rel.get(t, 0) for t in top]], dtype=float)
    scores = np.array([[len(top) - i for i in range(len(top))]], dtype=float)
    return float(ndcg_score(true, scores, k=k)) if len(top) > 1 else float(true[0, 0] > 0)


@settings(max_examples=200, deadline=None)
@given(
    ranked=st.lists(st.sampled_from("ABCDEFGH"), min_size=2, max_size=6, unique=True),
    relevant=st.sets(st.sampled_from("ABCDEFGH"), min_size=1, max_size=5),
    k=st.sampled_from([1, 3, 5]),
)
def test_conventions_invariants_and_sklearn_parity(ranked: list[str], relevant: set[str], k: int) -> None:
    rel = dict.fromkeys(relevant, 1)
    standard = ndcg_at_k(ranked, rel, k, "standard")
    toolgen = ndcg_at_k(ranked, rel, k, "toolgen")
    assert 0.0 <= standard <= toolgen <= 1.0 + 1e-12
    if relevant <= set(ranked[:k]) or len(relevant & set(ranked[:k])) == min(k, len(relevant)):
        assert standard == pytest.approx(toolgen)  # every relevant tool that fits was retrieved
    if k > 1 and len(ranked) > 1:
        assert toolgen == pytest.approx(_sklearn_toolgen(ranked, rel, k))
