"""The write protocol: commits state the version they read; conflicts retry, never lose updates."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from storage import Store
from storage.commit import Append, Snapshot, WriteConflict
from storage.locks import file_lock

from ._helpers import merge_worker, qrels
from .test_concurrency import _run_workers


def test_a_commit_stating_an_old_version_conflicts(store_dir: Path) -> None:
    store = Store(store_dir)
    first = store.write("qrels", qrels(["a"]), read_version=None)
    assert first.version == 0
    with pytest.raises(WriteConflict, match=r"'qrels'.*no table.*version 0"):
        store.write("qrels", qrels(["b"]), read_version=None)
    second = store.write("qrels", qrels(["b"]), mode="append", read_version=0)
    assert second.version == 1
    with pytest.raises(WriteConflict, match="version 0 but the table is now at version 1"):
        store.write("qrels", qrels(["c"]), read_version=0)
    assert store.read("qrels").column("query_id").to_pylist() == ["a", "b"]


def test_update_recomputes_after_a_concurrent_append(store_dir: Path) -> None:
    """The lost update of issue 17: an overwrite computed from version 0 must not erase
    an append committed after it read (delta-rs alone lets it land)."""
    store = Store(store_dir)
    store.write("qrels", qrels(["a"]))
    calls: list[int | None] = []

    def add_x(snapshot: Snapshot) -> dict[str, pa.Table]:
        calls.append(snapshot.versions["qrels"])
        if len(calls) == 1:  # another writer commits between our read and our commit
            Store(store_dir).write("qrels", qrels(["other"]), mode="append")
        stored = snapshot.read("qrels")
        assert stored is not None
        return {"qrels": qrels(sorted([*stored.column("query_id").to_pylist(), "x"]))}

    refs = store.update(["qrels"], add_x)
    assert calls == [0, 1]
    assert refs["qrels"].version == 2
    assert sorted(store.read("qrels").column("query_id").to_pylist()) == ["a", "other", "x"]


def test_update_gives_up_after_bounded_attempts_with_a_clear_error(store_dir: Path) -> None:
    store = Store(store_dir)
    store.write("qrels", qrels(["a"]))

    def always_raced(snapshot: Snapshot) -> dict[str, Append]:
        Store(store_dir).write("qrels", qrels([f"r{snapshot.versions['qrels']}"]), mode="append")
        return {"qrels": Append(qrels(["mine"]))}

    with pytest.raises(WriteConflict, match="gave up after 3 attempts"):
        store.update(["qrels"], always_raced, attempts=3)
    assert "mine" not in store.read("qrels").column("query_id").to_pylist()
    with pytest.raises(ValueError, match="did not read"):
        store.update(["qrels"], lambda s: {"tools": qrels(["z"])})


def test_concurrent_read_modify_writes_lose_nothing(store_dir: Path) -> None:
    """Three processes each add 4 rows by read-modify-write overwrites: all 12 land."""
    workers, updates = 3, 4
    _run_workers(merge_worker, [(str(store_dir), w, updates) for w in range(workers)])
    ids = Store(store_dir).read("qrels").column("query_id").to_pylist()
    assert sorted(ids) == sorted(f"m{w}-{j}" for w in range(workers) for j in range(updates))


def test_locks_are_reentrant_per_thread_and_exclusive_across_threads(tmp_path: Path) -> None:
    lock = tmp_path / "t.lock"
    order: list[str] = []
    with file_lock(lock):
        with file_lock(lock):  # re-entry does not deadlock
            order.append("nested")

        def other() -> None:
            with file_lock(lock, timeout_s=10):
                order.append("other")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()  # excluded while this thread holds it
        order.append("release")
    thread.join(10)
    assert order == ["nested", "release", "other"]
