"""Small tables and worker functions shared by the storage tests.

Worker functions live here (a real module) so that multiprocessing's "spawn" start
method can import them in the child; fork is avoided because deltalake runs Rust
threads that a fork would copy mid-flight.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from storage import SCHEMAS, Store


def qrels(ids: list[str], source: str = "test") -> pa.Table:
    """A `qrels` table with one row per query id (tool `t-<id>`, relevance = position)."""
    return pa.table(
        {
            "query_id": ids,
            "tool_id": [f"t-{i}" for i in ids],
            "relevance": pa.array(range(len(ids)), pa.int32()),
            "source": [source] * len(ids),
        },
        schema=SCHEMAS["qrels"],
    )


def tools(n: int, start: int = 0, source: str = "test") -> pa.Table:
    """A `tools` table with `n` tools numbered from `start`."""
    rows = [
        {
            "tool_id": f"tool{i}&&api{i}",
            "tool_name": f"tool{i}",
            "api_name": f"api{i}",
            "category": "cat" if i % 2 else None,
            "description": f"does thing {i}",
            "parameters": "{}",
            "doc_text": f"tool{i} api{i} does thing {i}",
            "doc_hash": f"h{i}",
            "source": source,
            "origin": f"file{i}.json",
        }
        for i in range(start, start + n)
    ]
    return pa.Table.from_pylist(rows, schema=SCHEMAS["tools"])


def append_worker(root: str, worker: int, writes: int, rows_per_write: int, start, errors) -> None:
    """Append `writes` batches of distinct qrels rows (run id `w<worker>`), after `start` is set."""
    try:
        store = Store(root, run_id=f"w{worker}")
        start.wait(30)
        for j in range(writes):
            ids = [f"p{worker}-w{j}-r{k}" for k in range(rows_per_write)]
            store.write("qrels", qrels(ids, source=f"w{worker}"), mode="append")
    except BaseException as exc:  # reported to the parent, which fails the test
        errors.put(f"worker {worker}: {exc!r}")
        raise


def overwrite_worker(root: str, worker: int, writes: int, start, errors) -> None:
    """Overwrite `qrels` `writes` times with content unique to (worker, write)."""
    try:
        store = Store(root, run_id=f"o{worker}")
        start.wait(30)
        for j in range(writes):
            ids = [f"o{worker}-w{j}-r{k}" for k in range(20 + worker)]
            store.write("qrels", qrels(ids, source=f"o{worker}"))
    except BaseException as exc:
        errors.put(f"worker {worker}: {exc!r}")
        raise


def store_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def merge_worker(root: str, worker: int, updates: int, start, errors) -> None:
    """Read-modify-write `qrels` `updates` times, each adding one row to what it read."""
    from storage.commit import Snapshot

    try:
        store = Store(root, run_id=f"m{worker}")
        start.wait(30)
        for j in range(updates):

            def add_row(snapshot: Snapshot, j: int = j) -> dict[str, pa.Table]:
                stored = snapshot.read("qrels")
                ids = [] if stored is None else stored.column("query_id").to_pylist()
                return {"qrels": qrels(sorted([*ids, f"m{worker}-{j}"]))}

            store.update(["qrels"], add_row, attempts=50)
    except BaseException as exc:  # reported to the parent, which fails the test
        errors.put(f"worker {worker}: {exc!r}")
        raise
