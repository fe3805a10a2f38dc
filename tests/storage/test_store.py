"""Store: round trips, idempotence, lineage (table + commit metadata), checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from storage import SCHEMAS, SchemaError, Store, TableRef, embeddings_schema
from storage.digest import table_digest
from storage.lineage import METADATA_KEY

from ._helpers import qrels, tools


def test_round_trip_keeps_values_and_exact_types(store_dir: Path) -> None:
    store = Store(store_dir)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float32)), 4)
    emb = pa.table({"doc_hash": ["a", "b", "c"], "model_id": ["m"] * 3, "embedding": vectors})
    traj = pa.Table.from_pylist(
        [
            {"trajectory_id": "t1", "query_id": None, "messages": "[]", "tool_ids": ["x", "y"], "source": "s"},
            {"trajectory_id": "t2", "query_id": "q", "messages": "[{}]", "tool_ids": [], "source": "s"},
        ],
        schema=SCHEMAS["trajectories"],
    )
    emb = emb.cast(embeddings_schema(4))  # declared non-nullable
    for name, data in [("tools", tools(5)), ("embeddings", emb), ("trajectories", traj)]:
        ref = store.write(name, data)
        assert ref == TableRef(name, 0, table_digest(data), data.num_rows)
        back = store.read(name)
        assert back.schema.equals(data.schema), name
        assert back.equals(data), name
    assert store.read("embeddings", columns=["embedding"]).column(0).type == pa.list_(pa.float32(), 4)
    assert [r.table for r in store.tables()] == ["embeddings", "lineage", "tools", "trajectories"]


def test_unchanged_content_writes_no_version(store_dir: Path) -> None:
    store = Store(store_dir)
    first = store.write("tools", tools(3))
    again = store.write("tools", tools(3), run_id="other")
    assert again == first
    assert store.write("tools", tools(3).slice(0, 0), mode="append") == first
    assert DeltaTable(str(store.table_path("tools"))).version() == 0
    changed = store.write("tools", tools(4))
    assert (changed.version, changed.rows) == (1, 4)
    back_to_first = store.write("tools", tools(3))  # differs from the latest: a new version
    assert (back_to_first.version, back_to_first.digest) == (2, first.digest)
    assert store.read("tools", version=1).num_rows == 4
    assert store.read("tools", version=0).equals(tools(3))


def test_append_chains_digest_and_counts_rows(store_dir: Path) -> None:
    store = Store(store_dir)
    a = store.write("qrels", qrels(["a", "b"]), mode="append")
    b = store.write("qrels", qrels(["c"]), mode="append")
    assert (a.version, a.rows, b.version, b.rows) == (0, 2, 1, 3)
    assert b.digest not in (a.digest, table_digest(qrels(["c"])))
    assert store.read("qrels").column("query_id").to_pylist() == ["a", "b", "c"]
    # The same appends into another store give the same digests: they name the content.
    other = Store(store_dir.parent / "other")
    other.write("qrels", qrels(["a", "b"]), mode="append")
    assert other.write("qrels", qrels(["c"]), mode="append").digest == b.digest


def test_lineage_rows_and_commit_metadata(store_dir: Path) -> None:
    store = Store(store_dir, run_id="run-1")
    src = store.write("tools", tools(2), config_hash="cfg-a")
    out = store.write("qrels", qrels(["q"]), run_id="run-2", config_hash="cfg-b", inputs=[src])
    lineage = store.read("lineage").sort_by([("table", "ascending")]).to_pylist()
    assert [(r["table"], r["version"], r["rows"], r["run_id"], r["config_hash"]) for r in lineage] == [
        ("qrels", 0, 1, "run-2", "cfg-b"),
        ("tools", 0, 2, "run-1", "cfg-a"),
    ]
    assert lineage[0]["digest"] == out.digest
    assert json.loads(lineage[0]["inputs"]) == [["tools", 0]]
    assert lineage[0]["code_version"].startswith("0.")
    assert abs((datetime.now(UTC) - lineage[0]["written_at"]).total_seconds()) < 60
    commit = DeltaTable(str(store.table_path("qrels"))).history(1)[0]
    meta = json.loads(commit[METADATA_KEY])
    assert (meta["digest"], meta["rows"], meta["run_id"], meta["inputs"]) == (out.digest, 1, "run-2", [["tools", 0]])
    assert meta["written_at"] == lineage[0]["written_at"].isoformat()


def test_lineage_is_restored_after_a_crash_between_the_two_commits(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(store_dir, run_id="r")
    store.write("qrels", qrels(["a"]))
    # Die right after the data commit, before the lineage mirror is appended.
    monkeypatch.setattr(Store, "_append_lineage", lambda self, records: (_ for _ in ()).throw(SystemExit(9)))
    with pytest.raises(SystemExit):
        store.write("qrels", qrels(["b"]))
    monkeypatch.undo()
    assert store.latest("qrels").version == 1  # the data commit is complete
    assert sorted(store.read("lineage").column("version").to_pylist()) == [0]
    Store(store_dir).sync_lineage()
    assert sorted(store.read("lineage").column("version").to_pylist()) == [0, 1]
    Store(store_dir).write("qrels", qrels(["c"]))
    got = sorted((r["version"], r["rows"]) for r in store.read("lineage").to_pylist())
    assert got == [(0, 1), (1, 1), (2, 1)]


def test_schema_errors_name_the_column_and_write_nothing(store_dir: Path) -> None:
    store = Store(store_dir)
    bad = qrels(["a"]).drop_columns(["tool_id"])
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['tool_id'\]"):
        store.write("qrels", bad)
    assert not store.exists("qrels")
    with pytest.raises(SchemaError, match="no declared schema"):
        store.write("mystery", pa.table({"x": [1]}))
    custom = pa.schema([pa.field("x", pa.int16(), False)])
    ref = store.write("mystery", pa.table({"x": [1, 2]}), schema=custom)
    assert store.read("mystery").schema.equals(custom) and ref.rows == 2
    with pytest.raises(SchemaError, match="was written with schema"):
        store.write("mystery", pa.table({"x": [3]}), schema=pa.schema([("x", pa.int64())]), mode="append")
    # Overwrite may change the schema (a new version).
    assert store.write("mystery", pa.table({"y": ["a"]}), schema=pa.schema([("y", pa.string())])).version == 1
    with pytest.raises(ValueError, match="written by the store itself"):
        store.write("lineage", store.read("lineage"))


def test_reading_unknown_tables_and_versions_fails_clearly(store_dir: Path) -> None:
    store = Store(store_dir)
    assert store.latest("tools") is None and not store.exists("tools")
    with pytest.raises(FileNotFoundError, match="no table 'tools'"):
        store.read("tools")
    store.write("tools", tools(1))
    with pytest.raises(ValueError, match=r"versions 0\.\.0, not 3"):
        store.read("tools", version=3)


def test_root_defaults_to_toolweaver_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLWEAVER_HOME", str(tmp_path / "home"))
    assert Store().root == tmp_path / "home" and (tmp_path / "home").is_dir()
    monkeypatch.delenv("TOOLWEAVER_HOME")
    monkeypatch.chdir(tmp_path)
    assert Store().root == Path("artifacts") and (tmp_path / "artifacts").is_dir()


def _checkpoint(folder: Path, weights: bytes) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "sub" / "config.json").write_text('{"dim": 4}')
    return folder


def test_checkpoint_registration_round_trip(store_dir: Path, tmp_path: Path) -> None:
    store = Store(store_dir, run_id="train-1")
    src = _checkpoint(tmp_path / "ckpt", b"\x00\x01weights")
    cid = store.register_checkpoint("rqvae", src, config_hash="c", meta={"epochs": 3})
    assert cid.startswith("rqvae-")
    path = store.checkpoint_path(cid)
    assert path == store_dir / "checkpoints" / cid
    assert (path / "model.safetensors").read_bytes() == b"\x00\x01weights"
    assert (path / "sub" / "config.json").read_text() == '{"dim": 4}'
    assert src.is_dir()  # copied, not moved
    # Same content again: same id, no new row; other content: a new id.
    assert store.register_checkpoint("rqvae", src) == cid
    other = store.register_checkpoint("llm", _checkpoint(tmp_path / "c2", b"other"), move=True)
    assert not (tmp_path / "c2").exists()
    rows = store.checkpoints().to_pylist()
    assert [(r["checkpoint_id"], r["kind"], r["run_id"]) for r in rows] == [
        (cid, "rqvae", "train-1"),
        (other, "llm", "train-1"),
    ]
    assert json.loads(rows[0]["meta"]) == {"epochs": 3} and rows[0]["path"] == f"checkpoints/{cid}"
    assert store.checkpoints(kind="llm").column("checkpoint_id").to_pylist() == [other]
    assert not [p for p in (store_dir / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(KeyError, match="not registered"):
        store.checkpoint_path("rqvae-0000")
    with pytest.raises(ValueError, match="kind"):
        store.register_checkpoint("Bad Kind", src)
