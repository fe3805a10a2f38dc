"""Concurrent writer processes and a writer killed mid-write (SIGKILL)."""

from __future__ import annotations

import multiprocessing
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from storage import Store

from ._helpers import append_worker, overwrite_worker, qrels


def _run_workers(target, args_per_worker: list[tuple]) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork: deltalake has live Rust threads
    start, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, errors)) for args in args_per_worker]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    reported = [errors.get_nowait() for _ in range(errors.qsize())] if not errors.empty() else []
    assert not reported, reported
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _assert_consistent(store: Store, table: str) -> None:
    """Versions 0..n, each with one lineage row; the rows of the latest equal its record."""
    versions = sorted(v.version for v in store.history(table))
    assert versions == list(range(len(versions)))
    lineage = [r for r in store.read("lineage").to_pylist() if r["table"] == table]
    assert sorted(r["version"] for r in lineage) == versions
    latest = store.latest(table)
    assert latest is not None and store.read(table).num_rows == latest.rows


def test_concurrent_appends_lose_nothing(store_dir: Path) -> None:
    writes, rows = 6, 25
    _run_workers(append_worker, [(str(store_dir), w, writes, rows) for w in (1, 2)])
    store = Store(store_dir)
    _assert_consistent(store, "qrels")
    data = store.read("qrels")
    ids = data.column("query_id").to_pylist()
    assert len(ids) == len(set(ids)) == 2 * writes * rows
    assert DeltaTable(str(store.table_path("qrels"))).version() == 2 * writes - 1
    by_version = {v.version: v.lineage for v in store.history("qrels")}
    assert [by_version[v].rows for v in sorted(by_version)] == [rows * (v + 1) for v in range(2 * writes)]
    assert {r.run_id for r in by_version.values()} == {"w1", "w2"}
    for w in (1, 2):  # each writer's batches stay in its order
        mine = [i for i in ids if i.startswith(f"p{w}-")]
        assert mine == [f"p{w}-w{j}-r{k}" for j in range(writes) for k in range(rows)]


def test_concurrent_overwrites_leave_one_whole_version(store_dir: Path) -> None:
    _run_workers(overwrite_worker, [(str(store_dir), w, 4) for w in (1, 2)])
    store = Store(store_dir)
    _assert_consistent(store, "qrels")
    ids = store.read("qrels").column("query_id").to_pylist()
    prefixes = {i.rsplit("-r", 1)[0] for i in ids}
    assert len(prefixes) == 1  # all rows from one single write
    worker = int(ids[0][1])
    assert len(ids) == 20 + worker


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pyarrow as pa
    import storage.commit as st
    from storage import SCHEMAS, Store

    root, marker, rows, delay_s = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    real_write = st.write_deltalake

    def slow_write(path, data, **kw):
        # Feed the Delta writer a stream that trickles in: it is mid-write when killed.
        def batches():
            for i, batch in enumerate(data.to_batches(max_chunksize=2_000)):
                yield batch
                if i == 1:
                    marker.write_text("writing")
                time.sleep(delay_s)
        return real_write(path, pa.RecordBatchReader.from_batches(data.schema, batches()), **kw)

    if delay_s > 0:
        st.write_deltalake = slow_write
    ids = [f"big{i}" for i in range(rows)]
    table = pa.table({"query_id": ids, "tool_id": ids, "relevance": pa.array([1] * rows, pa.int32()),
                      "source": ["big"] * rows}, schema=SCHEMAS["qrels"])
    marker.with_suffix(".ready").write_text("ready")
    Store(root, run_id="doomed").write("qrels", table)
    marker.with_suffix(".done").write_text("done")
    """
)


def _start_writer(root: Path, tmp_path: Path, rows: int, delay_s: float) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / f"marker-{random.random()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(root), str(marker), str(rows), str(delay_s)],
        stderr=subprocess.PIPE,
    )
    return proc, marker


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early: {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"writer never reached {path.name}"
        time.sleep(0.02)


def test_sigkill_mid_write_leaves_previous_version(store_dir: Path, tmp_path: Path) -> None:
    store = Store(store_dir, run_id="before")
    before = store.write("qrels", qrels(["a", "b", "c"]))
    proc, marker = _start_writer(store_dir, tmp_path, rows=40_000, delay_s=0.05)
    _wait_for(marker, proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert not marker.with_suffix(".done").exists()
    fresh = Store(store_dir)
    assert fresh.latest("qrels") == before
    assert DeltaTable(str(fresh.table_path("qrels"))).version() == 0
    assert fresh.read("qrels").column("query_id").to_pylist() == ["a", "b", "c"]
    assert [v.version for v in fresh.history("qrels")] == [0]
    # The dead writer's lock is gone with it: the next write goes through at once.
    after = fresh.write("qrels", qrels(["d"]), mode="append")
    assert (after.version, after.rows) == (1, 4)
    _assert_consistent(fresh, "qrels")


@pytest.mark.slow
def test_sigkill_at_random_moments_never_shows_a_partial_version(store_dir: Path, tmp_path: Path) -> None:
    """Kill a full-speed writer of 2M rows at random times: each outcome is all or nothing."""
    rng = random.Random(7)
    store = Store(store_dir)
    store.write("qrels", qrels(["seed"]))
    for _ in range(6):
        prev = store.latest("qrels")
        proc, marker = _start_writer(store_dir, tmp_path, rows=2_000_000, delay_s=0.0)
        _wait_for(marker.with_suffix(".ready"), proc)
        time.sleep(rng.uniform(0.0, 2.0))  # the write itself takes ~1.5 s here
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        now = Store(store_dir).latest("qrels")
        assert now is not None
        assert now.version in (prev.version, prev.version + 1)
        expected_rows = prev.rows if now.version == prev.version else 2_000_000
        assert now.rows == expected_rows
        assert Store(store_dir).read("qrels", columns=["query_id"]).num_rows == expected_rows
        if now.version != prev.version:  # reset to a small table for the next round
            store.write("qrels", qrels([f"seed{now.version}"]))
