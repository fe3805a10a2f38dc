"""Benchmark: train the collaborative RQ-VAE and assign unique codes from exported files.

Inputs are plain files, so this runs on any machine with the compute stack (torch,
numpy, safetensors, pydantic) and this repository; it never imports storage, prefect,
deltalake or sentence-transformers:

    --embeddings  .npy, float32 (N, D)             (toolweaver tokenize exports it)
    --edges       .npz with src, dst (int64 row indices) and weight (float32)
    --tool-ids    optional .txt, one tool id per embedding row (only counted/checked)
    --synthetic N instead of files: N clustered 384-d vectors and random edges

Single run:   python bench/tokenize.py --embeddings E.npy --edges G.npz
Acceptance:   python bench/tokenize.py ... --seeds 0,1,2 --lambdas 0,1.0
              (mean +- std over seeds of co-usage alignment and NN recall per lambda)

Prints the per-epoch metrics (to see them plateau), then a summary table: wall time,
per-epoch time, peak memory (RSS; CUDA max allocated), collision rate before
resolution (1 - distinct nearest codes / tools), utilisation, co-usage alignment and
recall@10 of the decoded latents. --json FILE also writes everything as JSON.
"""

from __future__ import annotations

import os
import sys

# This file is named like the stdlib module `tokenize`; run as a script, its folder is
# sys.path[0] and `import logging` (-> linecache -> tokenize) would import this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import hashlib
import json
import logging
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from toolweaver.codes import (
    CoUsageEdges,
    RQVAEConfig,
    assign_codes,
    code_metrics,
    train_rqvae,
)
from toolweaver.device import resolve_device

logger = logging.getLogger("bench.tokenize")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", type=Path, help=".npy float32 (N, D)")
    p.add_argument("--edges", type=Path, help=".npz with src, dst, weight")
    p.add_argument("--tool-ids", type=Path, help=".txt, one id per embedding row")
    p.add_argument("--synthetic", type=int, default=0, help="use N synthetic tools instead of files")
    p.add_argument("--levels", type=int, default=2)
    p.add_argument("--codebook-size", type=int, default=1024)
    p.add_argument("--epochs", type=int, help="override RQVAEConfig.epochs")
    p.add_argument("--warmup-epochs", type=int, help="override RQVAEConfig.warmup_epochs")
    p.add_argument("--batch-size", type=int, help="override RQVAEConfig.batch_size")
    p.add_argument("--lr", type=float, help="override RQVAEConfig.lr")
    p.add_argument("--latent-dim", type=int, help="override RQVAEConfig.latent_dim")
    p.add_argument("--cousage-on", choices=["quantized", "encoder"], help="override RQVAEConfig.cousage_on")
    p.add_argument("--sinkhorn-last-level", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seeds", type=_ints, default=[0], help="comma-separated, e.g. 0,1,2")
    p.add_argument("--lambdas", type=_floats, help="comma-separated co-usage weights, e.g. 0,1.0")
    p.add_argument("--k", type=int, default=10, help="k of the NN recall")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="also write all results to this JSON file")
    return p.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def load_inputs(args: argparse.Namespace) -> tuple[np.ndarray, CoUsageEdges | None]:
    if args.synthetic:
        return synthetic(args.synthetic)
    if args.embeddings is None:
        raise SystemExit("give --embeddings (and --edges) or --synthetic N")
    x = np.load(args.embeddings)
    if x.dtype != np.float32 or x.ndim != 2:
        raise SystemExit(f"{args.embeddings}: expected float32 (N, D), got {x.dtype} {x.shape}")
    if args.tool_ids is not None:
        ids = args.tool_ids.read_text(encoding="utf-8").splitlines()
        if len(ids) != len(x):
            raise SystemExit(f"{args.tool_ids}: {len(ids)} ids for {len(x)} embeddings")
    edges = None
    if args.edges is not None:
        with np.load(args.edges) as g:
            edges = CoUsageEdges(g["src"].astype(np.int64), g["dst"].astype(np.int64), g["weight"].astype(np.float32))
    return x, edges


