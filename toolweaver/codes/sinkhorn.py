"""Entropic optimal transport (Sinkhorn) in the log domain.

    min_P <P, C> - eps * H(P)   s.t.  P 1 = a,  P^T 1 = b

is solved with dual potentials f, g:  log P = -C/eps + f[:, None] + g[None, :], and the
alternating updates  f = log a - LSE_j(-C/eps + g),  g = log b - LSE_i(-C/eps + f).
Every step is a logsumexp, so nothing under- or overflows even at eps = 1e-3 in float32
(the exp-domain version needs float64 and still produces NaN at small eps).
Non-finite input is an error, not a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkhornResult:
    """log_plan (N, M); iterations run; L1 error of the row marginals at exit."""

    log_plan: torch.Tensor
    iterations: int
    marginal_error: float

    @property
    def plan(self) -> torch.Tensor:
        return self.log_plan.exp()


def _log_mass(mass: torch.Tensor | None, n: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """Marginal (n,) -> its log, uniform 1/n when None; rejects bad masses loudly."""
    if mass is None:
        return torch.full((n,), -torch.log(torch.tensor(float(n))).item(), dtype=like.dtype, device=like.device)
    if mass.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(mass.shape)}")
    if not torch.isfinite(mass).all() or (mass < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return mass.to(dtype=like.dtype, device=like.device).log()


def sinkhorn_log(
    cost: torch.Tensor,
    epsilon: float,
    *,
    row_mass: torch.Tensor | None = None,
    col_mass: torch.Tensor | None = None,
    max_iters: int = 1000,
    tol: float = 1e-6,
    check_every: int = 10,
) -> SinkhornResult:
    """Entropic OT plan for cost (N, M); marginals default to uniform 1/N and 1/M.

    Runs until the row-marginal L1 error is below `tol` or `max_iters` (column marginals
    are exact after every step). Raises ValueError on non-finite cost or bad marginals
    and FloatingPointError if the result is not finite.
    """
    if cost.ndim != 2 or cost.shape[0] == 0 or cost.shape[1] == 0:
        raise ValueError(f"cost must be a non-empty (N, M) matrix, got shape {tuple(cost.shape)}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not torch.isfinite(cost).all():
        raise ValueError("sinkhorn: cost matrix contains NaN or inf; fix the distances upstream")
    n, m = cost.shape
    log_k = -cost / epsilon
    log_a = _log_mass(row_mass, n, log_k, "row_mass")
    log_b = _log_mass(col_mass, m, log_k, "col_mass")
    if row_mass is not None and col_mass is not None:
        total_a, total_b = float(row_mass.sum()), float(col_mass.sum())
        if abs(total_a - total_b) > 1e-4 * max(total_a, total_b):
            raise ValueError(f"row_mass sums to {total_a} but col_mass to {total_b}; they must match")
    f = torch.zeros(n, dtype=log_k.dtype, device=log_k.device)
    g = torch.zeros(m, dtype=log_k.dtype, device=log_k.device)
    error = float("inf")
    iterations = 0
    for iterations in range(1, max_iters + 1):
        f = log_a - torch.logsumexp(log_k + g[None, :], dim=1)
        g = log_b - torch.logsumexp(log_k + f[:, None], dim=0)
        if iterations % check_every == 0 or iterations == max_iters:
            # a CPU-GPU sync point, hence only every `check_every` steps
            rows = torch.logsumexp(log_k + f[:, None] + g[None, :], dim=1).exp()
            error = float((rows - log_a.exp()).abs().sum())
            if error < tol:
                break
    log_plan = log_k + f[:, None] + g[None, :]
    if not torch.isfinite(log_plan).all():
        raise FloatingPointError(f"sinkhorn produced non-finite values (epsilon={epsilon}, shape={n}x{m})")
    return SinkhornResult(log_plan=log_plan, iterations=iterations, marginal_error=error)


def sinkhorn(cost: torch.Tensor, epsilon: float, **kwargs: object) -> torch.Tensor:
    """The transport plan (N, M) of `sinkhorn_log` (same arguments)."""
    return sinkhorn_log(cost, epsilon, **kwargs).plan  # type: ignore[arg-type]


def normalise_cost(distances: torch.Tensor) -> torch.Tensor:
    """Distances (N, M) -> cost in [0, 1] (shift by the min, divide by the range), so that
    one epsilon means the same thing whatever the latent scale."""
    low = distances.min()
    span = (distances.max() - low).clamp_min(torch.finfo(distances.dtype).tiny)
    return (distances - low) / span
