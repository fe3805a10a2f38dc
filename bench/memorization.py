"""Memorization exact match of LLM checkpoints in a store (what ToolGen reports as
"tool memorization"): for every memorization example in `sft_examples`, top-1
constrained decoding of its prompt (the tool's documentation) over every tool the
checkpoint knows; a hit when the decoded tool is the example's tool.

    .venv/bin/python bench/memorization.py --store S llm-abc... llm-def... --json mem.json

Each checkpoint decodes with exactly its own codes (its meta's `codes_version`), so a
model trained before a retokenisation (e.g. `tokenize --retrain --lambda 0`) is measured
against the same tools; the example's tool comes from the store's current codes, which
are the ones `sft_examples` was built from. Prints a table; `--json` also writes the rows.
"""

from __future__ import annotations

import os
import sys

# Running `python bench/memorization.py` puts bench/ first on sys.path, where a sibling
# script named like a stdlib module (bench/tokenize.py) would shadow it: drop that entry.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import random
import time
from pathlib import Path

import torch

from storage import Store
from tasks.stages.evaluate import checkpoint_codes, codes_of_version
from toolweaver.align.decode import DecodeConfig, constrained_beam_search, prompt_ids, trie_for_codes
from toolweaver.align.models import load_checkpoint, read_checkpoint_meta
from toolweaver.device import resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, required=True, help="artifact store with sft_examples and the checkpoints")
    p.add_argument("checkpoints", nargs="+", help="LLM checkpoint ids (memorization-stage ones measure memorization)")
    p.add_argument("--limit", type=int, default=-1, help="check a seeded sample of this many tools (-1: all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


def memorization_prompts(store: Store, limit: int) -> list[tuple[str, list[dict]]]:
    """(tool_id, prompt messages) of every memorization example, tools named through the
    store's current codes (those `sft_examples` was built from; atomic rows are derived from
    the same rows, so one list serves both vocabularies)."""
    if store.latest("codes") is None:
        raise FileNotFoundError(f"store {store.root} has no codes; run the codes stage first")
    # The codes table holds one codes version at a time (see tasks.stages.evaluate.codes_of_version).
    (current_version,) = set(store.read("codes", columns=["codes_version"]).column("codes_version").to_pylist())
    current, _ = codes_of_version(store, current_version)
    tool_of_code = {code: tool for tool, code in current.items()}
    rows = [r for r in store.read("sft_examples").to_pylist() if r["stage"] == "memorization"]
    if not rows:
        raise ValueError(
            f"store {store.root} has no memorization examples; run `toolweaver datasets --stage memorization`"
        )
    pairs = []
    for row in rows:
        conversation = json.loads(row["conversations"])
        answer = conversation[-1]["content"]
        if answer not in tool_of_code:
            raise ValueError(
                f"sft_examples {row['example_id']}: answer {answer!r} is not a current code; rebuild the datasets"
            )
        pairs.append((tool_of_code[answer], conversation[:-1]))
    pairs.sort(key=lambda pair: pair[0])
    return random.Random(1).sample(pairs, min(limit, len(pairs))) if limit >= 0 else pairs


def exact_match(store: Store, checkpoint: str, prompts: list[tuple[str, list[dict]]], device: torch.device) -> dict:
    """One checkpoint's top-1 constrained decodes of every prompt -> the report row."""
    start = time.perf_counter()
    folder = store.checkpoint_path(checkpoint)
    meta = read_checkpoint_meta(folder)
    codes = checkpoint_codes(store, meta)
    model, tokenizer = load_checkpoint(folder, device=device)
    model.eval()
    trie = trie_for_codes(tokenizer, codes.codes)
    hits = 0
    for tool_id, messages in prompts:
        (best, _), *_ = constrained_beam_search(model, prompt_ids(tokenizer, messages), trie, DecodeConfig(top_k=1))
        hits += trie.tool_ids[best] == tool_id
    return {
        "checkpoint": checkpoint,
        "tokens": codes.tokens,
        "vocab_init": meta.get("vocab_init"),
        "stage": meta.get("stage"),
        "step": meta.get("step"),
        "tools": len(prompts),
        "hits": hits,
        "exact_match": hits / len(prompts),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    store = Store(args.store)
    device = resolve_device(args.device)
    prompts = memorization_prompts(store, args.limit)
    rows = [exact_match(store, ckpt, prompts, device) for ckpt in args.checkpoints]
    print("| checkpoint | tokens | init | stage | step | exact match | s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['checkpoint']} | {r['tokens']} | {r['vocab_init']} | {r['stage']} | {r['step']} "
            f"| {r['exact_match']:.1%} ({r['hits']} / {r['tools']}) | {r['seconds']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
