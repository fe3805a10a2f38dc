"""Latency and memory of constrained top-k decoding: codes vs atomic vs unconstrained.

    .venv/bin/python bench/decode.py                       # tiny in-code Llama, CPU-quick
    .venv/bin/python bench/decode.py --model smollm2 --tools 46984 --device cuda --json out.json

Four timed variants, all with the same beams (default 5) and the same prompts:

- ``codes``: trie-constrained top-k over N tools with L-level codes (L×K new tokens);
- ``codes-unconstrained``: plain beam search (``model.generate``) of the same L tokens;
- ``atomic``: trie-constrained top-k over N tools with one new token each (ToolGen);
- ``atomic-unconstrained``: plain beam search of 1 token on the atomic model.

The goal (issue 5): constrained ≤ 1.3× unconstrained generation of the same length.
The models are untrained (random code rows): latency does not depend on what was learned.
Peak memory is CUDA's max allocated per variant; on CPU it is the process's peak RSS
(monotonic, so only the first variant's figure is its own).
"""

from __future__ import annotations

import os
import sys

# Running `python bench/decode.py` puts bench/ first on sys.path, where a sibling script
# named like a stdlib module (bench/tokenize.py) would shadow it: drop that entry.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import logging
from pathlib import Path

import torch

from toolweaver.align.datasets import retrieval_prompt
from toolweaver.align.decode import DecodeConfig, prompt_ids, retrieve, trie_for_codes
from toolweaver.align.models import load_model_and_tokenizer
from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
from toolweaver.align.vocab import VocabConfig, add_code_tokens, code_token
from toolweaver.device import resolve_device
from toolweaver.eval.costs import LatencyReport, measure_latency

logger = logging.getLogger("bench.decode")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="'tiny' (2-layer Llama built in code), 'smollm2', or a model path")
    p.add_argument("--tools", type=int, default=2000, help="number of tools N")
    p.add_argument("--levels", type=int, default=3, help="code levels L")
    p.add_argument("--codebook", type=int, default=64, help="codebook size K (needs K**L >= N)")
    p.add_argument("--queries", type=int, default=12, help="timed prompts (plus 2 warm-up)")
    p.add_argument("--beams", type=int, default=5)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


def random_codes(n: int, levels: int, size: int, seed: int) -> list[tuple[int, ...]]:
    """N distinct L-level codes drawn without replacement from the K**L code space."""
    space = size**levels
    if space < n:
        raise SystemExit(f"K**L = {space} < N = {n}: raise --codebook or --levels")
    generator = torch.Generator().manual_seed(seed)
    flat = torch.randperm(space, generator=generator)[:n].tolist()
    return [tuple((f // size ** (levels - 1 - lv)) % size for lv in range(levels)) for f in flat]


def code_string(levels: tuple[int, ...]) -> str:
    return "".join(code_token(lv, i) for lv, i in enumerate(levels))


def load(model_name: str, queries: list[str], device: torch.device):
    if model_name == "tiny":
        tokenizer = tiny_tokenizer(queries)
        return tiny_llama(len(tokenizer), hidden_size=64).to(device), tokenizer
    return load_model_and_tokenizer(model_name, device=device)


def variant_pair(
    name: str, model, tokenizer, codes: dict[str, str], length: int, prompts, args, device
) -> list[LatencyReport]:
    """(constrained, unconstrained of the same length) latency for one vocabulary."""
    trie = trie_for_codes(tokenizer, codes)
    config = DecodeConfig(top_k=args.top_k, num_beams=args.beams)
    constrained = measure_latency(name, lambda q: retrieve(model, tokenizer, q, trie, config), prompts, device)

    def generate(q: str) -> torch.Tensor:
        ids = torch.tensor([prompt_ids(tokenizer, retrieval_prompt(q))], device=device)
        return model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            num_beams=args.beams,
            num_return_sequences=args.top_k,
            max_new_tokens=length,
            min_new_tokens=length,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )

    with torch.no_grad():
        plain = measure_latency(f"{name}-unconstrained", generate, prompts, device)
    return [constrained, plain]


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    device = resolve_device(args.device)
    prompts = [f"find an api to get the weather forecast for city number {i}" for i in range(args.queries + 2)]
    tool_ids = [f"tool{i}&&api" for i in range(args.tools)]

    model, tokenizer = load(args.model, prompts, device)
    added = add_code_tokens(
        tokenizer, model, n_levels=args.levels, codebook_size=args.codebook, config=VocabConfig(seed=args.seed)
    )
    codes = dict(
        zip(tool_ids, map(code_string, random_codes(args.tools, args.levels, args.codebook, args.seed)), strict=True)
    )
    reports = variant_pair("codes", model.eval(), tokenizer, codes, args.levels, prompts, args, device)
    rows = [{**r.as_dict(), "tokens_added": added.n_added} for r in reports]
    del model

    model, tokenizer = load(args.model, prompts, device)
    added = add_code_tokens(tokenizer, model, n_levels=1, codebook_size=args.tools, config=VocabConfig(seed=args.seed))
    atomic = {t: code_token(0, i) for i, t in enumerate(tool_ids)}
    reports = variant_pair("atomic", model.eval(), tokenizer, atomic, 1, prompts, args, device)
    rows += [{**r.as_dict(), "tokens_added": added.n_added} for r in reports]

    for pair in (rows[:2], rows[2:]):
        pair[0]["ratio_to_unconstrained"] = pair[0]["mean_ms"] / pair[1]["mean_ms"]
    header = f"{'variant':<22} {'tokens+':>8} {'mean ms':>9} {'p95 ms':>9} {'peak MiB':>9} {'x unconstr.':>11}"
    print(
        f"model={args.model} device={device} N={args.tools} L={args.levels} K={args.codebook} "
        f"beams={args.beams} top-k={args.top_k}"
    )
    print(header)
    for r in rows:
        ratio = f"{r['ratio_to_unconstrained']:.2f}" if "ratio_to_unconstrained" in r else ""
        print(
            f"{r['name']:<22} {r['tokens_added']:>8} {r['mean_ms']:>9.1f} {r['p95_ms']:>9.1f} "
            f"{r['peak_memory_bytes'] / 2**20:>9.0f} {ratio:>11}  ({r['memory_kind']})"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
