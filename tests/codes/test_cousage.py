"""Co-usage graph: known answers, invariants, index mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolweaver.codes.cousage import (
    CoUsageEdge,
    cousage_counts,
    cousage_edges,
    edges_to_indices,
    groups_from_pairs,
)


def test_known_answer_three_groups() -> None:
    # groups: {a,b}, {a,b,c}, {a}, {d}  ->  C_aa=3, C_bb=2, C_cc=1, C_dd=1
    groups = [{"a", "b"}, {"a", "b", "c"}, {"a"}, {"d"}]
    diag, pairs = cousage_counts(groups)
    assert diag == {"a": 3, "b": 2, "c": 1, "d": 1}
    assert pairs == {("a", "b"): 2, ("a", "c"): 1, ("b", "c"): 1}
    edges = cousage_edges(groups)
    assert edges == [
        CoUsageEdge("a", "b", 2, 2 / math.sqrt(3 * 2)),
        CoUsageEdge("a", "c", 1, 1 / math.sqrt(3 * 1)),
        CoUsageEdge("b", "c", 1, 1 / math.sqrt(2 * 1)),
    ]


def test_always_together_has_weight_one_and_loner_has_no_edge() -> None:
    edges = cousage_edges([["x", "y"], ["y", "x"], ["z"]])
    assert edges == [CoUsageEdge("x", "y", 2, 1.0)]


def test_repeated_tool_in_a_group_counts_once() -> None:
    # a trajectory calling u twice is one group containing u
    assert cousage_edges([["u", "v", "u"]]) == [CoUsageEdge("u", "v", 1, 1.0)]
    diag, _ = cousage_counts([["u", "u", "u"]])
    assert diag == {"u": 1}


def test_no_groups_or_singletons_give_no_edges() -> None:
    assert cousage_edges([]) == []
    assert cousage_edges([["a"], ["b"], []]) == []


def test_groups_from_pairs_groups_by_id() -> None:
    pairs = [("q2", "b"), ("q1", "a"), ("q1", "b"), ("q2", "b"), ("q2", "c")]
    assert groups_from_pairs(pairs) == [frozenset({"a", "b"}), frozenset({"b", "c"})]


def test_src_sorted_before_dst_even_for_unsorted_input() -> None:
    edges = cousage_edges([["zeta", "alpha", "mid"]])
    assert all(e.src < e.dst for e in edges)
    assert [(e.src, e.dst) for e in edges] == [("alpha", "mid"), ("alpha", "zeta"), ("mid", "zeta")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(st.sampled_from("abcdefg"), max_size=5), max_size=12))
def test_weights_match_incidence_cosine(groups: list[set[str]]) -> None:
    """A_uv equals the cosine of the tools' 0/1 group-incidence vectors, and lies in (0, 1]."""
    tools = sorted(set().union(*groups)) if groups else []
    incidence = np.array([[t in g for g in groups] for t in tools], dtype=float).reshape(len(tools), len(groups))
    edges = cousage_edges(groups)
    for e in edges:
        u, v = incidence[tools.index(e.src)], incidence[tools.index(e.dst)]
        assert e.count == int(u @ v)
        assert e.weight == pytest.approx(u @ v / math.sqrt((u @ u) * (v @ v)))
        assert 0 < e.weight <= 1 + 1e-12
    expected_pairs = {(a, b) for g in groups for a in g for b in g if a < b}
    assert {(e.src, e.dst) for e in edges} == expected_pairs


def test_edges_to_indices_maps_rows_and_drops_unknown_tools() -> None:
    edges = [CoUsageEdge("a", "b", 2, 0.5), CoUsageEdge("a", "ghost", 1, 1.0), CoUsageEdge("b", "c", 1, 0.25)]
    src, dst, weight = edges_to_indices(edges, {"c": 0, "b": 1, "a": 2})
    assert src.tolist() == [2, 1]
    assert dst.tolist() == [1, 0]
    assert weight.dtype == np.float32
    assert weight.tolist() == [0.5, 0.25]
