"""Retention: checkpoints pruned per kind/stage, Delta files vacuumed except versions in use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage import Store
from storage.retention import in_use_versions, prune_checkpoints, vacuum
from tasks.stages.retention import RetentionConfig, retain

from ._helpers import qrels, tools


def _ckpt(tmp: Path, name: str) -> Path:
    folder = tmp / name
    folder.mkdir()
    (folder / "weights.bin").write_bytes(name.encode())
    return folder


def _parquet(store: Store, table: str) -> set[str]:
    return {p.name for p in store.table_path(table).glob("*.parquet")}


@pytest.fixture()
def history(store_dir: Path, tmp_path: Path) -> Store:
    """tools v0..v3 (overwrites); the run `model-run` wrote tools v1 and a checkpoint
    whose train_metrics-like table `qrels` v0 read tools v1; tools v2, v3 by later runs."""
    Store(store_dir, run_id="r0").write("tools", tools(3))
    model_run = Store(store_dir, run_id="model-run")
    v1 = model_run.write("tools", tools(4))
    model_run.write("qrels", qrels(["a"]), inputs=[v1])
    model_run.register_checkpoint("llm", _ckpt(tmp_path, "m1"), meta={"stage": "memorization"})
    Store(store_dir, run_id="r2").write("tools", tools(5))
    Store(store_dir, run_id="r3").write("tools", tools(6))
    return Store(store_dir)


def test_in_use_versions_follow_lineage_and_checkpoints(history: Store) -> None:
    keep = in_use_versions(history)
    # tools: v3 latest, v1 written by the run of a present checkpoint (and read by qrels v0).
    assert keep["tools"] == {1, 3} and keep["qrels"] == {0}
    assert in_use_versions(history, keep_last_versions=2)["tools"] == {1, 2, 3}


def test_vacuum_deletes_only_files_of_versions_out_of_use(history: Store) -> None:
    before = _parquet(history, "tools")
    old_rows = {v: history.read("tools", version=v).num_rows for v in range(4)}
    dry = {r.table: r for r in vacuum(history, retention_hours=0, dry_run=True)}
    assert _parquet(history, "tools") == before  # a dry run deletes nothing
    reports = {r.table: r for r in vacuum(history, retention_hours=0)}
    assert reports["tools"].deleted_files == dry["tools"].deleted_files
    gone = before - _parquet(history, "tools")
    assert len(gone) == 2 and {Path(f).name for f in reports["tools"].deleted_files} == gone  # v0 and v2 files
    # In-use versions read back whole; versions out of use lost their files.
    assert history.read("tools", version=1).num_rows == old_rows[1] == 4
    assert history.read("tools", version=3).num_rows == old_rows[3] == 6
    for v in (0, 2):
        with pytest.raises(Exception):  # noqa: B017 - delta-rs/arrow raise different types for a missing file
            history.read("tools", version=v)
    # The log is untouched: no VACUUM commits, same latest version and digest.
    assert history.latest("tools").version == 3 and len(history.history("tools")) == 4
    assert all(r.deleted_files == () for r in vacuum(history, retention_hours=0))  # idempotent


def test_retention_hours_protect_recently_superseded_files(history: Store) -> None:
    before = _parquet(history, "tools")
    assert all(r.deleted_files == () for r in vacuum(history, retention_hours=1))
    assert _parquet(history, "tools") == before


def test_in_use_versions_readable_with_sql_as_of_after_vacuum(history: Store) -> None:
    vacuum(history, retention_hours=0)
    runner = CliRunner()
    for as_of, rows in ((["--as-of", "tools=1"], 4), (["--as-of", "model-run"], 4), ([], 6)):
        out = runner.invoke(
            app, ["sql", "SELECT count(*) AS n FROM tools", "--store", str(history.root), "--format", "json", *as_of]
        )
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout) == [{"n": rows}], as_of


def test_prune_checkpoints_keeps_newest_per_kind_and_stage(store_dir: Path, tmp_path: Path) -> None:
    store = Store(store_dir, run_id="train")
    ids = {}
    for name, kind, stage in [
        ("m1", "llm", "memorization"),
        ("m2", "llm", "memorization"),
        ("m3", "llm", "memorization"),
        ("r1", "llm", "retrieval"),
        ("q1", "rqvae", None),
        ("q2", "rqvae", None),
    ]:
        ids[name] = store.register_checkpoint(kind, _ckpt(tmp_path, name), meta={"stage": stage} if stage else {})
    assert prune_checkpoints(store, 1, protect={ids["q1"]}, dry_run=True) == sorted([ids["m1"], ids["m2"]])
    assert all(store.checkpoints().column("present").to_pylist())
    pruned = prune_checkpoints(store, 1, protect={ids["q1"]})
    assert pruned == sorted([ids["m1"], ids["m2"]])
    rows = {r["checkpoint_id"]: r for r in store.checkpoints().to_pylist()}
    # Rows stay (history) and say the folder is gone; the path lookup fails loudly.
    assert {cid for cid, r in rows.items() if not r["present"]} == set(pruned) and len(rows) == 6
    with pytest.raises(FileNotFoundError, match="missing"):
        store.checkpoint_path(ids["m1"])
    assert store.checkpoint_path(ids["m3"]).is_dir() and store.checkpoint_path(ids["q1"]).is_dir()


def test_pruned_checkpoint_no_longer_holds_its_runs_versions(history: Store) -> None:
    """Once the model's folder is pruned, the versions its run wrote are out of use."""
    report = retain(history, RetentionConfig(keep_checkpoints=1, retention_hours=0))
    assert report.pruned_checkpoints == ()  # one checkpoint only: kept
    assert report.kept_versions["tools"] == (1, 3)
    (cid,) = history.checkpoints().column("checkpoint_id").to_pylist()
    import shutil

    shutil.rmtree(history.checkpoint_path(cid))  # e.g. pruned by an earlier retention
    # tools v1 is still the input of the latest qrels version: in use.
    assert retain(history, RetentionConfig(retention_hours=0)).kept_versions["tools"] == (1, 3)
    later_run = Store(history.root, run_id="r4")
    later_run.write("qrels", qrels(["b"]), inputs=[later_run.latest("tools")])
    later = retain(history, RetentionConfig(retention_hours=0))
    assert later.kept_versions["tools"] == (3,) and later.kept_versions["qrels"] == (1,)
    assert later.deleted_files == 2  # tools v1 and qrels v0


def test_vacuum_command(history: Store) -> None:
    out = CliRunner().invoke(
        app, ["vacuum", "--store", str(history.root), "--retention-hours", "0", "--dry-run", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    rows = {r["table"]: r for r in json.loads(out.stdout)}
    assert rows["tools"]["kept_versions"] == "1,3" and rows["tools"]["deleted_files"] == 2
    assert len(_parquet(history, "tools")) == 4  # dry run
    out = CliRunner().invoke(app, ["vacuum", "--store", str(history.root), "--retention-hours", "0"])
    assert out.exit_code == 0, out.output
    assert len(_parquet(history, "tools")) == 2
