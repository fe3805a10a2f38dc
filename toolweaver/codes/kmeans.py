"""k-means in torch with an explicit generator (codebook initialisation of the RQ-VAE)."""

from __future__ import annotations

import torch


def squared_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """||x_i - c_k||^2 for x (N, D), centres (K, D) -> (N, K), clamped at 0 (rounding)."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return d.clamp_min(0.0)


def kmeans(x: torch.Tensor, k: int, *, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means on x (N, D) -> centres (K, D), in x's dtype and device.

    Starts from k distinct random rows drawn with `generator` (a CPU generator, so the
    result is the same on any device). A cluster that empties keeps its previous centre.
    When N < k, the rows are repeated with a tiny seeded jitter so every centre exists.
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty (N, D) matrix, got {tuple(x.shape)}")
    x = x.float()
    n = x.shape[0]
    if n < k:
        reps = -(-k // n)
        jitter = torch.randn((n * reps, x.shape[1]), generator=generator) * 1e-4
        x = x.repeat(reps, 1) + jitter.to(x.device) * x.std().clamp_min(1e-6)
        n = x.shape[0]
    first = torch.randperm(n, generator=generator)[:k].to(x.device)
    centres = x[first].clone()
    for _ in range(iters):
        assign = squared_distances(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres
