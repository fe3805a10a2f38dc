"""Quality of a code assignment.

- collision rate before resolution: 1 - distinct nearest codes / tools (from the report)
- utilisation / perplexity per level: share of the K codes in use; exp(entropy) of usage
- co-usage alignment: share of co-used pairs (edges) whose first code is equal, next to
  the same share for uniformly random pairs (the chance level)
- recall@k: for sampled tools, overlap of their k nearest neighbours (cosine, self
  excluded) among the decoded embeddings (decoder(codes)) with those among the original
  embeddings, divided by k
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from toolweaver.codes.assign import CollisionReport
from toolweaver.codes.rqvae import EVAL_BATCH_ROWS, RQVAE, CoUsageEdges, code_usage


def code_metrics(
    levels: np.ndarray,
    embeddings: np.ndarray,
    model: RQVAE,
    edges: CoUsageEdges | None,
    *,
    k: int = 10,
    seed: int = 0,
    report: CollisionReport | None = None,
    n_queries: int = 1000,
    n_random_pairs: int = 100_000,
) -> dict[str, Any]:
    """Metrics of codes (N, L) for embeddings (N, D); `report` is CodeAssignment.report."""
    if levels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"{levels.shape[0]} codes but {embeddings.shape[0]} embeddings")
    rng = np.random.default_rng(seed)
    usage = code_usage(torch.as_tensor(levels, dtype=torch.long), model.codebook_size)
    metrics: dict[str, Any] = {
        "n_tools": int(levels.shape[0]),
        "collision_rate_before": None if report is None else report.collision_rate_before,
        "distinct_codes": len(np.unique(levels, axis=0)),
        "utilisation": usage["utilisation"],
        "perplexity": usage["perplexity"],
    }
    metrics.update(cousage_alignment(levels[:, 0], edges, rng, n_random_pairs))
    metrics[f"recall_at_{k}"] = decoded_recall(levels, embeddings, model, k=k, n_queries=n_queries, rng=rng)
    return metrics


def cousage_alignment(
    first: np.ndarray, edges: CoUsageEdges | None, rng: np.random.Generator, n_random_pairs: int
) -> dict[str, float | None]:
    """Share of co-used pairs with equal first code vs. the share for random pairs."""
    n = len(first)
    u = rng.integers(0, n, size=n_random_pairs)
    v = (u + rng.integers(1, n, size=n_random_pairs)) % n  # v != u, uniform over the others
    random_share = float((first[u] == first[v]).mean())
    if edges is None or len(edges) == 0:
        return {"alignment_cousage": None, "alignment_random": random_share, "alignment_lift": None}
    share = float((first[edges.src] == first[edges.dst]).mean())
    lift = share / random_share if random_share > 0 else float("inf")
    return {"alignment_cousage": share, "alignment_random": random_share, "alignment_lift": lift}


@torch.no_grad()
def decoded_recall(
    levels: np.ndarray, embeddings: np.ndarray, model: RQVAE, *, k: int, n_queries: int, rng: np.random.Generator
) -> float:
    """Mean overlap@k of nearest neighbours: decoded codes vs original embeddings."""
    n = len(levels)
    if n <= k:
        raise ValueError(f"recall@{k} needs more than {k} tools, got {n}")
    device = next(model.parameters()).device
    model.eval()
    codes = torch.as_tensor(levels, dtype=torch.long, device=device)
    decoded = torch.cat([model.decode_indices(c).float() for c in codes.split(EVAL_BATCH_ROWS)]).cpu()
    original = torch.as_tensor(embeddings, dtype=torch.float32)
    queries = torch.as_tensor(np.sort(rng.choice(n, size=min(n_queries, n), replace=False)))
    # hits[q, i, j]: i-th original neighbour of q equals its j-th decoded neighbour
    hits = _top_k(original, queries, k)[:, :, None] == _top_k(decoded, queries, k)[:, None, :]
    overlap = hits.any(2).sum(1).float() / k
    return float(overlap.mean())


def _top_k(vectors: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """k nearest neighbours (cosine, self excluded) of the query rows -> (Q, k) row ids."""
    unit = torch.nn.functional.normalize(vectors, dim=1)
    similarity = unit[queries] @ unit.T
    similarity[torch.arange(len(queries)), queries] = -float("inf")
    return similarity.topk(k, dim=1).indices
