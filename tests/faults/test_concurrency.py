"""Concurrency rounds: several CLI ingests (and, slow, tokenize runs) on one store at
once, with SQL readers running throughout. Each round's data tables equal those of the
same commands run one after another (in the order they committed), and the readers
never see a partial version or an error."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

import pytest

from storage import Store, run_sql
from tests.faults import sources

SOURCES = ("beir", "stabletoolbench", "toolbench", "toolgen")


class Readers:
    """Threads that read every data table at its latest version and query it with SQL."""

    def __init__(self, root: Path, n: int = 2) -> None:
        self.root, self.stop, self.errors, self.reads = root, threading.Event(), [], 0
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(n)]

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self._read_once()
            except Exception as err:  # noqa: BLE001 - every reader error fails the round
                self.errors.append(repr(err))
            time.sleep(0.05)

    def _read_once(self) -> None:
        store = Store(self.root)
        for table in ("tools", "queries", "qrels", "quarantine"):
            ref = store.latest(table)
            if ref is None:
                continue
            rows = store.read(table, version=ref.version).num_rows
            if rows != ref.rows:  # a version is whole or invisible
                self.errors.append(f"{table} v{ref.version}: read {rows} rows, lineage says {ref.rows}")
            self.reads += 1
        if store.exists("tools"):
            run_sql(self.root, "SELECT count(*) AS n FROM tools")


def concurrent_round(store: Path, paths: dict[str, Path], seed: int, extra: list[list[str]] = ()) -> list[str]:
    """Start every ingest (plus `extra` commands) at a random offset; return the commit order."""
    rng = random.Random(seed)
    argvs = [sources.ingest_argv(store, s, paths[s]) for s in SOURCES] + list(extra)
    rng.shuffle(argvs)
    procs = []
    for argv in argvs:
        time.sleep(rng.uniform(0, 0.4))
        procs.append(
            subprocess.Popen(argv, cwd=sources.ROOT, env=sources.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err.decode()[-3000:]
    return sources.commit_order(store, SOURCES)


def run_rounds(tmp_path: Path, small_sources: dict[str, Path], serial_reference, rounds: int) -> None:
    for seed in range(rounds):
        store = tmp_path / f"round-{seed}"
        with Readers(store) as readers:
            order = concurrent_round(store, small_sources, seed)
        assert readers.errors == [], readers.errors[:5]
        assert sorted(order) == sorted(SOURCES)
        got = sources.data_tables(store)
        want = serial_reference(tuple(order))
        for table in sources.DATA_TABLES:
            assert got[table] == want[table], f"round {seed} (order {order}): table {table} differs from serial"
        assert sources.leftovers(store) == []


def test_one_concurrent_round_equals_the_serial_run(tmp_path: Path, small_sources, serial_reference) -> None:
    """Issue 17 item 1 (lost updates): ingests started together on one new store all land."""
    run_rounds(tmp_path, small_sources, serial_reference, rounds=1)


@pytest.mark.slow
def test_twenty_concurrent_rounds_equal_the_serial_run(tmp_path: Path, small_sources, serial_reference) -> None:
    run_rounds(tmp_path, small_sources, serial_reference, rounds=20)
