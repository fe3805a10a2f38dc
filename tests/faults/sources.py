"""Small real sources and helpers shared by the fault-injection suite (tests/faults).

Sources are cut from /work/shared/data so that one round takes seconds: a 120-doc
ToolLens folder (BEIR), one StableToolBench group (G3_instruction, 61 queries, with the
official test_query_ids folder), a ToolGen-format sample naming ToolLens tools, the
installed BFCL data and (slow tests) a seeded 2,000-API ToolEnv2404 subset.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from bench.beir_small import make_folder
from storage import Store

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
DATA_TABLES = ("tools", "tool_doc_variants", "queries", "qrels", "trajectories", "quarantine")
# Columns that differ between two equal runs (when / who), never compared.
VOLATILE = {"run_id", "written_at", "created_at", "evaluated_at"}


def beir_source(dest: Path, tools: int = 120) -> Path:
    return make_folder(dest / "beir", tools)


def stabletoolbench_source(dest: Path, group: str = "G3_instruction") -> Path:
    solvable = SHARED / "toolbench" / "stabletoolbench" / "solvable_queries"
    out = dest / "stb" / "solvable_queries"
    (out / "test_instruction").mkdir(parents=True)
    shutil.copy(solvable / "test_instruction" / f"{group}.json", out / "test_instruction")
    shutil.copytree(solvable / "test_query_ids", out / "test_query_ids")
    return out


def toolgen_source(dest: Path, n: int = 40, seed: int = 0) -> Path:
    """ToolGen-format conversations whose assistant turns name ToolLens tools."""
    rng = random.Random(seed)
    corpus = (SHARED / "toollens" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:120]
    names = []
    for line in corpus:
        text = json.loads(line)["text"]
        tool = text.split("tool_name:", 1)[1].split(", api_name:", 1)[0]
        api = text.split("api_name:", 1)[1].split(", api_description:", 1)[0]
        names.append((tool, api))
    examples = []
    for i in range(n):
        tool, api = rng.choice(names)
        examples.append(
            {
                "conversations": [
                    {"role": "user", "content": f"please help with request {i}"},
                    {"role": "assistant", "content": f"<<{tool}&&{api}>>"},
                ]
            }
        )
    out = dest / "toolgen"
    out.mkdir(parents=True)
    (out / "toolgen_sample.json").write_text(json.dumps(examples), encoding="utf-8")
    return out


def toolbench_subset(dest: Path, apis: int = 2000, seed: int = 0) -> Path:
    """Seeded random ToolEnv2404 tool files holding about `apis` APIs in all."""
    from toolweaver.ingest.files import iter_files

    archive = SHARED / "toolbench" / "toolenv2404" / "toolenv2404_filtered.tar.gz"
    files = []
    for name, data in iter_files(archive):
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("api_list"), list) and doc["api_list"]:
            files.append((name, data, len(doc["api_list"])))
    random.Random(seed).shuffle(files)
    out, total = dest / "toolbench", 0
    for name, data, count in files:
        if total >= apis:
            break
        target = out / Path(name).parent.name / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        total += count
    return out


def cli(store: Path, *args: str) -> list[str]:
    """The argv of one `toolweaver` CLI command on `store` (run with this checkout's code)."""
    return [sys.executable, "-m", "flows.cli", *args, "--store", str(store)]


def ingest_argv(store: Path, source: str, path: Path | None) -> list[str]:
    return cli(store, "ingest", "--source", source, *(["--path", str(path)] if path else []))


def run(argv: Sequence[str], timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, f"{argv[3:5]} exited {done.returncode}: {done.stderr[-3000:]}"
    return done


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def data_tables(store_root: Path, tables: Sequence[str] = DATA_TABLES) -> dict[str, list[dict]]:
    """Rows of each table (volatile columns dropped), sorted: what two equal runs share."""
    store = Store(store_root)
    out = {}
    for table in tables:
        if not store.exists(table):
            out[table] = []
            continue
        data: pa.Table = store.read(table)
        keep = [c for c in data.column_names if c not in VOLATILE]
        rows = data.select(keep).to_pylist()
        out[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out


def leftovers(store_root: Path) -> list[str]:
    """Temporary files/folders a writer would leave behind (must be none after a run)."""
    return sorted(
        str(p.relative_to(store_root))
        for p in store_root.rglob("*")
        if p.name.startswith(".tmp-") or p.name.endswith(".tmp")
    )


def ingest_hash(source: str) -> str:
    """The config hash the ingest stage stamps on its writes of `source`."""
    from tasks.digests import sha256_json

    return sha256_json({"stage": "ingest", "source": source})


def commit_order(store_root: Path, sources: Sequence[str]) -> list[str]:
    """The order in which the ingests of `sources` committed (from `queries` lineage).

    Ingest results may depend on what was in the store before (a qrel naming a tool no
    source has yet is quarantined), so a concurrent round equals the serial run in the
    order its ingests committed."""
    by_hash = {ingest_hash(s): s for s in sources}
    versions = sorted(Store(store_root).history("queries"), key=lambda v: v.version)
    order = [by_hash[v.lineage.config_hash] for v in versions if v.lineage and v.lineage.config_hash in by_hash]
    return list(dict.fromkeys(order))
