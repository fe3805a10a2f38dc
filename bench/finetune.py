"""Fine-tuning benchmark on ToolLens: memorization of every tool until exact match reaches
`--target` (or the epoch cap), then retrieval, then validation NDCG@5 (standard convention)
against BM25 on the same held-out queries. The last line is a markdown row for
docs/results.md: time to target, steps, epochs, tokens per tool, exact match, NDCG@5.

Levers of time-to-memorise, measured (not assumed) one flag at a time:
`--vocab-init codebook --rqvae DIR` (code rows from the RQ-VAE codebooks), shorter prompts
(`--max-description-chars 0`: name and API only), `--lora-layers N` (adapters on the last
N layers), `--lora-r`, `--mem-lr` / `--mem-schedule` (short-run schedule).

    # CPU, short and bounded (what the shared 2-core machine allows):
    .venv/bin/python bench/finetune.py --mem-max-steps 10 --ret-max-steps 10 --val-queries 20 --mem-eval 40
    # the full CPU benchmark (up to ~90 minutes on 2 free cores):
    .venv/bin/python bench/finetune.py --codes codes.tsv --json bench_finetune.json
    # GPU, bf16, all ToolLens training queries:
    python bench/finetune.py --device cuda --train-queries -1 --batch-size 32 --codes codes.tsv

Inputs are plain files, so a GPU machine with only torch/transformers/peft/safetensors runs it
(no prefect, deltalake or duckdb is imported): the ToolLens BEIR folder (`corpus.jsonl`,
`queries.jsonl`, `qrels/train.tsv`) and a codes file (`tool_id<TAB>code`, tool_id either
`tool_name&&api_name` or the ToolLens corpus id). Without `--codes`, STAND-IN codes are used
(tools sorted by name, index written in base K; not RQ-VAE codes) and the output says so.

Examples use the project's builders (`toolweaver.align.datasets`): memorization = tool doc ->
its code; retrieval = query -> the codes of its relevant tools (sorted by tool id). The
held-out queries are the pipeline's (`toolweaver.align.splits`: the 1,675 ToolLens queries of
split `validation`, which `evaluate` and the recipes score); `--val-queries N` scores a
fixed sample of N of them (-1: all), the same for every `--seed`. They are never trained on.

Also times a plain transformers loop (`model(**batch).loss.backward(); optimizer.step()`,
right padding, full logits) on the same batches as ours, on copies of the same model.
"""

from __future__ import annotations

import os
import sys

# `python bench/finetune.py` puts bench/ first on sys.path, where bench/tokenize.py would
# shadow the standard library's `tokenize` (imported by logging); drop that entry.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import copy
import json
import logging
import math
import random
import re
import tempfile
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from toolweaver.align.collate import Encoded, collate, encode_all
from toolweaver.align.datasets import memorization_messages, retrieval_prompt
from toolweaver.align.decode import DecodeConfig, constrained_beam_search, prompt_ids, trie_for_codes
from toolweaver.align.memorize import exact_match, memorization_probe
from toolweaver.align.models import DEFAULT_MODEL, load_model_and_tokenizer
from toolweaver.align.train import (
    TrainConfig,
    autocast_for,
    collate_left,
    make_optimizer,
    prepare_model,
    step_batches,
    steps_per_epoch,
    train,
    train_step,
)
from toolweaver.align.vocab import VocabConfig, add_code_tokens, format_code, parse_code
from toolweaver.device import resolve_device
from toolweaver.eval.metrics import ndcg_at_k

