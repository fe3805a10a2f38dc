"""Store format version: a new store records the current format; a store written by the
previous release (format 1: Delta tables, no marker, no tool_events; built here from
that format's rules) is migrated on open, once; a newer format is refused untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from typer.testing import CliRunner

from storage import SCHEMAS, Store
from storage.format import FORMAT_VERSION, MARKER, StoreFormatError, read_format
from tasks.stages.ingest import ingest
from tasks.stages.lifecycle import retired_tools
from tests.ingest.catalog_examples import OPENAI_TOOLS, write_json
from toolweaver.ingest import openai_tools


def previous_format_store(root: Path, tools_file: Path) -> list[dict]:
    """A format-1 store: the `tools` table as plain Delta under tables/, nothing else."""
    rows = [{k: getattr(t, k) for k in SCHEMAS["tools"].names} for t in openai_tools.parse(tools_file).tools]
    write_deltalake(str(root / "tables" / "tools"), pa.Table.from_pylist(rows, schema=SCHEMAS["tools"]))
    return rows


def test_a_new_store_records_the_current_format(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    assert store.format_version == FORMAT_VERSION == read_format(store.root)
    marker = json.loads((store.root / MARKER).read_text())
    assert marker["format_version"] == FORMAT_VERSION and marker["upgrades"] == []


def test_previous_format_is_migrated_once_on_open(tmp_path: Path) -> None:
    src = write_json(tmp_path / "src" / "assistant.json", OPENAI_TOOLS)
    root = tmp_path / "store"
    rows = previous_format_store(root, src)
    assert read_format(root) == 1 and not (root / MARKER).exists()

    store = Store(root)
    assert store.format_version == FORMAT_VERSION
    marker = json.loads((root / MARKER).read_text())
    assert [(u["from"], u["to"]) for u in marker["upgrades"]] == [(1, 2)]
    assert store.read("tools").to_pylist() == rows  # data untouched
    events = store.read("tool_events").to_pylist()
    assert sorted(e["tool_id"] for e in events) == sorted(r["tool_id"] for r in rows)
    assert {(e["event"], e["reason"]) for e in events} == {("added", "present at the upgrade to format 2")}
    assert {e["tool_id"]: e["new_doc_hash"] for e in events} == {r["tool_id"]: r["doc_hash"] for r in rows}

    # Idempotent: a second open changes nothing; an upgrade that crashed before its
    # marker was written (the marker gone, tool_events present) is finished without duplicates.
    Store(root)
    (root / MARKER).unlink()
    assert Store(root).format_version == FORMAT_VERSION
    assert Store(root).latest("tool_events").rows == len(rows)

    # The migrated store works like any other: a snapshot without send_email retires it.
    write_json(src, OPENAI_TOOLS[:2])
    assert ingest(store, "openai-tools", src, snapshot=True)["lifecycle"]["counts"]["retired"] == 1
    assert retired_tools(store) == {"assistant&&send_email"}


def test_a_newer_format_is_refused_untouched(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store(root).write("tools", pa.Table.from_pylist([], schema=SCHEMAS["tools"]))
    newer = {"format_version": FORMAT_VERSION + 1, "created_by": "toolweaver 9.0", "upgrades": []}
    (root / MARKER).write_text(json.dumps(newer))
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".locks" not in p.parts)
    with pytest.raises(StoreFormatError, match=rf"format {FORMAT_VERSION + 1}, newer than the format {FORMAT_VERSION}"):
        Store(root)
    after = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".locks" not in p.parts)
    assert after == before and json.loads((root / MARKER).read_text()) == newer

    from flows.cli import app

    out = CliRunner().invoke(app, ["upgrade-store", "--store", str(root)])
    assert out.exit_code == 2 and "newer than the format" in out.output


def test_upgrade_store_command_reports_the_upgrade(tmp_path: Path) -> None:
    from flows.cli import app

    root = tmp_path / "store"
    previous_format_store(root, write_json(tmp_path / "assistant.json", OPENAI_TOOLS))
    out = CliRunner().invoke(app, ["upgrade-store", "--store", str(root), "--format", "json"])
    assert out.exit_code == 0, out.output
    report = {r["key"]: r["value"] for r in json.loads(out.stdout)}
    assert report["format_version"] == str(FORMAT_VERSION) and "upgrade 1->2" in report
    missing = CliRunner().invoke(app, ["upgrade-store", "--store", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "no store at" in missing.output and not (tmp_path / "none").exists()


def test_a_corrupt_marker_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / MARKER).write_text("{not json")
    with pytest.raises(StoreFormatError, match="unreadable store format marker"):
        Store(root)
