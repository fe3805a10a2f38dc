"""Benchmark: N sequential `toolweaver ingest --source beir` runs on one store; exit codes.

    .venv/bin/python bench/exit_codes.py [--runs 300] [--tools 200] [--json OUT.json]

Issue 17 reported 3 of 220 runs ending with exit code 134 (`terminate called without an
active exception`) after the summary printed. Each run here is a fresh CLI process
(`python -m flows.cli ingest`) on one store, with one doc edited between runs (so each
ingest writes new versions). Prints the exit-code histogram, the stderr tail of every
failed run, and wall time per run (first 10 vs last 10 runs).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the repository root: `bench.beir_small`

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.beir_small import edit_one_doc, make_folder

ROOT = Path(__file__).resolve().parents[1]


def run_once(folder: Path, store: Path) -> tuple[int, float, str]:
    """(exit code, wall seconds, stderr tail) of one CLI ingest."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "ingest", "--source", "beir", "--path", str(folder), "--store", str(store)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return done.returncode, time.perf_counter() - start, done.stderr[-1500:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--tools", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exit-codes-") as tmp:
        folder = make_folder(Path(tmp) / "beir", args.tools)
        store = Path(tmp) / "store"
        codes: Counter[int] = Counter()
        walls: list[float] = []
        failures: list[dict] = []
        for n in range(args.runs):
            edit_one_doc(folder, n)
            code, wall, stderr = run_once(folder, store)
            codes[code] += 1
            walls.append(wall)
            if code != 0:
                failures.append({"run": n, "code": code, "stderr": stderr})
                print(f"run {n}: exit {code}\n{stderr}", file=sys.stderr)
            if (n + 1) % 25 == 0:
                print(f"{n + 1} runs: {dict(codes)}", flush=True)
    figures = {
        "runs": args.runs,
        "tools": args.tools,
        "exit_codes": {str(k): v for k, v in sorted(codes.items())},
        "non_zero": sum(v for k, v in codes.items() if k != 0),
        "wall_s_first10_mean": round(statistics.mean(walls[:10]), 3),
        "wall_s_last10_mean": round(statistics.mean(walls[-10:]), 3),
        "failures": failures,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "failures"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if figures["non_zero"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
