"""bench/tokenize.py end to end at toy scale, in a fresh interpreter, and the promise that
neither it nor `toolweaver.codes` pulls in storage, prefect, deltalake or
sentence-transformers (so it runs on a machine with only the compute stack)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ["storage", "tasks", "flows", "prefect", "deltalake", "duckdb", "sentence_transformers"]

SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("bench_tokenize", {bench!r})
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
code = bench.main({argv!r})
loaded = [m for m in {forbidden!r} if m in sys.modules]
assert not loaded, f"bench imported {{loaded}}"
sys.exit(code)
"""


def test_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        "--synthetic",
        "300",
        "--codebook-size",
        "32",
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--batch-size",
        "64",
        "--seeds",
        "0",
        "--lambdas",
        "0,1",
        "--device",
        "cpu",
        "--json",
        str(out),
    ]
    script = SCRIPT.format(bench=str(ROOT / "bench" / "tokenize.py"), argv=argv, forbidden=FORBIDDEN)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "| seed | lambda |" in done.stdout and "alignment_cousage" in done.stdout
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 2
    for run in result["runs"]:
        assert run["unique"] is True
        assert 0.0 <= run["collision_rate_before"] <= 1.0
        assert [m["phase"] for m in run["epochs"]] == ["warmup", "rq", "rq", "refit"]
    assert set(result["aggregate"]["checks"]) == {"1.0"}


def test_codes_package_imports_only_the_compute_stack() -> None:
    script = (
        "import sys, toolweaver.codes\n"
        f"loaded = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
