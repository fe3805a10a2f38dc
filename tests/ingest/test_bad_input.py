"""Item 5: a corpus of bad files; each bad record is quarantined with a reason, every good
record still lands, the CLI prints counts per reason, and --strict fails."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storage import Store
from tasks.stages.ingest import QuarantineError, ingest
from tests.ingest.corpus import api, tool_file, write_json
from toolweaver.ingest import toolbench
from toolweaver.ingest.quarantine import DOC_MAX_CHARS

EXPECTED_REASONS = {
    "invalid_json": 1,
    "non_utf8": 1,
    "wrong_type": 4,  # api_list a string, an API that is a number, a numeric description, a numeric query
    "missing_name": 2,  # an API without a name, a tool without a name
    "path_traversal_name": 1,
    "nul_in_name": 2,  # a NUL in an API name, a NUL in a tool name
    "doc_too_large": 1,
    "missing_field": 1,
}
GOOD_TOOL_IDS = {"Stocks&&Quote", "Stocks&&History", "Mixed&&Good"}


def bad_corpus(root: Path) -> Path:
    tools = root / "tools"
    write_json(tools / "Finance" / "stocks.json", tool_file("Stocks", [api("Quote"), api("History")]))
    (tools / "Finance" / "api.py").write_text("raise SystemExit('api.py must never run')\n")
    (tools / "Broken").mkdir(parents=True)
    (tools / "Broken" / "truncated.json").write_text('{"tool_name": "Cut", "api_list": [{"name": "A", "desc')
    (tools / "Broken" / "latin1.json").write_bytes(
        json.dumps(tool_file("Caf\u00e9", [api("A")]), ensure_ascii=False).encode("latin-1")
    )
    write_json(tools / "Broken" / "wrongtype.json", {"tool_name": "W", "api_list": "not a list"})
    write_json(tools / "Broken" / "noname.json", {"api_list": [api("A")]})
    write_json(tools / "Broken" / "nultool.json", tool_file("Bad\x00Tool", [api("A")]))
    numeric_description = api("Numeric")
    numeric_description["description"] = 5
    mixed = [
        api("Good"),
        42,
        {"description": "an API without a name"},
        api("../../etc/x"),
        api("nul\x00api"),
        api("Huge", "x" * (DOC_MAX_CHARS + 1)),
        numeric_description,
    ]
    write_json(tools / "Broken" / "mixed.json", tool_file("Mixed", mixed))
    write_json(root / "instruction" / "G9_query.json", [{"query": 5, "query_id": 1}, {"query_id": 2}])
    return root


def test_parser_quarantines_each_bad_record_and_keeps_the_good(tmp_path: Path) -> None:
    result = toolbench.parse(bad_corpus(tmp_path / "bad"))
    assert {t.tool_id for t in result.tools} == GOOD_TOOL_IDS
    assert Counter(q.reason for q in result.quarantine) == EXPECTED_REASONS
    by_reason = {q.reason: q for q in result.quarantine}
    assert by_reason["invalid_json"].locator == "tools/Broken/truncated.json"
    assert by_reason["path_traversal_name"].locator == "tools/Broken/mixed.json#api_list[3]"
    assert by_reason["doc_too_large"].locator == "tools/Broken/mixed.json#api_list[5]"
    assert all(len(q.excerpt) <= 500 and "\x00" not in q.excerpt for q in result.quarantine)
    assert "api.py" not in " ".join(result.files)  # code files are never even read


def test_task_writes_good_rows_and_quarantine_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    summary = ingest(store, "toolbench", bad_corpus(tmp_path / "bad"))
    assert summary["quarantine"] == EXPECTED_REASONS
    assert set(store.read("tools").column("tool_id").to_pylist()) == GOOD_TOOL_IDS
    quarantine = store.read("quarantine")
    assert Counter(quarantine.column("reason").to_pylist()) == EXPECTED_REASONS
    assert set(quarantine.column("source").to_pylist()) == {"toolbench"}


def test_strict_raises_and_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(QuarantineError, match="nothing written"):
        ingest(store, "toolbench", bad_corpus(tmp_path / "bad"), strict=True)
    assert store.tables() == []


def test_cli_prints_counts_per_reason_and_strict_exits_non_zero(tmp_path: Path) -> None:
    from flows.cli import app

    corpus = bad_corpus(tmp_path / "bad")
    runner = CliRunner()
    args = [
        "ingest",
        "--source",
        "toolbench",
        "--path",
        str(corpus),
        "--store",
        str(tmp_path / "store"),
        "--format",
        "json",
    ]
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 2, strict.output
    assert not (tmp_path / "store" / "tools").exists()
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)
    quarantined = {r["name"]: r["count"] for r in rows if r["kind"] == "quarantined"}
    assert quarantined == {**EXPECTED_REASONS, "total": sum(EXPECTED_REASONS.values())}
    assert {r["name"]: r["count"] for r in rows if r["kind"] == "table rows"}["tools"] == len(GOOD_TOOL_IDS)
