"""`toolweaver evaluate --beir DIR` on a BEIR folder it has never seen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app


def test_evaluate_beir_bm25_dense_json(small_beir: Path, store_dir: Path, tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--store",
            str(store_dir),
            "--beir",
            str(small_beir),
            "--methods",
            "bm25,dense",
            "--format",
            "json",
            "--report-dir",
            str(report_dir),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads(result.stdout)  # stdout holds only the JSON array
    assert {r["method"] for r in rows} == {"bm25", "dense"}
    assert {r["convention"] for r in rows} == {"standard", "toolgen"}
    assert {r["setting"] for r in rows} == {"in-domain", "multi-domain"}
    assert {r["split"] for r in rows} == {"test"}  # train is never evaluated
    by_key = {(r["method"], r["setting"], r["convention"], r["metric"]): r for r in rows}
    for method in ("bm25", "dense"):
        std = by_key[(method, "in-domain", "standard", "ndcg@5")]
        tg = by_key[(method, "in-domain", "toolgen", "ndcg@5")]
        assert std["n_queries"] == 100
        assert 0.0 < std["value"] <= tg["value"] <= 1.0  # the ToolGen ideal is never larger
        assert by_key[(method, "in-domain", "standard", "recall@5")]["value"] > 0.1
        assert std["zero_shot"] is True
        # The store held no other tools: both settings rank the same 60 candidates.
        assert by_key[(method, "multi-domain", "standard", "ndcg@5")]["value"] == pytest.approx(std["value"])

    # Rows are stored, the report and chart were written.
    from storage import Store

    stored = Store(store_dir).read("eval_results").to_pylist()
    assert len(stored) == len(rows)
    md = (report_dir / "eval_report.md").read_text(encoding="utf-8")
    assert "NDCG convention: toolgen" in md and "NDCG convention: standard" in md
    assert (report_dir / "eval_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_rejects_unknown_method(small_beir: Path, store_dir: Path) -> None:
    result = CliRunner().invoke(
        app, ["evaluate", "--store", str(store_dir), "--beir", str(small_beir), "--methods", "bm25,nope"]
    )
    assert result.exit_code != 0
    assert "nope" in result.output


def test_evaluate_ingested_dataset_and_vocab_report(small_beir: Path, store_dir: Path) -> None:
    import pyarrow as pa

    from storage import Store
    from tasks.stages.ingest import ingest

    store = Store(store_dir)
    ingest(store, "beir", small_beir)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--store",
            str(store_dir),
            "--dataset",
            "beir",
            "--methods",
            "bm25",
            "--setting",
            "in-domain",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads(result.stdout)
    assert {(r["dataset"], r["split"], r["setting"]) for r in rows} == {("beir", "test", "in-domain")}
    ndcg = {r["convention"]: r for r in rows if r["metric"] == "ndcg@5"}
    assert ndcg["standard"]["n_queries"] == 100 and 0 < ndcg["standard"]["value"] <= ndcg["toolgen"]["value"]

    # Vocabulary: 60 tools coded with L=2 levels out of K=8 (inferred: no vocabulary table).
    tool_ids = store.read("tools", columns=["tool_id"]).column("tool_id").to_pylist()
    levels = [[i % 8, (i // 8) % 8] for i in range(len(tool_ids))]
    codes = pa.table(
        {
            "tool_id": tool_ids,
            "levels": levels,
            "code": [f"<a_{a}><b_{b}>" for a, b in levels],
            "codes_version": ["v1"] * len(tool_ids),
        }
    )
    store.write("codes", codes)
    result = runner.invoke(app, ["vocab-report", "--store", str(store_dir), "--format", "json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    (report,) = json.loads(result.stdout)
    assert report["atomic_tokens_added"] == len(tool_ids) + 1 == 61
    assert report["code_tokens_added"] == 2 * 8 + 1
