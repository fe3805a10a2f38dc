"""The 10k-tool catalog of the scale recipes: every StableToolBench tool (the 2,479 APIs of its
765 test queries) plus ToolEnv2404 APIs drawn with a fixed seed from those that are not
StableToolBench keys, up to `--size` tools. Writes the drawn ToolEnv2404 APIs as tool files
in the release layout (`<Category>/<tool>.json`, each `api_list` cut to the drawn APIs), which
`toolweaver ingest --source toolbench` reads, and the whole key list (`catalog.txt`).

    .venv/bin/python bench/catalog.py --out artifacts/catalog10k            # 2,479 + 7,521
    .venv/bin/python bench/catalog.py --out artifacts/catalog47k --size -1  # every tool

Re-running with the same settings finds `catalog.json` and does nothing (the recipes call it
on every start).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/catalog.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow
# the standard library's `tokenize`: drop it and put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import json
import random
from collections.abc import Iterable

DATA = _BENCH.parent.parent / "shared" / "data" / "toolbench"
SIZE, SEED = 10_000, 0


def draw_catalog(anchor_keys: Iterable[str], pool_keys: Iterable[str], size: int, seed: int) -> list[str]:
    """Sorted keys: every anchor key plus `size - len(anchors)` keys drawn with `seed` from the
    pool keys that are not anchors (size -1: all of them). The draw depends on the key sets,
    not on their order."""
    anchors = set(anchor_keys)
    pool = sorted(set(pool_keys) - anchors)
    wanted = len(pool) if size < 0 else size - len(anchors)
    if wanted < 0:
        raise ValueError(f"size={size} is smaller than the {len(anchors)} anchor tools it must hold")
    if wanted > len(pool):
        raise ValueError(f"size={size} needs {wanted} pool tools but only {len(pool)} are not anchors")
    return sorted(anchors | set(random.Random(seed).sample(pool, wanted)))


def tool_file_subset(data: dict, keep: set[str]) -> dict | None:
    """A ToolBench tool file with only the APIs whose `tool_name&&api_name` key is in `keep`
    (the tool name falls back to `name`, as the toolbench parser does); None when none is."""
    from toolweaver.ingest.names import tool_id

    tool_name = data.get("tool_name", data.get("name"))
    apis = [a for a in data.get("api_list") or [] if isinstance(a, dict) and tool_id(tool_name, a.get("name")) in keep]
    return {**data, "api_list": apis} if apis else None


def catalog_keys(toolenv: Path, stabletoolbench: Path) -> tuple[list[str], list[str]]:
    """(StableToolBench keys, ToolEnv2404 keys) as the ingest parsers key them."""
    from toolweaver.ingest import stabletoolbench as stb_parser
    from toolweaver.ingest import toolbench as toolbench_parser

    anchors = sorted({t.tool_id for t in stb_parser.parse(stabletoolbench).tools})
    pool = sorted({t.tool_id for t in toolbench_parser.parse(toolenv).tools})
    return anchors, pool


def write_subset(toolenv: Path, keys: set[str], out: Path) -> int:
    """Tool files holding the drawn ToolEnv2404 APIs under `out` -> API entries written."""
    from toolweaver.ingest.files import iter_files

    written = 0
    for name, raw in iter_files(toolenv):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # ingest quarantines these when it reads the full archive
        subset = tool_file_subset(data, keys) if isinstance(data, dict) else None
        if subset is None:
            continue
        target = out / Path(name).parent.name / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(subset))
        written += len(subset["api_list"])
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toolenv", type=Path, default=DATA / "toolenv2404" / "toolenv2404_filtered.tar.gz")
    p.add_argument("--stabletoolbench", type=Path, default=DATA / "stabletoolbench")
    p.add_argument("--size", type=int, default=SIZE, help="tools in the catalog (-1: every tool)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--out", type=Path, required=True, help="folder for catalog.json, catalog.txt and toolenv/")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    summary_path = args.out / "catalog.json"
    settings = {"size": args.size, "seed": args.seed, "toolenv": str(args.toolenv)}
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary["settings"] != settings:
            raise SystemExit(f"{args.out} holds a catalog drawn with {summary['settings']}; use another --out")
        print(json.dumps(summary))
        return summary
    anchors, pool = catalog_keys(args.toolenv, args.stabletoolbench)
    keys = draw_catalog(anchors, pool, args.size, args.seed)
    drawn = set(keys) - set(anchors)
    entries = write_subset(args.toolenv, drawn, args.out / "toolenv")
    (args.out / "catalog.txt").write_text("\n".join(keys) + "\n")
    summary = {
        "settings": settings,
        "tools": len(keys),
        "stabletoolbench": len(anchors),
        "toolenv_drawn": len(drawn),
        "toolenv_api_entries_written": entries,  # >= drawn: a few keys have several docs
    }
    summary_path.write_text(json.dumps(summary, indent=2))  # last: its presence means complete
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
