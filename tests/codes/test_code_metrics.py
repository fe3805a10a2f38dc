"""Code quality metrics: known answers on hand-made codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.codes.helpers import clustered, tiny_config
from toolweaver.codes import RQVAE, CoUsageEdges, code_metrics
from toolweaver.codes.assign import CollisionReport
from toolweaver.codes.metrics import cousage_alignment, decoded_recall


def test_alignment_known_answer() -> None:
    first = np.array([0, 0, 1, 1, 2, 3])
    edges = CoUsageEdges(np.array([0, 2, 0, 4]), np.array([1, 3, 2, 5]), np.ones(4, dtype=np.float32))
    out = cousage_alignment(first, edges, np.random.default_rng(0), 200_000)
    assert out["alignment_cousage"] == pytest.approx(0.5)  # (0,1) and (2,3) share, the others do not
    # chance: 2 same-code pairs per ordered...: P(same) = (2*1 + 2*1) / (6*5) = 4/30
    assert out["alignment_random"] == pytest.approx(4 / 30, abs=0.005)
    assert out["alignment_lift"] == pytest.approx(0.5 / out["alignment_random"])


def test_alignment_without_edges() -> None:
    out = cousage_alignment(np.zeros(5, dtype=np.int64), None, np.random.default_rng(0), 100)
    assert out["alignment_cousage"] is None and out["alignment_random"] == 1.0


def perfect_codebook_model(x: np.ndarray) -> RQVAE:
    """A model whose decoder is the identity on a 1-level codebook holding x itself."""
    n, dim = x.shape
    cfg = tiny_config(levels=1, codebook_size=n, encoder_widths=(dim,), latent_dim=dim)
    model = RQVAE(dim, cfg)
    with torch.no_grad():
        for layer in (model.decoder[0], model.decoder[2]):
            layer.weight.copy_(torch.eye(dim))
            layer.bias.zero_()
        model.quantizer.codebooks[0].copy_(torch.relu(torch.from_numpy(x)))
        model.quantizer.initialised.fill_(True)
    return model


def test_recall_is_one_when_decoding_is_exact() -> None:
    x = np.abs(clustered(n=64, dim=8))  # non-negative, so the ReLU in the decoder is exact
    model = perfect_codebook_model(x)
    levels = np.arange(64)[:, None]
    assert decoded_recall(levels, x, model, k=5, n_queries=64, rng=np.random.default_rng(0)) == pytest.approx(1.0)
    shuffled = np.random.default_rng(1).permutation(64)[:, None]
    assert decoded_recall(shuffled, x, model, k=5, n_queries=64, rng=np.random.default_rng(0)) < 0.5


def test_code_metrics_reports_everything() -> None:
    x = np.abs(clustered(n=64, dim=8))
    model = perfect_codebook_model(x)
    levels = np.arange(64)[:, None]
    edges = CoUsageEdges(np.array([0, 1]), np.array([2, 3]), np.ones(2, dtype=np.float32))
    report = CollisionReport(n_tools=8, n_existing=0, collision_rate_before=0.125)
    metrics = code_metrics(levels, x, model, edges, k=5, seed=0, report=report)
    assert metrics["collision_rate_before"] == 0.125
    assert metrics["distinct_codes"] == 64
    assert metrics["utilisation"] == [1.0]
    assert metrics["alignment_cousage"] == 0.0
    assert metrics["recall_at_5"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="codes but"):
        code_metrics(levels[:10], x, model, edges)
