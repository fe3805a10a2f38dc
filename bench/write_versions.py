"""Benchmark: does write time grow with the number of table versions?

    .venv/bin/python bench/write_versions.py [--versions 300] [--tools 200] [--json OUT.json]

Runs N ingests of a small BEIR folder (cut from ToolLens, see bench/beir_small.py) into
one store in this process, one doc edited before each, so every ingest writes new
versions of `tools`, `tool_doc_variants`... and the `lineage` table grows by one row
per written version. Reports per ingest the wall time and the time spent inside
`Store.write`, then the means of the first and last 10 ingests and their ratio (issue
17 reported 1.25 s at the first version and about 2.6 s at the 230th).

`--store-only` times bare `Store.write` calls instead (a 2-row `qrels` overwrite per
version, no parsing): the store's own cost per write as history grows.
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
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.beir_small import edit_one_doc, make_folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=300)
    parser.add_argument("--tools", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--store-only", action="store_true", help="time bare Store.write calls")
    args = parser.parse_args()
    if args.store_only:
        return store_only(args.versions, args.json)
    from storage import Store
    from tasks.stages.ingest import ingest

    spent = [0.0]
    real_write = Store.write

    def timed_write(self: Store, *a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_write(self, *a, **k)
        finally:
            spent[0] += time.perf_counter() - start

    Store.write = timed_write  # type: ignore[method-assign]
    walls, writes = [], []
    with tempfile.TemporaryDirectory(prefix="write-versions-") as tmp:
        folder = make_folder(Path(tmp) / "beir", args.tools)
        store = Store(Path(tmp) / "store")
        for n in range(args.versions):
            edit_one_doc(folder, n)
            spent[0] = 0.0
            start = time.perf_counter()
            ingest(store, "beir", folder)
            walls.append(time.perf_counter() - start)
            writes.append(spent[0])
            if (n + 1) % 25 == 0:
                print(f"{n + 1} versions: ingest {walls[-1]:.2f} s, writes {writes[-1]:.2f} s", flush=True)
        tools_version = store.latest("tools").version  # type: ignore[union-attr]
    figures = {
        "versions": args.versions,
        "tools_table_version": tools_version,
        "ingest_s_first10": round(statistics.mean(walls[:10]), 3),
        "ingest_s_last10": round(statistics.mean(walls[-10:]), 3),
        "write_s_first10": round(statistics.mean(writes[:10]), 3),
        "write_s_last10": round(statistics.mean(writes[-10:]), 3),
        "write_ratio_last_first": round(statistics.mean(writes[-10:]) / statistics.mean(writes[:10]), 2),
        "write_s_per_ingest": [round(w, 3) for w in writes],
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "write_s_per_ingest"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def store_only(versions: int, out: Path | None) -> int:
    import pyarrow as pa

    from storage import SCHEMAS, Store

    walls = []
    with tempfile.TemporaryDirectory(prefix="write-versions-") as tmp:
        store = Store(Path(tmp) / "store")
        for n in range(versions):
            rows = pa.table(
                {
                    "query_id": [f"q{n}", "x"],
                    "tool_id": ["t", "t"],
                    "relevance": pa.array([1, 1], pa.int32()),
                    "source": ["s", "s"],
                },
                schema=SCHEMAS["qrels"],
            )
            start = time.perf_counter()
            store.write("qrels", rows)
            walls.append(time.perf_counter() - start)
    figures = {
        "versions": versions,
        "write_s_first10": round(statistics.mean(walls[:10]), 4),
        "write_s_last10": round(statistics.mean(walls[-10:]), 4),
        "write_s_by_50": [round(statistics.mean(walls[i : i + 50]), 4) for i in range(0, versions, 50)],
    }
    print(json.dumps(figures, indent=2))
    if out:
        out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
