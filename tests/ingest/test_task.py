"""The ingest stage against a real Store: idempotence, replacement, cross-source merge."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from storage import Store
from tasks.stages.ingest import TABLES, from_arrow, ingest, ingest_source, to_arrow
from tests.ingest.corpus import api, good_toolbench, tool_file, write_json


def versions(store: Store) -> dict[str, int]:
    return {t: store.latest(t).version for t in TABLES}  # type: ignore[union-attr]


def beir_corpus(root: Path, description: str = "from toollens") -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    text = (
        f"category_name:Finance, tool_name:Stocks, api_name:Quote, api_description:{description}, "
        "required_params: [], optional_params: [], return_schema: {}"
    )
    (root / "corpus.jsonl").write_text(json.dumps({"_id": "0", "title": "", "text": text}) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "quote please"}) + "\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq\t0\t1\n")
    return root


def test_reingest_is_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    corpus = good_toolbench(tmp_path / "tb")
    first = ingest(store, "toolbench", corpus)
    before = versions(store)
    tables = {t: store.read(t) for t in TABLES}
    second = ingest(store, "toolbench", corpus)
    assert versions(store) == before  # no new Delta version anywhere
    assert all(store.read(t).equals(tables[t]) for t in TABLES)
    assert second["tables"] == first["tables"]
    assert first["tables"]["tools"] == 3 and first["tables"]["tool_doc_variants"] == 2


def test_changed_file_replaces_its_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    corpus = good_toolbench(tmp_path / "tb")
    ingest(store, "toolbench", corpus)
    before = versions(store)
    weather = corpus / "data" / "toolenv" / "tools" / "Weather" / "weather.json"
    write_json(weather, tool_file("Weather API", [api("Forecast", "Hourly forecast, new text")]))
    ingest(store, "toolbench", corpus)
    tools = {r["tool_id"]: r for r in store.read("tools").to_pylist()}
    assert tools["Weather API&&Forecast"]["description"] == "Hourly forecast, new text"
    variants = store.read("tool_doc_variants").column("description").to_pylist()
    assert "Daily forecast" not in variants  # the old doc of that file is gone, not a variant
    assert versions(store)["tools"] == before["tools"] + 1
    assert versions(store)["queries"] == before["queries"]


def test_adding_a_tool_adds_a_version_and_keeps_the_old_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    corpus = good_toolbench(tmp_path / "tb")
    ingest(store, "toolbench", corpus)
    write_json(corpus / "data" / "toolenv" / "tools" / "Travel" / "trips.json", tool_file("Trips", [api("Book")]))
    ingest(store, "toolbench", corpus)
    latest = store.latest("tools")
    assert latest is not None and latest.rows == 4 and latest.version == 1
    assert store.read("tools", version=0).num_rows == 3


def test_cross_source_merge_is_order_free(tmp_path: Path) -> None:
    tb, lens = good_toolbench(tmp_path / "tb"), beir_corpus(tmp_path / "lens")
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    ingest(a, "toolbench", tb)
    ingest(a, "beir", lens)
    ingest(b, "beir", lens)
    ingest(b, "toolbench", tb)
    for table in ("tools", "tool_doc_variants", "qrels", "queries"):
        assert a.read(table).equals(b.read(table)), table
    winner = {r["tool_id"]: r for r in a.read("tools").to_pylist()}["Stocks&&Quote"]
    assert winner["source"] == "toolbench"
    assert winner["description"] == "Latest quote for a ticker symbol"  # longest toolbench doc
    losers = a.read("tool_doc_variants").to_pylist()
    assert {(v["source"], v["origin"]) for v in losers if v["tool_id"] == "Stocks&&Quote"} == {
        ("beir", "corpus.jsonl#L1"),
        ("toolbench", "data/instruction/G1_query.json#0.api_list[0]"),
        ("toolbench", "data/toolenv/tools/Finance/stocks.json#api_list[0]"),
    }


def test_qrels_naming_unknown_tools_are_quarantined(tmp_path: Path) -> None:
    folder = tmp_path / "stb" / "solvable_queries" / "test_instruction"
    item = {
        "query": "q",
        "query_id": 1,
        "relevant APIs": [["T", "A"], ["Ghost", "Nope"]],
        "api_list": [{"category_name": "C", "tool_name": "T", "api_name": "A", "api_description": "d"}],
    }
    write_json(folder / "G1_instruction.json", [item])
    store = Store(tmp_path / "store")
    summary = ingest(store, "stabletoolbench", tmp_path / "stb")
    assert store.read("qrels").column("tool_id").to_pylist() == ["T&&A"]
    assert summary["quarantine"] == {"qrel_unknown_tool": 1}
    row = store.read("quarantine").to_pylist()[0]
    assert (row["locator"], row["excerpt"]) == ("stabletoolbench/G1_instruction/1", "Ghost&&Nope")
    again = ingest(store, "stabletoolbench", tmp_path / "stb")
    assert again["tables"]["quarantine"] == 1  # replaced, not duplicated


def test_ingest_source_returns_refs_of_every_table(tmp_path: Path) -> None:
    refs = ingest_source(Store(tmp_path / "store"), "toolbench", good_toolbench(tmp_path / "tb"))
    # + tool_events: the first ingest adds tools (tasks/stages/lifecycle.py)
    assert sorted(r.table for r in refs) == sorted([*TABLES, "tool_events"])


def test_arrow_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ingest(store, "toolbench", good_toolbench(tmp_path / "tb"))
    for table in TABLES:
        data = store.read(table)
        again = to_arrow(table, from_arrow(table, data))
        assert isinstance(again, pa.Table) and again.equals(data.cast(again.schema))
