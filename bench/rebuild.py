"""Benchmark: rebuild after adding 1% new tools vs the full build (ingest + embed + tokenize).

    .venv/bin/python bench/rebuild.py [--tools N] [--new-fraction 0.01] [--json OUT.json]

1. From the ToolEnv2404 archive pick a deterministic sample of tool files (hashed order,
   so every category is represented): the *new* files (≈ new-fraction of the tools)
   and the *base* files (≈ N tools; --tools 0 = every other file of the archive).
2. Full build, timed per phase, into a fresh store: ingest the base folder, embed every
   doc, tokenize (co-usage, RQ-VAE training, unique codes).
3. Copy the new files into the watched folder and rebuild, timed the same way: ingest
   the whole folder again (what a rebuild over a changed source does), embed only docs
   without a vector, place only the new tools with the trained tokenizer.

Prints a table (phase, full s, rebuild s), the ratio rebuild/full (goal <= 5%), and
checks that the rebuild embedded only the new docs and changed no existing code.

The full 47k build embeds for ≈ 10 min on an idle 2-core CPU. To measure the rebuild at that
scale without paying it again: run once with --keep-store DIR (saves the base store, its
catalog folder and the full-build figures), then any number of times with
--base-store DIR: the full figures come from that earlier measurement
(DIR/full_build.json) and only the rebuild runs, on a copy of the base store.
"""

from __future__ import annotations

import os
import sys

