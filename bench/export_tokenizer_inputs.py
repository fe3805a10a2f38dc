"""Export the tokenizer benchmark inputs: embeddings.npy, edges.npz, tool_ids.txt.

`bench/tokenize.py` reads these files, so the benchmark runs on a machine that has only
a torch stack. Two sources:

* raw (default): the ≈47k catalog straight from ../shared/data — every API of the
  ToolEnv2404 archive plus the StableToolBench test-query `api_list` docs whose key is
  not in the archive; co-usage groups from ToolLens train qrels (corpus texts name
  `tool_name`/`api_name`, mapped to "<tool_name>&&<api_name>") and the StableToolBench
  `relevant APIs` of every query.
* `--store DIR`: the `tools` table, the stored embeddings and the `cousage` table of an
  artifact store (see `toolweaver export-tokenizer-inputs`).

Raw mode embeds with toolweaver.codes.embed (same template and model key as the
pipeline), in chunks cached under OUT/.parts so an interrupted run resumes.

    .venv/bin/python bench/export_tokenizer_inputs.py --out /tmp/tw_export
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python bench/<script>.py` puts bench/ first on sys.path, where bench/tokenize.py
# would shadow the standard library's `tokenize` (imported by logging via linecache).
# Drop it before anything else is imported, and put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import csv
import json
import logging
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from toolweaver.codes.cousage import cousage_edges, edges_to_indices, groups_from_pairs
from toolweaver.codes.embed import (
    EmbedConfig,
    embed_texts,
    load_embedder,
    model_key,
    render_doc,
    text_hash,
)

logger = logging.getLogger("export_tokenizer_inputs")

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOOLENV_ARCHIVE = "toolbench/toolenv2404/toolenv2404_filtered.tar.gz"
STB_QUERIES = "toolbench/stabletoolbench/solvable_queries/test_instruction"
CHUNK = 2048


def tool_id(tool_name: str, api_name: str) -> str:
    return f"{tool_name}&&{api_name}"


def toolenv_records(archive: Path) -> Iterator[dict[str, Any]]:
    """Every API entry of the ToolEnv2404 archive, in sorted member order."""
    # One sequential pass (a gzip stream cannot seek back cheaply), then sorted order.
    files: dict[str, bytes] = {}
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                handle = tar.extractfile(member)
                if handle is None:
                    raise OSError(f"cannot read {member.name} from {archive}")
                files[member.name] = handle.read()
    for name in sorted(files):
        tool = json.loads(files[name])
        category = Path(name).parent.name
        for api in tool.get("api_list", []) or []:
            yield {
                "tool_name": tool["tool_name"],
                "api_name": api["name"],
                "category": category,
                "description": api.get("description") or tool.get("tool_description") or "",
                "parameters": {
                    "required": api.get("required_parameters") or [],
                    "optional": api.get("optional_parameters") or [],
                },
            }


def stb_query_files(data: Path) -> list[Path]:
    return sorted((data / STB_QUERIES).glob("G*.json"))


def stb_records(data: Path) -> Iterator[dict[str, Any]]:
    for path in stb_query_files(data):
        for query in json.loads(path.read_text()):
            for api in query["api_list"]:
                yield {
                    "tool_name": api["tool_name"],
                    "api_name": api["api_name"],
                    "category": api.get("category_name", ""),
                    "description": api.get("api_description") or "",
                    "parameters": {
                        "required": api.get("required_parameters") or [],
                        "optional": api.get("optional_parameters") or [],
                    },
                }


def toollens_records(data: Path) -> Iterator[dict[str, Any]]:
    """ToolLens corpus docs ("category_name:…, tool_name:…, api_name:…, api_description:…,
    required_params: […], optional_params: […], return_schema: …")."""
    with open(data / "toollens" / "corpus.jsonl") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            yield {
                "tool_name": _between(text, "tool_name:", ", api_name:"),
                "api_name": _between(text, "api_name:", ", api_description:"),
                "category": _between(text, "category_name:", ", tool_name:"),
                "description": _between(text, "api_description:", ", required_params:"),
                "parameters": {
                    "required": json.loads(_between(text, "required_params: ", ", optional_params:")),
                    "optional": json.loads(_between(text, "optional_params: ", ", return_schema:")),
                },
            }


def raw_catalog(data: Path) -> dict[str, dict[str, Any]]:
    """tool_id -> record; first doc wins: ToolEnv2404, then StableToolBench, then ToolLens.

    ToolLens docs only fill keys absent from both (≈100 APIs that the 2404 re-crawl dropped),
    so that ToolLens co-usage is not cut at the catalog edge.
    """
    catalog: dict[str, dict[str, Any]] = {}
    counts = []
    for records in (toolenv_records(data / TOOLENV_ARCHIVE), stb_records(data), toollens_records(data)):
        before = len(catalog)
        for rec in records:
            catalog.setdefault(tool_id(rec["tool_name"], rec["api_name"]), rec)
        counts.append(len(catalog) - before)
    logger.info("catalog: %d from ToolEnv2404 + %d from StableToolBench + %d from ToolLens", *counts)
    return catalog


def _between(text: str, start: str, end: str) -> str:
    i = text.index(start) + len(start)
    return text[i : text.index(end, i)]


def toollens_pairs(data: Path) -> list[tuple[str, str]]:
    """(group id, tool_id) pairs from ToolLens train qrels."""
    corpus: dict[str, str] = {}
    with open(data / "toollens" / "corpus.jsonl") as fh:
        for line in fh:
            doc = json.loads(line)
            text = doc["text"]
            corpus[doc["_id"]] = tool_id(
                _between(text, "tool_name:", ", api_name:"), _between(text, "api_name:", ", api_description:")
            )
    pairs = []
    with open(data / "toollens" / "qrels" / "train.tsv") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if int(row["score"]) > 0:
                pairs.append((f"toollens/{row['query-id']}", corpus[row["corpus-id"]]))
    return pairs


def stb_pairs(data: Path) -> list[tuple[str, str]]:
    pairs = []
    for path in stb_query_files(data):
        for query in json.loads(path.read_text()):
            for tool_name, api_name in query["relevant APIs"]:
                pairs.append((f"stabletoolbench/{path.stem}/{query['query_id']}", tool_id(tool_name, api_name)))
    return pairs


def embed_chunked(texts: list[str], cfg: EmbedConfig, parts: Path) -> np.ndarray:
    """Embed longest-first in cached chunks (resumable); returns rows in input order."""
    parts.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths batch well
    model = load_embedder(cfg)
    out: np.ndarray | None = None
    t0 = time.perf_counter()
    for start in range(0, len(order), CHUNK):
        idx = order[start : start + CHUNK]
        key = text_hash(model_key(cfg) + "\n" + "\n".join(text_hash(texts[i]) for i in idx))[:16]
        part = parts / f"{start:06d}_{key}.npy"
        if part.is_file():
            vecs = np.load(part)
        else:
            vecs = embed_texts(model, [texts[i] for i in idx], cfg)
            np.save(part.with_suffix(".tmp.npy"), vecs)
            part.with_suffix(".tmp.npy").rename(part)  # atomic: a killed run leaves no half chunk
        if out is None:
            out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        out[idx] = vecs
        done = min(start + CHUNK, len(order))
        logger.info("embedded %d/%d docs (%.0f s)", done, len(order), time.perf_counter() - t0)
    if out is None:
        raise ValueError("nothing to embed")
    return out


def export_raw(data: Path, out: Path, cfg: EmbedConfig) -> None:
    catalog = raw_catalog(data)
    ids = sorted(catalog)
    texts = [render_doc(catalog[t], cfg.template) for t in ids]
    index = {t: i for i, t in enumerate(ids)}
    pairs = toollens_pairs(data) + stb_pairs(data)
    missing = {t for _, t in pairs if t not in index}
    logger.info("co-usage: %d (group, tool) pairs; %d distinct qrel tools not in catalog", len(pairs), len(missing))
    src, dst, weight = edges_to_indices(cousage_edges(groups_from_pairs(pairs)), index)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "edges.npz", src=src, dst=dst, weight=weight)
    (out / "tool_ids.txt").write_text("".join(_one_line(t) + "\n" for t in ids))
    t0 = time.perf_counter()
    vectors = embed_chunked(texts, cfg, out / ".parts")
    np.save(out / "embeddings.npy", vectors)
    meta = {
        "source": "raw",
        "data": str(data),
        "model_key": model_key(cfg),
        "tools": len(ids),
        "dim": int(vectors.shape[1]),
        "edges": len(src),
        "embed_s": round(time.perf_counter() - t0, 1),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    logger.info("wrote %s: %s", out, meta)


def _one_line(tid: str) -> str:
    if tid.splitlines() != [tid]:  # readers use str.splitlines, which also splits on \x1c, \u2028, ...
        raise ValueError(f"tool id {tid!r} contains a line break; tool_ids.txt cannot hold it")
    return tid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tw_export"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--store", type=Path, default=None, help="export from an artifact store instead")
    parser.add_argument("--model", default=EmbedConfig().model)
    parser.add_argument("--batch-size", type=int, default=EmbedConfig().batch_size)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    cfg = EmbedConfig(model=args.model, batch_size=args.batch_size, device=args.device, show_progress=False)
    if args.store is not None:
        from tasks.stages.tokenize import export_tokenizer_inputs

        export_tokenizer_inputs(args.store, args.out, cfg)
    else:
        export_raw(args.data, args.out, cfg)


if __name__ == "__main__":
    main()
