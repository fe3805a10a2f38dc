"""Crash trials: SIGKILL a writer at a random moment, re-run it plainly, and the store
ends exactly as after an uninterrupted run: same data tables, no temporary files, every
version with its lineage row, and (tokenize) every checkpoint folder with its row."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import Store
from tests.faults import sources

TOKENIZE_TABLES = ("embeddings", "cousage", "codes", "vocabulary")


def kill_at_random(argv: list[str], seed: int, max_s: float) -> bool:
    """Start `argv`, SIGKILL it after a random delay (up to `max_s`); True if it was killed."""
    proc = subprocess.Popen(
        argv, cwd=sources.ROOT, env=sources.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    delay = random.Random(seed).uniform(0.0, max_s)
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        return True
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    return False


def assert_store_whole(root: Path) -> None:
    """No leftovers; every store-written version has its lineage row; checkpoints match folders."""
    assert sources.leftovers(root) == []
    store = Store(root)
    lineage = {(r["table"], r["version"]) for r in store.read("lineage").to_pylist()}
    for ref in store.tables():
        if ref.table == "lineage":
            continue
        written = {(ref.table, v.version) for v in store.history(ref.table) if v.lineage is not None}
        assert written <= lineage, f"{ref.table}: versions without lineage rows {sorted(written - lineage)}"
    if store.exists("checkpoints"):
        rows = set(store.checkpoints().column("checkpoint_id").to_pylist())
        folders = {p.name for p in (root / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith(".")}
        assert folders == rows, f"folders without rows {folders - rows}, rows without folders {rows - folders}"


def ingest_trials(tmp_path: Path, small_sources: dict[str, Path], serial_reference, trials: int) -> int:
    want = serial_reference(("beir", "stabletoolbench"))
    killed = 0
    for seed in range(trials):
        root = tmp_path / f"trial-{seed}"
        sources.run(sources.ingest_argv(root, "beir", small_sources["beir"]))
        argv = sources.ingest_argv(root, "stabletoolbench", small_sources["stabletoolbench"])
        killed += kill_at_random(argv, seed, max_s=8.0)
        sources.run(argv)  # the plain re-run
        assert sources.data_tables(root) == want, f"trial {seed}: tables differ from the uninterrupted run"
        # A re-run writes lineage of the versions it wrote; repair restores any other gap.
        Store(root).sync_lineage()
        assert_store_whole(root)
    return killed


def test_sigkill_during_ingest_then_rerun_equals_uninterrupted(tmp_path: Path, small_sources, serial_reference) -> None:
    ingest_trials(tmp_path, small_sources, serial_reference, trials=1)


@pytest.mark.slow
def test_twenty_ingest_crash_trials(tmp_path: Path, small_sources, serial_reference) -> None:
    killed = ingest_trials(tmp_path, small_sources, serial_reference, trials=20)
    assert killed >= 10  # most trials really interrupt the writer


def _tokenize_argv(root: Path) -> list[str]:
    return [sys.executable, "-m", "tests.faults.worker", "tokenize", str(root)]


@pytest.mark.slow
def test_twenty_tokenize_crash_trials(tmp_path: Path, small_sources: dict[str, Path]) -> None:
    base = tmp_path / "base"
    sources.run(sources.ingest_argv(base, "beir", small_sources["beir"]))
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-a", str(base), str(reference)], check=True)
    start = time.monotonic()
    sources.run(_tokenize_argv(reference))
    duration = time.monotonic() - start
    want = sources.data_tables(reference, TOKENIZE_TABLES)
    for seed in range(20):
        root = tmp_path / f"trial-{seed}"
        subprocess.run(["cp", "-a", str(base), str(root)], check=True)
        kill_at_random(_tokenize_argv(root), seed, max_s=duration)
        sources.run(_tokenize_argv(root))
        assert sources.data_tables(root, TOKENIZE_TABLES) == want, f"trial {seed}"
        Store(root).sync_lineage()
        assert_store_whole(root)
