"""Issue 17 item 5: `toolweaver ingest` sometimes aborted at exit (code 134, `terminate
called without an active exception`) after printing its summary.

Cause: Delta tables were read through deltalake's default Python `PyFileSystem` handler
with pre-buffering, so Arrow's native I/O threads called back into Python; a call still
in flight while the interpreter finalized ended its thread inside a C++ frame, and the
C++ runtime aborted. The store now reads through pyarrow's native file system. The
default test checks that no store read path uses a Python file system (it failed on
f40a212); the slow one runs the benchmark's 300 sequential CLI ingests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from storage import Store, connect
from storage.delta import ordered_dataset
from tests.faults import sources
from tests.storage._helpers import qrels


def test_store_reads_never_call_back_into_python(store_dir: Path) -> None:
    store = Store(store_dir)
    store.write("qrels", qrels(["a", "b"]))
    store.write("qrels", qrels(["c"]), mode="append")
    dataset = ordered_dataset(store.table_path("qrels"))
    assert not isinstance(dataset.filesystem, pafs.PyFileSystem)
    assert all(not isinstance(f.filesystem, pafs.PyFileSystem) for f in dataset.get_fragments())
    assert dataset.to_table().column("query_id").to_pylist() == ["a", "b", "c"]
    con = connect(store_dir)
    assert con.sql("SELECT count(*) FROM qrels").fetchall() == [(3,)]


@pytest.mark.slow
def test_three_hundred_sequential_cli_ingests_all_exit_zero(tmp_path: Path) -> None:
    out = tmp_path / "exit_codes.json"
    done = subprocess.run(
        [sys.executable, "bench/exit_codes.py", "--runs", "300", "--json", str(out)],
        cwd=sources.ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=5400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