logger = logging.getLogger("bench.finetune")
_FIELDS = re.compile(
    r"category_name:(?P<category>.*?), tool_name:(?P<tool>.*?), api_name:(?P<api>.*?), "
    r"api_description:(?P<desc>.*?), required_params:",
    re.DOTALL,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toollens", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "toollens")
    p.add_argument("--codes", type=Path, default=None, help="tool_id<TAB>code file; default: stand-in codes")
    p.add_argument("--standin-k", type=int, default=8, help="codebook size of the stand-in codes")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="auto")
    p.add_argument("--train-queries", type=int, default=2000, help="retrieval training queries (-1: all not held out)")
    p.add_argument("--val-queries", type=int, default=200, help="held-out queries scored (-1: all 1,675)")
    p.add_argument(
        "--mem-epochs",
        type=int,
        default=12,
        help="memorization epochs (12: >= 95%% exact match on ToolLens with SmolLM2)",
    )
    p.add_argument("--ret-epochs", type=int, default=1)
    p.add_argument("--mem-max-steps", type=int, default=None, help="bound the memorization stage (steps)")
    p.add_argument("--ret-max-steps", type=int, default=None, help="bound the retrieval stage (steps)")
    p.add_argument("--mem-eval", type=int, default=-1, help="tools checked for exact match (-1: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-layers", type=int, default=None, help="LoRA on the last N layers only (default: all)")
    p.add_argument("--mem-lr", type=float, default=None, help="memorization peak lr (default: --lr)")
    p.add_argument("--mem-schedule", choices=("constant", "linear", "cosine"), default="cosine")
    p.add_argument("--target", type=float, default=0.98, help="stop memorization at this exact match (0: never)")
    p.add_argument("--check-every", type=int, default=0, help="steps between exact-match checks (0: every epoch)")
    p.add_argument("--check-tools", type=int, default=200, help="tools in the seeded check sample")
    p.add_argument("--vocab-init", choices=("random", "mean", "codebook"), default="random")
    p.add_argument("--rqvae", type=Path, default=None, help="RQ-VAE checkpoint folder (for --vocab-init codebook)")
    p.add_argument("--label", default="", help="row label in the markdown table")
    p.add_argument("--max-description-chars", type=int, default=120)
    p.add_argument("--max-length", type=int, default=160)
    p.add_argument("--plain-steps", type=int, default=3, help="timed steps of ours vs the plain loop (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data


def read_toollens(folder: Path) -> tuple[dict[str, dict], dict[str, str], dict[str, dict[str, float]]]:
    """(tools by corpus id: tool_name/api_name/description/key, query texts, qrels)."""
    tools = {}
    for line in (folder / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        match = _FIELDS.match(row["text"])
        if match is None:
            raise ValueError(
                f"ToolLens corpus row {row['_id']} does not have the expected fields: {row['text'][:120]!r}"
            )
        tools[row["_id"]] = {
            "tool_name": match["tool"],
            "api_name": match["api"],
            "description": match["desc"],
            "key": f"{match['tool']}&&{match['api']}",
            "text": row["text"],
        }
    queries = {json.loads(x)["_id"]: json.loads(x)["text"] for x in (folder / "queries.jsonl").read_text().splitlines()}
    qrels: dict[str, dict[str, float]] = defaultdict(dict)
    for line in (folder / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, cid, score = line.split("\t")
        if float(score) > 0:
            qrels[qid][cid] = float(score)
    return tools, queries, dict(qrels)


def read_codes(path: Path, tools: dict[str, dict]) -> dict[str, str]:
    """{corpus id: code} from `tool_id<TAB>code` (tool_id = corpus id or tool_name&&api_name)."""
    by_key = {t["key"]: cid for cid, t in tools.items()}
    codes = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        tool_id, code = line.rstrip("\n").split("\t")
        cid = tool_id if tool_id in tools else by_key.get(tool_id)
        if cid is not None:
            parse_code(code)
            codes[cid] = code
    missing = sorted(set(tools) - set(codes))
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} ToolLens tools have no code (first: {[tools[m]['key'] for m in missing[:3]]})"
        )
    if len(set(codes.values())) != len(codes):
        raise ValueError(f"{path}: codes are not unique")
    return codes


def standin_codes(tools: dict[str, dict], k: int) -> dict[str, str]:
    """Deterministic STAND-IN codes: tools sorted by key, index i written in base k (APIs of one
    tool are neighbours, so they share prefixes). Not RQ-VAE codes."""
    order = sorted(tools, key=lambda cid: tools[cid]["key"])
    levels = max(1, math.ceil(math.log(len(order), k)))
    codes = {}
    for i, cid in enumerate(order):
        digits = [(i // k**p) % k for p in reversed(range(levels))]
        codes[cid] = format_code(digits)
    return codes


def split_queries(qrels: dict, n_val: int, n_train: int, seed: int) -> tuple[list[str], list[str]]:
    """(held-out ids scored, training ids): the pipeline's split of ToolLens (store query ids
    `beir/train/<id>`); a fixed sample of `n_val` held-out ids (-1: all), and `n_train` of the
    rest drawn with `seed` (-1: all)."""
    from toolweaver.align.splits import SplitConfig, assign_split

    split = SplitConfig()
    held = sorted(q for q in qrels if assign_split(f"beir/train/{q}", "train", split) != "train")
    rest = sorted(set(qrels) - set(held))
    val = held if n_val < 0 else sorted(random.Random(0).sample(held, min(n_val, len(held))))
    random.Random(seed).shuffle(rest)
    return val, rest if n_train < 0 else rest[:n_train]


def conversations(tools, queries, qrels, codes, train_ids, max_chars) -> tuple[list, list]:
    memorization = [
        memorization_messages(tools[cid], codes[cid], max_chars) for cid in sorted(tools, key=lambda c: tools[c]["key"])
    ]
    retrieval = []
    for qid in train_ids:
        ordered = sorted(qrels[qid], key=lambda cid: (-qrels[qid][cid], tools[cid]["key"]))
        answer = "".join(codes[cid] for cid in ordered)
        retrieval.append([*retrieval_prompt(queries[qid]), {"role": "assistant", "content": answer, "loss": True}])
    return memorization, retrieval


# --------------------------------------------------------------------------- timing


def compare_loops(model, tokenizer, examples: list[Encoded], config: TrainConfig, device, steps: int) -> dict:
    """tokens/s of our step vs a plain transformers loop on the same batches (copies of the model)."""
    lengths = [len(e) for e in examples]
    batches = [step_batches(lengths, config, s)[1] for s in range(1, steps + 2)]  # first one warms up
    pad = tokenizer.pad_token_id
    autocast = autocast_for(config, device)
    results = {}
    for name in ("plain", "ours"):
        clone = copy.deepcopy(model)
        clone.train()
        optimizer = make_optimizer(clone, config)
        tokens, seconds = 0, 0.0
        for i, micro in enumerate(batches):
            if name == "ours":
                data = [
                    {k: v.to(device) for k, v in collate_left([examples[j] for j in idx], pad_id=pad).items()}
                    for idx in micro
                ]
            else:
                data = [
                    {k: v.to(device) for k, v in collate([examples[j] for j in idx], pad_id=pad).items()}
                    for idx in micro
                ]
            _sync(device)
            started = time.perf_counter()
            if name == "ours":
                train_step(clone, data, optimizer, lr=config.lr, max_grad_norm=config.max_grad_norm, autocast=autocast)
            else:
                for batch in data:
                    with autocast:
                        loss = clone(**batch).loss / len(data)
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for p in clone.parameters() if p.requires_grad], config.max_grad_norm or float("inf")
                )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            _sync(device)
            if i:  # skip the warm-up step
                seconds += time.perf_counter() - started
                tokens += sum(int(b["attention_mask"].sum()) for b in data)
        results[f"{name}_tokens_per_s"] = tokens / seconds
        del clone, optimizer
    results["ratio_ours_over_plain"] = results["ours_tokens_per_s"] / results["plain_tokens_per_s"]
    return results


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- evaluation


def memorization_exact(model, tokenizer, tools, codes, trie, limit: int, max_chars: int) -> float:
    ids = sorted(tools, key=lambda c: tools[c]["key"])
    if limit >= 0:
        ids = random.Random(1).sample(ids, min(limit, len(ids)))
    hits = 0
    for cid in ids:
        prompt = prompt_ids(tokenizer, memorization_messages(tools[cid], codes[cid], max_chars)[:1])
        (best, _), *_ = constrained_beam_search(model, prompt, trie, DecodeConfig(top_k=1))
        hits += trie.tool_ids[best] == cid
    return hits / len(ids)


def llm_ndcg(model, tokenizer, queries, qrels, val_ids, trie) -> float:
    scores = []
    for qid in val_ids:
        prompt = prompt_ids(tokenizer, retrieval_prompt(queries[qid]))
        ranked = [trie.tool_ids[i] for i, _ in constrained_beam_search(model, prompt, trie, DecodeConfig(top_k=5))]
        scores.append(ndcg_at_k(ranked, qrels[qid], 5, "standard"))
    return sum(scores) / len(scores)


def bm25_ndcg(tools, queries, qrels, val_ids) -> float | str:
    try:
        from toolweaver.eval.bm25 import BM25Method
    except ImportError as error:  # a GPU machine with only the torch stack: say so in the report
        logger.warning("BM25 baseline skipped: %s", error)
        return f"skipped: {error}"

    method = BM25Method()
    method.fit([], {}, {cid: t["text"] for cid, t in tools.items()})
    rankings = method.rank([queries[q] for q in val_ids], list(tools), 5)
    return sum(
        ndcg_at_k([t for t, _ in r], qrels[q], 5, "standard") for q, r in zip(val_ids, rankings, strict=False)
    ) / len(val_ids)


# --------------------------------------------------------------------------- report

TABLE_HEADER = (
    "| run | tools | time to target (s) | steps | epochs | tokens/tool | exact match | NDCG@5 (std) | BM25 |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def table_row(report: dict, label: str) -> str:
    """One markdown row of the time-to-memorise table (docs/results.md)."""
    mem = report["memorization"]
    ndcg = report["val_ndcg@5_standard"]
    reached = f"{mem['time_to_target_s']:.0f}" if mem["time_to_target_s"] is not None else "not reached"
    bm25 = ndcg["bm25"] if isinstance(ndcg["bm25"], str) else f"{ndcg['bm25']:.3f}"
    return (
        f"| {label or '-'} | {report['tools']} | {reached} | {mem['steps']} | {mem['epochs']:.2f} "
        f"| {report['mem_tokens_per_example']:.1f} | {mem['exact_match']:.3f} | {ndcg['toolweaver']:.3f} | {bm25} |"
    )


def codebook_inputs(args: argparse.Namespace, tools: dict[str, dict], codes: dict[str, str]) -> dict:
    """`add_code_tokens` arguments of `--vocab-init codebook`: the RQ-VAE codebooks and the
    (code levels, tool name) pairs to fit the map on (as the finetune stage does)."""
    if args.vocab_init != "codebook":
        return {}
    if args.rqvae is None or args.codes is None:
        raise SystemExit("--vocab-init codebook needs --rqvae DIR and the --codes those codebooks placed")
    import numpy as np

    from toolweaver.codes import load_rqvae

    rqvae, _ = load_rqvae(args.rqvae)
    order = sorted(codes)
    return {
        "codebooks": list(rqvae.quantizer.codebooks.detach().cpu().numpy()),
        "fit_levels": np.asarray([parse_code(codes[c]) for c in order], dtype=np.int64),
        "fit_names": [f"{tools[c]['tool_name']} {tools[c]['api_name']}" for c in order],
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    started = time.perf_counter()
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    tools, queries, qrels = read_toollens(args.toollens)
    codes = read_codes(args.codes, tools) if args.codes else standin_codes(tools, args.standin_k)
    codes_label = (
        str(args.codes) if args.codes else f"STAND-IN (sorted-name index in base {args.standin_k}; not RQ-VAE codes)"
    )
    val_ids, train_ids = split_queries(qrels, args.val_queries, args.train_queries, args.seed)
    mem_convs, ret_convs = conversations(tools, queries, qrels, codes, train_ids, args.max_description_chars)

    model, tokenizer = load_model_and_tokenizer(args.model, device=device)
    levels = [parse_code(c) for c in codes.values()]
    old_size = model.get_input_embeddings().weight.shape[0]
    add_code_tokens(
        tokenizer,
        model,
        n_levels=len(levels[0]),
        codebook_size=1 + max(max(lv) for lv in levels),
        config=VocabConfig(init=args.vocab_init),
        **codebook_inputs(args, tools, codes),
    )
    new_ids = list(range(old_size, model.get_input_embeddings().weight.shape[0]))
    common = {
        "lr": args.lr,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "lora_r": args.lora_r,
        "lora_alpha": 2 * args.lora_r,
        "lora_layers": args.lora_layers,
        "max_length": args.max_length,
        "seed": args.seed,
        "device": str(device),
        "warmup_steps": 0,
        "schedule": "cosine",
    }
    mem_config = TrainConfig(
        stage="memorization",
        epochs=args.mem_epochs,
        max_steps=args.mem_max_steps,
        **{**common, "lr": args.mem_lr or args.lr, "schedule": args.mem_schedule},
        target=args.target or None,
        check_every=args.check_every,
        check_tools=args.check_tools,
    )
    ret_config = TrainConfig(stage="retrieval", epochs=args.ret_epochs, max_steps=args.ret_max_steps, **common)
    model = prepare_model(model, new_ids, mem_config)
    mem_examples = encode_all(tokenizer, mem_convs, max_length=args.max_length)
    ret_examples = encode_all(tokenizer, ret_convs, max_length=args.max_length)
    report: dict = {
        "device": str(device),
        "model": args.model,
        "codes": codes_label,
        "tools": len(tools),
        "train_queries": len(train_ids),
        "val_queries": len(val_ids),
        "mem_tokens_per_example": sum(map(len, mem_examples)) / len(mem_examples),
        "ret_tokens_per_example": sum(map(len, ret_examples)) / len(ret_examples),
    }
    if args.plain_steps:
        report["loop_comparison"] = compare_loops(model, tokenizer, mem_examples, mem_config, device, args.plain_steps)
        logger.info("loop comparison: %s", report["loop_comparison"])
    out_root = args.out or Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    meta = {"base_model": args.model, "codes_version": codes_label}
    for stage, config, examples in (
        ("memorization", mem_config, mem_examples),
        ("retrieval", ret_config, ret_examples),
    ):
        check = None
        if stage == "memorization" and config.target is not None:
            probe = memorization_probe(tokenizer, mem_convs, sample=config.check_tools, seed=config.seed)
            check = partial(exact_match, probe=probe)
        result = train(
            model, tokenizer, examples, config, device=device, out_dir=out_root / stage, meta=meta, check=check
        )
        report[stage] = {
            "steps": result.steps,
            "epochs": result.steps / steps_per_epoch(len(examples), config),
            "tokens": result.tokens,
            "train_s": result.train_s,
            "check_s": result.check_s,
            "time_to_target_s": result.train_s + result.check_s if result.stopped_early else None,
            "stopped_early": result.stopped_early,
            "check_exact_match": result.exact_match,
            "tokens_per_s": result.tokens_per_s,
            "last_loss": result.last_loss,
        }
        logger.info("%s: %s", stage, report[stage])
        if stage == "memorization":
            trie = trie_for_codes(tokenizer, codes)
            report["memorization"]["exact_match"] = memorization_exact(
                model, tokenizer, tools, codes, trie, args.mem_eval, args.max_description_chars
            )
            logger.info("memorization exact match: %.3f", report["memorization"]["exact_match"])
    report["val_ndcg@5_standard"] = {
        "toolweaver": llm_ndcg(model, tokenizer, queries, qrels, val_ids, trie),
        "bm25": bm25_ndcg(tools, queries, qrels, val_ids),
    }
    report["wall_s"] = time.perf_counter() - started
    report["checkpoints"] = str(out_root)
    text = json.dumps(report, indent=2)
    print(text)
    print(TABLE_HEADER)
    print(table_row(report, args.label))
    if args.json:
        args.json.write_text(text)
    return report


if __name__ == "__main__":
    main()
