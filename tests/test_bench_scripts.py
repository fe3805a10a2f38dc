"""Every benchmark script starts as `python bench/<name>.py` (sys.path[0] = bench/).

bench/tokenize.py is named like the stdlib module that `logging` imports, so a script
that does not drop bench/ from sys.path first dies on import; `--help` catches that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_starts(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