def synthetic(n: int, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, CoUsageEdges]:
    """A stand-in for a tool catalog: categories -> tools (~4 APIs each) -> APIs, built
    in a 64-d space and projected to `dim` (+ small isotropic noise), unit norm; edges
    among 3k APIs, half of them within the same tool. Real embeddings are better."""
    rng = np.random.default_rng(seed)
    n_tools = max(2, n // 4)
    categories = rng.normal(size=(49, 64))
    tools = categories[rng.integers(0, 49, size=n_tools)] + 0.8 * rng.normal(size=(n_tools, 64))
    owner = rng.integers(0, n_tools, size=n)
    latent = tools[owner] + 0.5 * rng.normal(size=(n, 64))
    x = latent @ rng.normal(size=(64, dim)) / 8.0 + 0.05 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    users = rng.choice(n, size=min(n, 3000), replace=False)
    pairs = set()
    for u in rng.choice(users, size=5 * len(users)):
        same = users[owner[users] == owner[u]]
        v = rng.choice(same) if rng.random() < 0.5 and len(same) > 1 else rng.choice(users)
        if u != v:
            pairs.add((min(int(u), int(v)), max(int(u), int(v))))
    src, dst = (np.array(c, dtype=np.int64) for c in zip(*sorted(pairs), strict=True))
    return x.astype(np.float32), CoUsageEdges(src, dst, rng.uniform(0.1, 1.0, len(src)).astype(np.float32))


def one_run(x: np.ndarray, edges: CoUsageEdges | None, cfg: RQVAEConfig, k: int) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = train_rqvae(x, edges, cfg, progress=print_epoch)
    _sync(device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    assignment = assign_codes(result.model, x, result.cfg)
    _sync(device)
    assign_s = time.perf_counter() - start
    metrics = code_metrics(assignment.code_matrix, x, result.model, edges, k=k, seed=cfg.seed, report=assignment.report)
    rq_epochs = [m for m in result.epoch_metrics if m["phase"] == "rq"]
    return {
        "seed": cfg.seed,
        "lambda_cousage": cfg.lambda_cousage,
        "device": str(device),
        "n_tools": len(x),
        "n_edges": 0 if edges is None else len(edges),
        "wall_s": train_s + assign_s,
        "train_s": train_s,
        "assign_s": assign_s,
        "epoch_s_mean": statistics.fmean(m["seconds"] for m in result.epoch_metrics),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "collision_rate_before": assignment.report.collision_rate_before,
        "collision_rate_last_epoch": rq_epochs[-1]["collision_rate"] if rq_epochs else None,
        "unique": metrics["distinct_codes"] == len(x),
        # Identity of the codes themselves: refactors must leave it unchanged (same seed).
        "codes_sha256": hashlib.sha256(
            np.ascontiguousarray(assignment.code_matrix, dtype=np.int64).tobytes()
        ).hexdigest(),
        "resolution": assignment.report.summary(),
        "metrics": metrics,
        "config": result.cfg.model_dump(mode="json"),
        "epochs": result.epoch_metrics,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # timings must include the queued GPU work


def print_epoch(m: dict[str, Any]) -> None:
    usage = ""
    if "collision_rate" in m:  # quantised epochs and the final cell-frame refit
        util = "/".join(f"{u:.2f}" for u in m["utilisation"])
        ppl = "/".join(f"{p:.0f}" for p in m["perplexity"])
        usage = f" coll={m['collision_rate']:.4f} util={util} ppl={ppl} revived={m['revived']}"
    print(
        f"  epoch {m['epoch']:3d} {m['phase']:6s} loss={m['loss_total']:.4f} recon={m['loss_recon']:.4f} "
        f"quant={m['loss_quant']:.4f} cousage={m['loss_cousage']:.4f}{usage} {m['seconds']:.1f}s",
        flush=True,
    )


def print_summary(runs: list[dict[str, Any]], k: int) -> None:
    print(
        "\n| seed | lambda | device | wall s | epoch s | peak RSS MiB | CUDA MiB | collision before | "
        f"unique | util L1/L2 | align co-used | align random | lift | recall@{k} |"
    )
    print("|" + "---|" * 14)
    for r in runs:
        m = r["metrics"]
        cuda = "-" if r["cuda_max_allocated_mib"] is None else f"{r['cuda_max_allocated_mib']:.0f}"
        align = "-" if m["alignment_cousage"] is None else f"{m['alignment_cousage']:.4f}"
        lift = "-" if m["alignment_lift"] is None else f"{m['alignment_lift']:.1f}"
        print(
            f"| {r['seed']} | {r['lambda_cousage']:g} | {r['device']} | {r['wall_s']:.1f} | {r['epoch_s_mean']:.2f} | "
            f"{r['peak_rss_mib']:.0f} | {cuda} | {r['collision_rate_before']:.4f} | {r['unique']} | "
            f"{'/'.join(f'{u:.3f}' for u in m['utilisation'])} | {align} | {m['alignment_random']:.4f} | "
            f"{lift} | {m[f'recall_at_{k}']:.4f} |"
        )


def aggregate(runs: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Mean and std over seeds per lambda, and the acceptance check lambda=0 vs the others."""
    by_lambda: dict[float, dict[str, tuple[float, float]]] = {}
    for lam in sorted({r["lambda_cousage"] for r in runs}):
        group = [r for r in runs if r["lambda_cousage"] == lam]
        stats = {}
        for name, get in {
            "alignment_cousage": lambda r: r["metrics"]["alignment_cousage"],
            f"recall_at_{k}": lambda r: r["metrics"][f"recall_at_{k}"],
            "collision_rate_before": lambda r: r["collision_rate_before"],
            "wall_s": lambda r: r["wall_s"],
        }.items():
            values = [get(r) for r in group if get(r) is not None]
            if values:
                stats[name] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        by_lambda[lam] = stats
    checks = {}
    if 0.0 in by_lambda and "alignment_cousage" in by_lambda[0.0]:
        base = by_lambda[0.0]
        for lam, stats in by_lambda.items():
            if lam == 0.0:
                continue
            gain = stats["alignment_cousage"][0] - base["alignment_cousage"][0]
            spread = max(stats["alignment_cousage"][1], base["alignment_cousage"][1])
            recall_drop = 1 - stats[f"recall_at_{k}"][0] / base[f"recall_at_{k}"][0]
            checks[lam] = {
                "alignment_gain": gain,
                "alignment_gain_in_std": gain / spread if spread > 0 else float("inf"),
                "alignment_ok (> 3 std)": gain > 3 * spread,
                "recall_relative_drop": recall_drop,
                "recall_ok (<= 2%)": recall_drop <= 0.02,
            }
    return {
        "by_lambda": {str(k_): v for k_, v in by_lambda.items()},
        "checks": {str(k_): v for k_, v in checks.items()},
    }


def print_aggregate(agg: dict[str, Any]) -> None:
    print("\n| lambda | metric | mean | std |\n|---|---|---|---|")
    for lam, stats in agg["by_lambda"].items():
        for name, (mean, std) in stats.items():
            print(f"| {lam} | {name} | {mean:.4f} | {std:.4f} |")
    for lam, check in agg["checks"].items():
        print(
            f"lambda={lam} vs 0: "
            + ", ".join(
                f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in check.items()
            )
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    x, edges = load_inputs(args)
    overrides = {
        key: value
        for key, value in {
            "levels": args.levels,
            "codebook_size": args.codebook_size,
            "epochs": args.epochs,
            "warmup_epochs": args.warmup_epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "latent_dim": args.latent_dim,
            "cousage_on": args.cousage_on,
            "sinkhorn_last_level": args.sinkhorn_last_level,
            "device": args.device,
        }.items()
        if value is not None
    }
    base = RQVAEConfig(**overrides)
    lambdas = args.lambdas if args.lambdas is not None else [base.lambda_cousage]
    print(
        f"tools={len(x)} dim={x.shape[1]} edges={0 if edges is None else len(edges)} "
        f"torch={torch.__version__} threads={torch.get_num_threads()} device={resolve_device(base.device)}"
    )
    runs = []
    for lam in lambdas:
        for seed in args.seeds:
            cfg = base.model_copy(update={"seed": seed, "lambda_cousage": lam})
            print(f"\n== seed={seed} lambda={lam:g} ==", flush=True)
            runs.append(one_run(x, edges, cfg, args.k))
    print_summary(runs, args.k)
    agg = aggregate(runs, args.k) if len(runs) > 1 else None
    if agg is not None:
        print_aggregate(agg)
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "aggregate": agg}, indent=2, default=float) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
