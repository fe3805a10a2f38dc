"""BM25 tokenizer and ranking, the harness with a scripted method, split and report helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from toolweaver.align.splits import SplitConfig, assign_split
from toolweaver.eval.base import Ranking, TrainQuery
from toolweaver.eval.bm25 import BM25Method, tokenize
from toolweaver.eval.harness import EvalSet, TrainSet, evaluate_method
from toolweaver.eval.methods import parse_method_ids
from toolweaver.eval.report import markdown_table, write_report
from toolweaver.eval.sets import _Query, assemble

TOOLS = {
    "Weather&&forecast": 'tool: Weather api: forecast {"name": "city", "type": "STRING"} daily weather forecast',
    "Recipes&&search": 'tool: Recipes api: search {"name": "ingredient"} find cooking recipes',
    "Stocks&&quote": 'tool: Stocks api: quote {"name": "symbol"} latest stock price quote',
}


def test_tokenizer_drops_json_punctuation_and_splits_names() -> None:
    assert tokenize('{"name": "q", "type": "STRING"}') == ["name", "q", "type", "string"]
    assert tokenize("getOrderStatus order_id") == ["get", "order", "status", "order", "id"]
    assert all(not set(t) & set('{}[]":,') for t in tokenize('[{"a": [1, 2]}, {"b": "c"}]'))


def test_bm25_ranks_the_matching_doc_first_and_respects_candidates() -> None:
    method = BM25Method()
    method.fit([], {}, TOOLS)
    best = method.rank(["weather forecast for Paris", "stock price of ACME"], list(TOOLS), 3)
    assert [r[0][0] for r in best] == ["Weather&&forecast", "Stocks&&quote"]
    restricted = method.rank(["weather forecast"], ["Recipes&&search", "Stocks&&quote"], 5)[0]
    assert {t for t, _ in restricted} == {"Recipes&&search", "Stocks&&quote"}
    with pytest.raises(KeyError, match="not in the catalog"):
        method.rank(["x"], ["Unknown&&api"], 1)


class Scripted:
    """A method whose rankings are given: the harness must turn them into known metrics."""

    method_id = "scripted"
    zero_shot = False
    model_id = "script"

    def __init__(self, answers: Mapping[str, list[str]]) -> None:
        self.answers = answers
        self.fitted_on: list[str] = []
        self.candidates_seen: list[list[str]] = []

    def fit(
        self, train_queries: Sequence[TrainQuery], qrels: Mapping[str, Mapping[str, float]], tools: Mapping[str, str]
    ) -> None:
        self.fitted_on = [q.query_id for q in train_queries]

    def rank(self, query_texts: Sequence[str], candidate_tool_ids: Sequence[str], k: int) -> list[Ranking]:
        self.candidates_seen.append(list(candidate_tool_ids))
        return [[(t, 1.0) for t in self.answers[text] if t in candidate_tool_ids][:k] for text in query_texts]


def test_harness_rows_known_values_settings_and_zero_shot() -> None:
    catalog = {**TOOLS, "Other&&api": "other"}
    eval_set = EvalSet(
        dataset="toy",
        split="test",
        queries={"q1": "weather", "q2": "cook and invest"},
        qrels={"q1": {"Weather&&forecast": 1}, "q2": {"Recipes&&search": 1, "Stocks&&quote": 1}},
        domain_tool_ids=list(TOOLS),
    )
    method = Scripted({"weather": ["Other&&api", "Weather&&forecast"], "cook and invest": ["Recipes&&search"]})
    train = TrainSet("toy", [TrainQuery("t1", "x")], {"t1": {"Weather&&forecast": 1}})
    rows = evaluate_method(method, catalog, train, [eval_set], data_versions={"tools": 3})
    assert method.fitted_on == ["t1"]
    assert method.candidates_seen == [sorted(TOOLS), sorted(catalog)]  # in-domain, then multi-domain
    value = {(r.setting, r.convention, r.metric): r.value for r in rows}
    # In-domain the distractor is not a candidate: q1 is a hit at rank 1.
    assert value[("in-domain", "standard", "ndcg@1")] == 1.0
    assert value[("multi-domain", "standard", "ndcg@1")] == 0.5
    # q2: one of two relevant at rank 1 -> standard 1/(1+1/log2 3), ToolGen 1.
    assert value[("in-domain", "toolgen", "ndcg@5")] == pytest.approx(1.0)
    assert value[("in-domain", "standard", "ndcg@5")] == pytest.approx((1 + 1 / (1 + 1 / 1.5849625007211562)) / 2)
    assert {r.convention for r in rows} == {"standard", "toolgen"}
    assert all(not r.zero_shot and r.data_versions == '{"tools": 3}' for r in rows)
    other = evaluate_method(method, catalog, TrainSet("another"), [eval_set], ["in-domain"])
    assert all(r.zero_shot for r in other)  # no training queries of this dataset


def test_assemble_holds_out_validation_like_the_llm_datasets() -> None:
    queries = [_Query(f"beir/train/{i}", str(i), f"query {i}", "train") for i in range(200)]
    qrels = [(q.query_id, "Weather&&forecast", 1.0) for q in queries]
    config = SplitConfig(seed=3, validation_fraction=0.2)
    inputs = assemble("toy", TOOLS, list(TOOLS), queries, qrels, config)
    held = set(inputs.eval_sets[0].qrels)
    assert inputs.eval_sets[0].split == "validation"
    assert held == {q.query_id for q in queries if assign_split(q.query_id, "train", config) == "validation"}
    assert held.isdisjoint(q.query_id for q in inputs.train.queries)
    assert len(held) + len(inputs.train.queries) == 200 and 20 < len(held) < 60


def test_parse_method_ids() -> None:
    assert parse_method_ids("bm25, dense") == ["bm25", "dense"]
    with pytest.raises(ValueError, match="unknown"):
        parse_method_ids("bm25,bm26")
    with pytest.raises(ValueError, match="repeated"):
        parse_method_ids("bm25,bm25")


def test_report_labels_conventions_and_writes_png(tmp_path: Path) -> None:
    rows = [
        {
            "method": "bm25",
            "setting": "in-domain",
            "convention": c,
            "metric": m,
            "value": v,
            "n_queries": 7,
            "dataset": "toy",
            "split": "test",
            "zero_shot": True,
        }
        for c, v in (("standard", 0.25), ("toolgen", 0.5))
        for m in ("ndcg@5", "recall@5")
    ]
    table = markdown_table(rows)
    assert "NDCG convention: standard" in table and "NDCG convention: toolgen" in table
    assert "| bm25 | yes | 7 | — | — | 0.2500 | 0.2500 | — |" in table
    md, png = write_report(rows, tmp_path / "r", command="toolweaver evaluate --beir X")
    assert "toolweaver evaluate --beir X" in md.read_text(encoding="utf-8")
    assert png.stat().st_size > 1000


def test_build_from_records_in_domain_counts_tools_the_source_documented() -> None:
    from toolweaver.eval.sets import build_from_records

    tools = [
        {"tool_id": "A&&x", "doc_text": "a", "source": "toolbench"},  # won the merge over stb's doc
        {"tool_id": "B&&y", "doc_text": "b", "source": "stabletoolbench", "origin": "G1.json#0.api_list[0]"},
        {"tool_id": "C&&z", "doc_text": "c", "source": "toolbench"},  # not in the evaluated set
    ]
    variants = [{"tool_id": "A&&x", "source": "stabletoolbench", "origin": "G2.json#3.api_list[1]"}]
    queries = [
        {
            "query_id": "stb/G1/1",
            "raw_id": "1",
            "text": "q1",
            "source": "stabletoolbench",
            "split": "test",
            "query_group": "G1",
        },
        {
            "query_id": "stb/G2/2",
            "raw_id": "2",
            "text": "q2",
            "source": "stabletoolbench",
            "split": "test",
            "query_group": "G2",
        },
    ]
    qrels = [
        {"query_id": "stb/G1/1", "tool_id": "B&&y", "relevance": 1},
        {"query_id": "stb/G2/2", "tool_id": "A&&x", "relevance": 1},
    ]
    inputs = build_from_records("stb", tools, queries, qrels, source="stabletoolbench", variants=variants)
    (eval_set,) = inputs.eval_sets
    assert sorted(eval_set.domain_tool_ids) == ["A&&x", "B&&y"]
    assert set(inputs.catalog) == {"A&&x", "B&&y", "C&&z"}
    assert not inputs.train.queries
    g1 = build_from_records("stb", tools, queries, qrels, source="stabletoolbench", query_group="G1", variants=variants)
    assert list(g1.eval_sets[0].qrels) == ["stb/G1/1"]
    assert g1.eval_sets[0].domain_tool_ids == ["B&&y"]  # the group's own file documents only B


def test_labelled_llm_method_ids_name_their_base_method() -> None:
    from toolweaver.eval.methods import llm_base

    assert parse_method_ids("toolweaver,toolweaver-l0,atomic-seed1") == ["toolweaver", "toolweaver-l0", "atomic-seed1"]
    assert [llm_base(m) for m in ("toolweaver-l0", "atomic-seed1", "atomic", "bm25")] == [
        "toolweaver",
        "atomic",
        "atomic",
        None,
    ]
    for bad in ("toolweaver-", "bm25-x", "toolweaver-L0", "toolweaverx"):
        with pytest.raises(ValueError, match="unknown method id"):
            parse_method_ids(bad)
