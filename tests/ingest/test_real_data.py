"""The acceptance counts on the real data in ../shared/data (skipped when absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from storage import Store
from tasks.stages.ingest import ingest


@pytest.fixture(scope="module")
def toolenv_store(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Store, dict]:
    archive = shared_data / "toolbench" / "toolenv2404" / "toolenv2404_filtered.tar.gz"
    store = Store(tmp_path_factory.mktemp("toolenv"))
    return store, ingest(store, "toolbench", archive)


def test_toolenv2404_counts(toolenv_store: tuple[Store, dict]) -> None:
    store, summary = toolenv_store
    assert summary["stats"] == {"tool_files": 12301, "api_entries": 46803}
    assert summary["quarantine"] == {}
    tools = store.read("tools")
    assert tools.num_rows == 46270  # distinct raw tool_name&&api_name keys
    assert store.read("tool_doc_variants").num_rows == 46803 - 46270
    stripped = set(zip(*(c.to_pylist() for c in (tools.column("tool_name"), tools.column("api_name"))), strict=True))
    assert len({(t.strip(), a.strip()) for t, a in stripped}) == 46269
    assert len(set(tools.column("category").to_pylist())) == 49


def test_toolenv2404_reingest_writes_nothing(toolenv_store: tuple[Store, dict], shared_data: Path) -> None:
    store, first = toolenv_store
    archive = shared_data / "toolbench" / "toolenv2404" / "toolenv2404_filtered.tar.gz"
    again = ingest(store, "toolbench", archive)
    # No table moves; no tool changed, so no tool_events are appended either.
    assert "tool_events" not in again["refs"]
    assert {t: r.version for t, r in again["refs"].items()} == {t: first["refs"][t].version for t in again["refs"]}


def test_toolbench_answers_resolve_against_the_catalog(toolenv_store: tuple[Store, dict], shared_data: Path) -> None:
    store, _ = toolenv_store
    summary = ingest(store, "toolbench", shared_data / "toolbench" / "data_example")
    assert summary["stats"]["answer_files"] == 15
    assert summary["stats"]["answers_without_train_messages"] == 2
    assert summary["tables"]["trajectories"] == 13
    # Calls of tools missing from ToolEnv2404 are quarantined, never guessed.
    assert set(summary["quarantine"]) == {"unresolved_call"}
    tool_ids = set(store.read("tools").column("tool_id").to_pylist())
    called = [t for ids in store.read("trajectories").column("tool_ids").to_pylist() for t in ids]
    assert called and set(called) <= tool_ids


def test_stabletoolbench_and_toollens_counts(tmp_path: Path, shared_data: Path) -> None:
    store = Store(tmp_path / "store")
    stb = ingest(store, "stabletoolbench", shared_data / "toolbench" / "stabletoolbench")
    assert stb["quarantine"] == {}
    assert stb["tables"]["tools"] == 2479
    queries = store.read("queries").to_pylist()
    assert len(queries) == 765
    assert Counter(q["query_group"] for q in queries) == {
        "G1_instruction": 163,
        "G1_category": 153,
        "G1_tool": 158,
        "G2_instruction": 106,
        "G2_category": 124,
        "G3_instruction": 61,
    }
    assert len(set(store.read("qrels").column("query_id").to_pylist())) == 765
    differing = {
        v["tool_id"] for v in store.read("tool_doc_variants").to_pylist() if not v["reason"].startswith("same doc;")
    }
    assert len(differing) == 8  # "8 APIs have slightly different docs in different queries"

    lens = ingest(store, "beir", shared_data / "toollens")
    assert lens["quarantine"] == {}
    assert lens["stats"] == {"qrels_rows_read": 45035, "qrels_duplicate_rows": 170}
    assert lens["parsed"]["tool_records"] == 464
    assert lens["parsed"]["qrels_pairs"] == 44865
    # Raw query ids collide across datasets (224 shared); the source prefix keeps them apart.
    assert lens["tables"]["queries"] == 765 + 16893
    assert lens["tables"]["qrels"] == stb["tables"]["qrels"] + 44865
    raw = Counter(q["raw_id"] for q in store.read("queries").to_pylist())
    assert sum(1 for n in raw.values() if n > 1) == 224


def test_bfcl_counts(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    summary = ingest(store, "bfcl", None)
    assert summary["quarantine"] == {}
    assert summary["stats"]["questions_with_call_ground_truth"] == 2501
    assert summary["stats"]["multi_turn_questions"] == 800
    assert summary["tables"]["queries"] == 2501 + 800
    assert summary["tables"]["trajectories"] == 800
    tool_ids = set(store.read("tools").column("tool_id").to_pylist())
    assert set(store.read("qrels").column("tool_id").to_pylist()) <= tool_ids
