"""The parts of bench/gpu_check.sh (each run as its own process under its own time limit) and
the table that sums them up. Nothing is downloaded: the model is SmolLM2-135M-shaped with
random weights built in code, the codes and prompts are seeded synthetic ids.

    python bench/gpu_check.py finetune --scale full --device cuda --json out/finetune.json
    python bench/gpu_check.py decode   --scale full --device cuda --json out/decode.json
    python bench/gpu_check.py table --out out   # tokenize.json comes from bench/tokenize.py

`--scale tiny` is the CPU dry run (a 2-layer model, a few steps) that the test suite runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/gpu_check.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow
# the standard library's `tokenize`: drop it and put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import json
import random
import time

import torch

CATALOG_47K = 46_892
LEVELS, CODEBOOK = 3, 64  # 64**3 codes >= 47k tools
# SmolLM2-135M's shape (its config.json); `tiny` keeps the structure at toy size.
SHAPES = {
    "full": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
             "num_key_value_heads": 3, "vocab_size": 49152},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 512},
}  # fmt: skip
SIZES = {  # steps, batch, timed queries, tools in the decode trie
    "full": {"steps": 30, "batch": 32, "queries": 30, "tools": CATALOG_47K},
    "tiny": {"steps": 3, "batch": 4, "queries": 3, "tools": 300},
}
PROMPT_TOKENS = 56  # + LEVELS code tokens + EOS: the length of a memorization example (ToolLens: ~60)


def smollm2_shaped(scale: str, seed: int = 0) -> torch.nn.Module:
    """A Llama with SmolLM2-135M's shape (tied embeddings) and seeded random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[scale], tie_word_embeddings=True, max_position_embeddings=2048, rope_theta=100000.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def new_token_ids(model: torch.nn.Module) -> list[int]:
    """Grow the vocabulary by the L×K code tokens, as the finetune stage does; their ids."""
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(old + LEVELS * CODEBOOK, mean_resizing=False)
    return list(range(old, old + LEVELS * CODEBOOK))


