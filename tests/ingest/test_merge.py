"""The one-row-per-tool rule: deterministic, order-free, never drops a tool_id."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from toolweaver.ingest.docs import doc_text
from toolweaver.ingest.merge import merge_qrels, merge_queries, merge_tools, variant_to_tool
from toolweaver.ingest.records import QrelRecord, QueryRecord, ToolRecord, sha256_hex


def record(tool: str, api: str, description: str, source: str, origin: str) -> ToolRecord:
    text = doc_text(tool, api, description, "{}")
    return ToolRecord(f"{tool}&&{api}", tool, api, "C", description, "{}", text, sha256_hex(text), source, origin)


def test_source_rank_beats_description_length() -> None:
    long_beir = record("T", "A", "a much longer description", "beir", "corpus.jsonl#L1")
    short_toolbench = record("T", "A", "short", "toolbench", "C/t.json#api_list[0]")
    tools, variants = merge_tools([long_beir, short_toolbench])
    assert tools == [short_toolbench]
    assert [v.origin for v in variants] == ["corpus.jsonl#L1"]
    assert variants[0].reason == "different doc; lost to toolbench:C/t.json#api_list[0]"
    assert variant_to_tool(variants[0]) == long_beir  # round trip


def test_longer_description_then_hash_then_origin() -> None:
    short = record("T", "A", "short", "toolbench", "a.json#0")
    long = record("T", "A", "longer one", "toolbench", "b.json#0")
    assert merge_tools([short, long])[0] == [long]
    same_a = record("T", "A", "same", "toolbench", "z.json#0")
    same_b = record("T", "A", "same", "toolbench", "y.json#0")
    tools, variants = merge_tools([same_a, same_b])
    assert tools == [same_b]  # identical docs: the smaller origin wins
    assert variants[0].reason.startswith("same doc;")


def test_exact_repeats_collapse() -> None:
    one = record("T", "A", "d", "toolbench", "a.json#0")
    tools, variants = merge_tools([one, one, one])
    assert tools == [one] and variants == []


_records = st.lists(
    st.builds(
        record,
        st.sampled_from(["T", "U", " T "]),
        st.sampled_from(["A", "B"]),
        st.text(max_size=8),
        st.sampled_from(["toolbench", "stabletoolbench", "bfcl", "beir", "toolgen", "other"]),
        st.sampled_from(["a#0", "b#1", "c#2"]),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(records=_records, seed=st.randoms(use_true_random=False))
def test_merge_is_order_free_and_keeps_every_tool_id(records: list[ToolRecord], seed) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(records)
    seed.shuffle(shuffled)
    assert merge_tools(shuffled) == merge_tools(records)
    tools, variants = merge_tools(records)
    assert [t.tool_id for t in tools] == sorted({r.tool_id for r in records})
    distinct = {(r.tool_id, r.source, r.origin, r.doc_hash) for r in records}
    assert len(tools) + len(variants) == len(distinct)
    # Re-merging the output (as the task does with stored rows) changes nothing.
    assert merge_tools([*tools, *map(variant_to_tool, variants)]) == (tools, variants)


def test_merge_queries_prefers_text_and_is_order_free() -> None:
    empty = QueryRecord("s/g/1", "1", "", "s", "train", "g")
    full = QueryRecord("s/g/1", "1", "hello", "s", "train", "g")
    assert merge_queries([empty, full]) == merge_queries([full, empty]) == [full]


def test_merge_qrels_counts_repeats_and_keeps_max_relevance() -> None:
    rows = [QrelRecord("q", "t", 1, "s"), QrelRecord("q", "t", 2, "s"), QrelRecord("q", "u", 1, "s")]
    merged, repeats = merge_qrels(rows)
    assert repeats == 1
    assert merged == [QrelRecord("q", "t", 2, "s"), QrelRecord("q", "u", 1, "s")]
