"""Tiny fixed inputs shared by the codes tests."""

from __future__ import annotations

import numpy as np

from toolweaver.codes import CoUsageEdges, RQVAEConfig


def clustered(n: int = 256, dim: int = 16, clusters: int = 8, seed: int = 0) -> np.ndarray:
    """Unit-norm vectors around `clusters` random centres, (n, dim) float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def chain_edges(n: int, n_edges: int = 40, seed: int = 0) -> CoUsageEdges:
    """Random distinct edges (src < dst) over n rows with weights in (0, 1]."""
    rng = np.random.default_rng(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < n_edges:
        u, v = sorted(int(i) for i in rng.choice(n, size=2, replace=False))
        pairs.add((u, v))
    src, dst = (np.array(c, dtype=np.int64) for c in zip(*sorted(pairs), strict=True))
    return CoUsageEdges(src, dst, rng.uniform(0.2, 1.0, size=n_edges).astype(np.float32))


def tiny_config(**overrides: object) -> RQVAEConfig:
    """A config that trains in well under a second on CPU."""
    base: dict[str, object] = {
        "levels": 2,
        "codebook_size": 8,
        "encoder_widths": (32,),
        "latent_dim": 4,
        "warmup_epochs": 1,
        "epochs": 3,
        "batch_size": 64,
        "lr": 3e-3,
        "beta": 0.25,
        "lambda_cousage": 1.0,
        "cousage_on": "quantized",
        "revive_dead_codes": True,
        "sinkhorn_last_level": False,
        "dropout": 0.0,
        "kmeans_iters": 5,
        "device": "cpu",
        "seed": 0,
    }
    base.update(overrides)
    return RQVAEConfig(**base)  # type: ignore[arg-type]