def synthetic_examples(n: int, vocab: int, code_ids: list[int], seed: int):
    """Memorization-shaped examples: PROMPT_TOKENS prompt ids, then a code and EOS as labels."""
    from toolweaver.align.collate import IGNORE_INDEX, Encoded

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        prompt = [rng.randrange(4, vocab) for _ in range(PROMPT_TOKENS)]
        answer = [code_ids[level * CODEBOOK + rng.randrange(CODEBOOK)] for level in range(LEVELS)] + [2]
        examples.append(Encoded(tuple(prompt + answer), tuple([IGNORE_INDEX] * PROMPT_TOKENS + answer)))
    return examples


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_finetune(scale: str, device: torch.device) -> dict:
    """LoRA training steps (bf16 autocast on CUDA) of the project's train_step -> tokens/s."""
    from toolweaver.align.train import (
        TrainConfig,
        autocast_for,
        collate_left,
        make_optimizer,
        prepare_model,
        train_step,
    )

    size = SIZES[scale]
    model = smollm2_shaped(scale)
    ids = new_token_ids(model)
    config = TrainConfig(batch_size=size["batch"], device=str(device))
    model = prepare_model(model, ids, config).to(device)
    model.train()
    optimizer = make_optimizer(model, config)
    autocast = autocast_for(config, device)
    examples = synthetic_examples(size["batch"] * (size["steps"] + 1), SHAPES[scale]["vocab_size"], ids, seed=0)
    tokens, seconds = 0, 0.0
    for step in range(size["steps"] + 1):  # step 0 warms up (kernels, allocator)
        chunk = examples[step * size["batch"] : (step + 1) * size["batch"]]
        batch = {k: v.to(device) for k, v in collate_left(chunk, pad_id=0).items()}
        _sync(device)
        started = time.perf_counter()
        train_step(model, [batch], optimizer, lr=config.lr, max_grad_norm=1.0, autocast=autocast)
        _sync(device)
        if step:
            seconds += time.perf_counter() - started
            tokens += int(batch["attention_mask"].sum())
    return {
        "tokens_per_s": tokens / seconds,
        "step_s": seconds / size["steps"],
        "batch": size["batch"],
        "tokens_per_example": PROMPT_TOKENS + LEVELS + 1,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def part_decode(scale: str, device: torch.device) -> dict:
    """Trie-constrained top-5 beam search over a catalog of synthetic unique codes -> queries/s."""
    from toolweaver.align.decode import DecodeConfig, constrained_beam_search
    from toolweaver.align.trie import build_trie

    size = SIZES[scale]
    model = smollm2_shaped(scale)
    ids = new_token_ids(model)
    model.to(device).eval()
    rng = random.Random(0)
    codes = rng.sample(range(CODEBOOK**LEVELS), size["tools"])
    digits = [[(c // CODEBOOK ** (LEVELS - 1 - lv)) % CODEBOOK for lv in range(LEVELS)] for c in codes]
    sequences = {f"tool{i}": [ids[lv * CODEBOOK + d] for lv, d in enumerate(row)] for i, row in enumerate(digits)}
    trie = build_trie(sequences, eos_id=2).to(device)
    prompts = [
        [rng.randrange(4, SHAPES[scale]["vocab_size"]) for _ in range(PROMPT_TOKENS)]
        for _ in range(2 + size["queries"])
    ]
    config = DecodeConfig(top_k=5)
    seconds = 0.0
    for i, prompt in enumerate(prompts):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _sync(device)
            started = time.perf_counter()
            found = constrained_beam_search(model, prompt, trie, config)
            _sync(device)
        if len(found) != 5:
            raise AssertionError(f"decode returned {len(found)} tools, expected 5")
        if i >= 2:  # two warm-up prompts
            seconds += time.perf_counter() - started
    return {
        "queries_per_s": size["queries"] / seconds,
        "tools": size["tools"],
        "ms_per_query": 1000 * seconds / size["queries"],
    }


# --------------------------------------------------------------------------- table


def _load(out: Path, part: str) -> tuple[str, dict | None]:
    """(status, result) of one part: ok, or timeout / failed from its exit code file."""
    rc_file, result = out / f"{part}.rc", out / f"{part}.json"
    rc = int(rc_file.read_text()) if rc_file.is_file() else None
    if rc == 0 and result.is_file():
        return "ok", json.loads(result.read_text())
    return ("timeout" if rc in (124, 137) else f"failed (rc {rc})"), None


def projection(finetune: dict, tools: int, epochs: float) -> dict:
    """Memorization time of a catalog at the measured rate (a PROJECTION, not a measurement)."""
    epoch_s = tools * finetune["tokens_per_example"] / finetune["tokens_per_s"]
    return {"tools": tools, "epoch_s": epoch_s, "epochs": epochs, "total_s": epoch_s * epochs}


def table(out: Path, epochs: float) -> str:
    rows = ["| part | status | figure | detail |", "|---|---|---|---|"]
    status, ft = _load(out, "finetune")
    rows.append(
        f"| LoRA fine-tuning, SmolLM2-shaped (bf16 on CUDA) | {status} | "
        + (f"{ft['tokens_per_s']:.0f} tokens/s | batch {ft['batch']}, {ft['step_s']:.3f} s/step |" if ft else "- | - |")
    )
    status, dec = _load(out, "decode")
    figure = "- | - |"
    if dec:
        figure = f"{dec['queries_per_s']:.1f} queries/s | {dec['tools']} tools, {dec['ms_per_query']:.0f} ms/query |"
    rows.append(f"| constrained decoding, top-5 | {status} | {figure}")
    status, tok = _load(out, "tokenize")
    figure = "- | - |"
    if tok:
        runs = tok.get("runs") or [tok]
        figure = f"{runs[0].get('wall_s', float('nan')):.0f} s | synthetic {runs[0].get('n_tools', '?')} × 384 |"
    rows.append(f"| RQ-VAE + codes (bench/tokenize.py) | {status} | {figure}")
    if ft:
        p = projection(ft, CATALOG_47K, epochs)
        rows.append(
            f"| PROJECTION: 47k memorization | from the measured rate | {p['total_s'] / 60:.0f} min "
            f"| {p['epoch_s'] / 60:.1f} min/epoch × {epochs:g} epochs (assumed), "
            f"{ft['tokens_per_example']} tokens/tool |"
        )
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("finetune", "decode", "table"))
    p.add_argument("--scale", choices=tuple(SHAPES), default="full")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None, help="where a part writes its result")
    p.add_argument("--out", type=Path, default=None, help="table: the folder of the parts' results")
    p.add_argument("--epochs", type=float, default=4.0, help="table: memorization epochs assumed for the projection")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | str:
    args = parse_args(argv)
    if args.part == "table":
        if args.out is None:
            raise SystemExit("table needs --out")
        text = table(args.out, args.epochs)
        print(text)
        return text
    from toolweaver.device import resolve_device

    device = resolve_device(args.device)
    result = (part_finetune if args.part == "finetune" else part_decode)(args.scale, device)
    result |= {"device": str(device), "scale": args.scale}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(text)
    return result


if __name__ == "__main__":
    main()
