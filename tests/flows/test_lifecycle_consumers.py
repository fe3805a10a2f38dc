"""Retired tools leave what the later stages read: the evaluation inputs (catalog,
candidates, qrels) and the training inputs (codes, qrels), while their qrels and code
rows stay in the store as history."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from storage import SCHEMAS, Store
from tasks.stages.datasets import read_inputs
from tasks.stages.evaluate import EvaluateConfig, store_inputs
from tasks.stages.ingest import ingest
from tests.ingest.catalog_examples import OPENAI_TOOLS, write_json

IDS = ["assistant&&get_weather", "assistant&&search_knowledge_base", "assistant&&send_email"]
RETIRED = "assistant&&send_email"


def labelled_store(tmp_path: Path) -> tuple[Store, Path]:
    """The OpenAI tools catalog plus 8 test queries, each relevant to one tool."""
    src = write_json(tmp_path / "src" / "assistant.json", OPENAI_TOOLS)
    store = Store(tmp_path / "store")
    ingest(store, "openai-tools", src)
    queries = [
        {"query_id": f"s/test/{i}", "raw_id": str(i), "text": f"question {i}", "source": "s", "split": "test",
         "query_group": "test"}
        for i in range(8)
    ]  # fmt: skip
    qrels = [{"query_id": f"s/test/{i}", "tool_id": IDS[i % 3], "relevance": 1, "source": "s"} for i in range(8)]
    store.write("queries", pa.Table.from_pylist(queries, schema=SCHEMAS["queries"]))
    store.write("qrels", pa.Table.from_pylist(qrels, schema=SCHEMAS["qrels"]))
    codes = [{"tool_id": t, "levels": [i, 0], "code": f"<a_{i}><b_0>", "codes_version": "v"} for i, t in enumerate(IDS)]
    store.write("codes", pa.Table.from_pylist(codes, schema=SCHEMAS["codes"]))
    return store, src


def test_retired_tools_leave_evaluation_and_training_inputs(tmp_path: Path) -> None:
    store, src = labelled_store(tmp_path)
    before, _, _ = store_inputs(store, "s", EvaluateConfig())
    assert RETIRED in before.catalog

    write_json(src, OPENAI_TOOLS[:2])
    assert ingest(store, "openai-tools", src, snapshot=True)["lifecycle"]["retired"] == [RETIRED]
    after, _, _ = store_inputs(store, "s", EvaluateConfig())
    assert RETIRED not in after.catalog
    for eval_set in after.eval_sets:
        assert RETIRED not in eval_set.domain_tool_ids
        assert all(RETIRED not in relevant for relevant in eval_set.qrels.values())
    rows, _ = read_inputs(store)
    assert RETIRED not in {r["tool_id"] for r in rows["codes"]} | {r["tool_id"] for r in rows["qrels"]}
    # history: the retired tool's qrels and code row are still stored
    assert RETIRED in store.read("qrels").column("tool_id").to_pylist()
    assert RETIRED in store.read("codes").column("tool_id").to_pylist()


def test_without_the_retirement_record_the_missing_tool_is_an_error(tmp_path: Path) -> None:
    """The filter is what makes evaluation work after a retirement (a tool dropped from
    `tools` without a `retired` event is still an inconsistency that fails loudly)."""
    store, src = labelled_store(tmp_path)
    write_json(src, OPENAI_TOOLS[:2])
    ingest(store, "openai-tools", src, snapshot=True)
    store.write("tool_events", store.read("tool_events").filter(pc.field("event") != "retired"))
    with pytest.raises(KeyError, match="not in the tools table"):
        store_inputs(store, "s", EvaluateConfig())
