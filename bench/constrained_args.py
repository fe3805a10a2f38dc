"""Overhead of schema-constrained argument generation (xgrammar) over unconstrained
generation of the same tokens.

    .venv/bin/python bench/constrained_args.py                        # tiny in-code Llama, seconds
    .venv/bin/python bench/constrained_args.py --model smollm2 --questions 20 --json out.json

For each held-out BFCL `simple_python` question the model writes the arguments of the
question's function, in context (its document in the system prompt), under that
function's JSON Schema (`toolweaver.agent.arguments.ArgumentGenerator`: per token,
xgrammar fills a vocabulary bitmask and the masked logits are chosen from). Then the
same token sequence is generated again without the grammar (same forward passes, same
choice step, no mask), so both timings cover exactly the same tokens. Grammar
compilation (once per tool schema, cached) is reported on its own. The goal (issue 13):
constrained <= 1.5x unconstrained.
"""

from __future__ import annotations

import os
import sys

# `python bench/x.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow
# the stdlib module: drop that entry.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from toolweaver.agent.arguments import ArgumentGenerator, cache_of
from toolweaver.agent.incontext import SYSTEM, docs_text
from toolweaver.agent.schema import to_json_schema
from toolweaver.align.decode import prompt_ids
from toolweaver.align.models import embedding_rows, load_model_and_tokenizer
from toolweaver.align.splits import bfcl_half
from toolweaver.device import resolve_device
from toolweaver.eval.calls import load_category
from toolweaver.ingest.bfcl import default_data_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="'tiny' (2-layer Llama built in code), 'smollm2', or a path")
    p.add_argument("--questions", type=int, default=10, help="held-out simple_python questions (plus 1 warm-up)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--max-tokens", type=int, default=128, help="argument token budget (the ratio is per token)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    return p.parse_args(argv)


def load(name: str, device: torch.device):
    if name == "tiny":
        from toolweaver.align.tiny import tiny_llama

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.agent.helpers import char_tokenizer

        tokenizer = char_tokenizer(["the a of"])
        return tiny_llama(len(tokenizer), hidden_size=64).to(device), tokenizer
    return load_model_and_tokenizer(name, device=device)


@torch.no_grad()
def replay_unconstrained(model: torch.nn.Module, prompt: list[int], tokens: list[int], vocab: int) -> float:
    """Seconds to generate `tokens` without a grammar: the same forward passes and the same
    choice step (argmax over the logits) as the constrained loop, minus the mask."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1)
    key, cache = cache_of(out)
    for index, token in enumerate(tokens):
        logits = out.logits[:, -1, :vocab].float().cpu()
        int(logits[0].argmax())  # the choice step; the recorded token is fed, as generated before
        if index == len(tokens) - 1:
            break
        out = model(input_ids=torch.tensor([[token]], device=device), use_cache=True, **{key: cache})
        cache = cache_of(out)[1]
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, tokenizer = load(args.model, device)
    model.eval()
    vocab = embedding_rows(model)
    generator = ArgumentGenerator(tokenizer, vocab, max_tokens=args.max_tokens)
    questions = [q for q in load_category(default_data_dir(), "simple_python") if bfcl_half(q["id"]) == "heldout"]
    rows = []
    for question in questions[: args.questions + 1]:
        print(f"{question['id']} …", file=sys.stderr, flush=True)
        function = question["function"][0]
        schema = to_json_schema(function.get("parameters"))
        system = SYSTEM.format(docs=docs_text([function])) + " Give the arguments of the call as one JSON object."
        text = " ".join(m["content"] for m in question["question"][0] if m["role"] == "user")
        prompt = prompt_ids(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": text}])
        start = time.perf_counter()
        generator.matcher(schema)  # compile once (cached per schema)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        out = generator.generate(model, prompt, schema)
        constrained_s = time.perf_counter() - start
        free_s = replay_unconstrained(model, prompt, list(out.token_ids), generator.info.vocab_size)
        rows.append(
            {
                "id": question["id"],
                "tokens": len(out.token_ids),
                "complete": out.complete,
                "compile_s": compile_s,
                "constrained_s": constrained_s,
                "unconstrained_s": free_s,
                "text": out.text,
            }
        )
    timed = rows[1:]  # the first question warms up
    summary = {
        "model": args.model,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "questions": len(timed),
        "tokens_mean": statistics.mean(r["tokens"] for r in timed),
        "complete_rate": sum(r["complete"] for r in timed) / len(timed),
        "compile_ms_mean": 1000 * statistics.mean(r["compile_s"] for r in timed),
        "constrained_ms_per_token": 1000 * sum(r["constrained_s"] for r in timed) / sum(r["tokens"] for r in timed),
        "unconstrained_ms_per_token": 1000 * sum(r["unconstrained_s"] for r in timed) / sum(r["tokens"] for r in timed),
    }
    summary["ratio"] = summary["constrained_ms_per_token"] / summary["unconstrained_ms_per_token"]
    print(json.dumps(summary, indent=1))
    print("example:", timed[0]["text"][:200], file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