# `python bench/rebuild.py` puts bench/ first on sys.path, where bench/tokenize.py would
# shadow the stdlib `tokenize` that `logging` imports (via linecache).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "toolbench" / "toolenv2404" / "toolenv2404_filtered.tar.gz"
PHASES = ("ingest", "embed", "tokenize")
FULL_BUILD_JSON = "full_build.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="ToolEnv2404 .tar.gz (or its folder)")
    p.add_argument("--tools", type=int, default=0, help="base catalog size in APIs (0 = the whole archive)")
    p.add_argument("--new-fraction", type=float, default=0.01, help="new tools, as a fraction of the base catalog")
    p.add_argument("--seed", type=int, default=0, help="seed of the file order (which files are base / new)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="embedder and RQ-VAE device")
    p.add_argument(
        "--keep-store", type=Path, help="save the base store + catalog + full figures here (for --base-store)"
    )
    p.add_argument(
        "--base-store", type=Path, help="reuse a --keep-store folder: full figures measured then, rebuild run now"
    )
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if not 0 < args.new_fraction < 1:
        p.error("--new-fraction must be in (0, 1)")
    if args.keep_store and args.base_store:
        p.error("--keep-store and --base-store exclude each other")
    return args


# --------------------------------------------------------------------------- catalog sample


def _order_key(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def sample_files(
    archive: Path, tools: int, new_fraction: float, seed: int
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(base, new) tool files {member path: bytes}, by API count, in a seeded hash order."""
    from toolweaver.ingest.files import iter_files

    files: list[tuple[str, str, bytes, int]] = []
    for name, data in iter_files(archive):
        try:
            apis = len(json.loads(data).get("api_list") or [])
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            continue  # not a tool file (the parser would quarantine it)
        if apis:
            files.append((_order_key(seed, name), name, data, apis))
    files.sort()
    total = sum(f[3] for f in files)
    base_target = tools or int(total / (1 + new_fraction))
    new_target = max(1, round(base_target * new_fraction))
    new, base = {}, {}
    n_new = n_base = 0
    for _, name, data, apis in files:
        if n_new < new_target:
            new[name], n_new = data, n_new + apis
        elif not tools or n_base < base_target:  # --tools 0: every file not picked as new
            base[name], n_base = data, n_base + apis
    if tools and n_base < base_target:
        raise SystemExit(f"error: the archive has {total} APIs, fewer than --tools {tools} plus {new_target} new")
    return base, new


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


# --------------------------------------------------------------------------- build phases


def timed_build(store: Any, catalog: Path, device: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Ingest + embed + tokenize `catalog` into `store`: (seconds per phase, facts)."""
    from tasks.stages.codes import TokenizeConfig
    from tasks.stages.embed import embed_tools
    from tasks.stages.ingest import ingest
    from tasks.stages.tokenize import tokenize
    from toolweaver.codes.embed import EmbedConfig

    cfg = TokenizeConfig(embed=EmbedConfig(device=device, show_progress=False), rqvae={"device": device})
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    summary = ingest(store, "toolbench", catalog)
    seconds["ingest"] = time.perf_counter() - start
    start = time.perf_counter()
    _, n_embedded = embed_tools(store, cfg.embed)
    seconds["embed"] = time.perf_counter() - start
    start = time.perf_counter()
    result = tokenize(store, cfg)  # its own embed step finds nothing left to embed
    seconds["tokenize"] = time.perf_counter() - start
    facts = {
        "tools": summary["tables"]["tools"],
        "embedded": n_embedded + result.n_embedded,
        "codes_mode": result.mode,
        "new_codes": result.n_new_codes,
    }
    return seconds, facts


def read_codes(store: Any) -> dict[str, str]:
    table = store.read("codes", columns=["tool_id", "code"])
    return dict(zip(table.column("tool_id").to_pylist(), table.column("code").to_pylist(), strict=True))


def full_build(args: argparse.Namespace, work: Path) -> tuple[Path, Path, dict[str, Any], dict[str, bytes]]:
    """(store folder, catalog folder, full-build figures, new files): measured now or reused."""
    from storage import Store

    if args.base_store is not None:
        recorded = json.loads((args.base_store / FULL_BUILD_JSON).read_text())
        shutil.copytree(args.base_store / "store", work / "store")
        shutil.copytree(args.base_store / "catalog", work / "catalog")
        new = {name: bytes.fromhex(data) for name, data in recorded.pop("new_files").items()}
        return work / "store", work / "catalog", {**recorded, "source": f"measured earlier ({args.base_store})"}, new
    base, new = sample_files(args.archive, args.tools, args.new_fraction, args.seed)
    catalog = work / "catalog"
    write_files(catalog, base)
    seconds, facts = timed_build(Store(work / "store"), catalog, args.device)
    figures = {
        "seconds": seconds,
        "facts": facts,
        "base_files": len(base),
        "new_file_count": len(new),
        "source": "measured now",
    }
    if args.keep_store is not None:
        args.keep_store.mkdir(parents=True, exist_ok=True)
        shutil.copytree(work / "store", args.keep_store / "store", dirs_exist_ok=True)
        shutil.copytree(catalog, args.keep_store / "catalog", dirs_exist_ok=True)
        kept = {**figures, "new_files": {name: data.hex() for name, data in new.items()}}
        (args.keep_store / FULL_BUILD_JSON).write_text(json.dumps(kept) + "\n")
    return work / "store", catalog, figures, new


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.base_store is None and not args.archive.exists():
        print(f"error: archive {args.archive} not found (see README: Data)", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.path.insert(0, str(ROOT))
    from storage import Store

    with tempfile.TemporaryDirectory(prefix="toolweaver-bench-rebuild-") as tmp:
        store_dir, catalog, full, new = full_build(args, Path(tmp))
        store = Store(store_dir)
        codes_before = read_codes(store)
        write_files(catalog, new)
        rebuild_s, rebuild_facts = timed_build(store, catalog, args.device)
        codes_after = read_codes(store)
    changed = sum(codes_after.get(t) != c for t, c in codes_before.items())
    full_total = sum(full["seconds"][p] for p in PHASES)
    rebuild_total = sum(rebuild_s[p] for p in PHASES)
    figures = {
        "archive": str(args.archive),
        "full_build": full,
        "rebuild": {"seconds": rebuild_s, "facts": rebuild_facts},
        "new_tools": rebuild_facts["tools"] - full["facts"]["tools"],
        "old_codes_changed": changed,
        "full_s": round(full_total, 2),
        "rebuild_s": round(rebuild_total, 2),
        "rebuild_over_full": round(rebuild_total / full_total, 4),
        "goal": "rebuild_over_full <= 0.05",
    }
    print_table(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def print_table(figures: dict[str, Any]) -> None:
    full, rebuild = figures["full_build"]["seconds"], figures["rebuild"]["seconds"]
    ff, rf = figures["full_build"]["facts"], figures["rebuild"]["facts"]
    print(
        f"base catalog {ff['tools']} tools, +{figures['new_tools']} new; full build {figures['full_build']['source']}"
    )
    print(f"{'phase':<10} {'full_s':>10} {'rebuild_s':>10} {'ratio':>8}")
    for phase in PHASES:
        print(f"{phase:<10} {full[phase]:>10.1f} {rebuild[phase]:>10.1f} {rebuild[phase] / full[phase]:>8.1%}")
    print(
        f"{'total':<10} {figures['full_s']:>10.1f} {figures['rebuild_s']:>10.1f} "
        f"{figures['rebuild_over_full']:>8.1%}  (goal <= 5%)"
    )
    print(
        f"embedded: full {ff['embedded']}, rebuild {rf['embedded']}; codes: rebuild {rf['codes_mode']} "
        f"+{rf['new_codes']}, old codes changed {figures['old_codes_changed']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
