"""Benchmark: ingest the full ToolEnv2404 archive into a fresh temporary store.

    .venv/bin/python bench/ingest.py [--archive PATH] [--json OUT.json] [--tracemalloc]

Prints wall time per phase (parse + merge + write, then a no-op re-ingest) and peak
memory: the process's peak resident set size (getrusage) and, with --tracemalloc,
the peak of Python allocations (tracing slows the run down, so it is opt-in).
Goal: <= 60 s on a 2-core machine.
"""

from __future__ import annotations

import os
import sys

# `python bench/ingest.py` puts bench/ first on sys.path, where bench/tokenize.py would
# shadow the stdlib `tokenize` that `logging` imports (via linecache).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import json
import logging
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "toolbench" / "toolenv2404" / "toolenv2404_filtered.tar.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--tracemalloc", action="store_true", help="measure the Python allocation peak (slower)")
    args = parser.parse_args()
    if not args.archive.is_file():
        print(f"error: archive {args.archive} not found (see README: Data)", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.path.insert(0, str(ROOT))
    from storage import Store
    from tasks.stages.ingest import ingest

    if args.tracemalloc:
        tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="toolweaver-bench-") as tmp:
        store = Store(tmp)
        start = time.perf_counter()
        summary = ingest(store, "toolbench", args.archive)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        again = ingest(store, "toolbench", args.archive)
        second_s = time.perf_counter() - start
        unchanged = all(again["refs"][t].version == summary["refs"][t].version for t in summary["refs"])
    figures = {
        "archive": str(args.archive),
        "archive_bytes": args.archive.stat().st_size,
        "tool_files": summary["stats"].get("tool_files", 0),
        "api_entries": summary["stats"].get("api_entries", 0),
        "tools_rows": summary["tables"]["tools"],
        "variants_rows": summary["tables"]["tool_doc_variants"],
        "ingest_wall_s": round(first_s, 2),
        "reingest_wall_s": round(second_s, 2),
        "reingest_wrote_nothing": unchanged,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tracemalloc_peak_mib": round(tracemalloc.get_traced_memory()[1] / 2**20, 1) if args.tracemalloc else None,
    }
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key.ljust(width)}  {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
