"""Collaborative RQ-VAE: decode round trip, pinned loss curve, determinism, save/load,
the co-usage gradient reaching the encoder, edge-carrying batches, config rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.codes.helpers import chain_edges, clustered, tiny_config
from toolweaver.codes import (
    RQVAE,
    CoUsageEdges,
    RQVAEConfig,
    assign_codes,
    derive_codebook_size,
    load_rqvae,
    save_rqvae,
    train_rqvae,
)
from toolweaver.codes.rqvae import Batch, batch_losses, code_usage, tool_edge_batches

# loss_total per epoch of tiny_config() on clustered() with chain_edges(256), seed 0
# (epoch 1 is the autoencoder warm-up). Pinned from a CPU run; a change here means the
# training maths changed.
PINNED_LOSS_TOTAL = [1.392522, 3.488626, 3.130334, 2.832963]


@pytest.fixture(scope="module")
def trained() -> tuple[np.ndarray, CoUsageEdges, object]:
    x = clustered()
    edges = chain_edges(len(x))
    return x, edges, train_rqvae(x, edges, tiny_config())


def test_decoding_indices_reproduces_quantised_output(trained) -> None:
    x, _, result = trained
    model = result.model
    with torch.no_grad():
        out = model(torch.from_numpy(x))
        assert torch.allclose(model.quantizer.decode_indices(out.quantized.indices), out.z_q, atol=1e-6)
        assert torch.allclose(model.decode_indices(out.quantized.indices), model.decode(out.z_q), atol=1e-6)


def test_residual_loop_quantises_the_residual(trained) -> None:
    """Level 2's code is the nearest codeword to (z minus level 1's codeword) in the
    whitened frame of level 1's cell; decoding maps the codeword back out of that frame."""
    x, _, result = trained
    quantizer = result.model.quantizer
    assert quantizer.whitened  # train_rqvae fits the cell frames after training
    with torch.no_grad():
        z = result.model.encode(torch.from_numpy(x))
        idx = quantizer(z).indices
        books = quantizer.codebooks
        first = ((z[:, None, :] - books[0][None]) ** 2).sum(-1).argmin(1)
        residual = z - books[0][first]
        framed = torch.einsum("bd,bde->be", residual, quantizer.whiten[0][first])
        second = ((framed[:, None, :] - books[1][None]) ** 2).sum(-1).argmin(1)
        decoded = books[0][first] + torch.einsum("bd,bde->be", books[1][second], quantizer.unwhiten[0][first])
    assert torch.equal(idx[:, 0], first)
    assert torch.equal(idx[:, 1], second)
    torch.testing.assert_close(quantizer.decode_indices(idx), decoded)


def test_cell_frames_whiten_each_cell() -> None:
    """Known answer: two cells whose residuals are stretched along different axes; after
    the fit each cell's frame maps its residuals to (about) unit covariance, and
    unwhiten is the exact inverse of whiten."""
    from toolweaver.codes.rqvae import ResidualQuantizer

    g = torch.Generator().manual_seed(0)
    residual = torch.randn(4000, 2, generator=g)
    cells = torch.arange(4000) % 2
    residual[cells == 0] *= torch.tensor([5.0, 0.5])
    residual[cells == 1] *= torch.tensor([0.2, 3.0])
    quantizer = ResidualQuantizer(2, 2, 2, 0.25, whitening_shrinkage=0.0)
    quantizer.fit_level_frames(1, residual, cells)
    for cell in (0, 1):
        framed = residual[cells == cell] @ quantizer.whiten[0, cell]
        torch.testing.assert_close(framed.T @ framed / len(framed), torch.eye(2), atol=0.02, rtol=0)
        torch.testing.assert_close(
            quantizer.whiten[0, cell] @ quantizer.unwhiten[0, cell], torch.eye(2), atol=1e-5, rtol=0
        )


def test_cell_frames_of_zero_residuals_are_finite() -> None:
    """A catalog smaller than the codebook (K >= N): every tool sits on its own level-0
    codeword, the level-1 residuals are all zero, and the frames must stay finite (they
    were inf/NaN, and the NaN reached Sinkhorn far from the cause)."""
    from toolweaver.codes.rqvae import ResidualQuantizer

    quantizer = ResidualQuantizer(2, 16, 4, 0.25, whitening_shrinkage=5.0)
    quantizer.fit_level_frames(1, torch.zeros(10, 4), torch.arange(10))
    assert torch.isfinite(quantizer.whiten).all() and torch.isfinite(quantizer.unwhiten).all()
    torch.testing.assert_close(quantizer.whiten[0, 0] @ quantizer.unwhiten[0, 0], torch.eye(4))


def test_small_catalog_trains_to_finite_unique_codes() -> None:
    x = clustered(n=12, seed=3)
    result = train_rqvae(x, None, tiny_config(codebook_size=32))
    losses = [v for m in result.epoch_metrics for k, v in m.items() if k.startswith("loss")]
    assert losses and np.isfinite(losses).all()
    codes = assign_codes(result.model, x, result.cfg).code_matrix
    assert len({tuple(row) for row in codes.tolist()}) == len(x)


def test_cell_frames_lower_first_pass_collisions() -> None:
    """Tight clusters (near-duplicate docs) collide on a shared last-level codebook; the
    cell frames spread each cluster over the whole codebook."""
    from toolweaver.codes.rqvae import ResidualQuantizer, code_usage

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(32, 8, generator=g) * 10
    spread = torch.logspace(-2, 0, 32)[:, None, None]  # clusters of very different tightness
    z = (centres[:, None, :] + spread * torch.randn(32, 20, 8, generator=g)).reshape(-1, 8)
    rates = {}
    for shrinkage in (None, 1.0):
        quantizer = ResidualQuantizer(2, 32, 8, 0.25, whitening_shrinkage=shrinkage)
        quantizer.init_kmeans(z, iters=20, generator=torch.Generator().manual_seed(1), frames=shrinkage is not None)
        with torch.no_grad():
            rates[shrinkage] = code_usage(quantizer(z).indices, 32)["collision_rate"]
    assert rates[1.0] < rates[None] - 0.15  # measured: 0.82 without frames, 0.60 with


def test_pinned_loss_curve(trained) -> None:
    _, _, result = trained
    curve = [m["loss_total"] for m in result.epoch_metrics if m["phase"] != "refit"]
    assert [m["phase"] for m in result.epoch_metrics] == ["warmup", "rq", "rq", "rq", "refit"]
    np.testing.assert_allclose(curve, PINNED_LOSS_TOTAL, rtol=2e-3)


def test_epoch_metrics_are_complete(trained) -> None:
    _, _, result = trained
    last = result.epoch_metrics[-1]
    for key in ("loss_total", "loss_recon", "loss_quant", "loss_cousage", "collision_rate", "seconds"):
        assert isinstance(last[key], float)
    assert len(last["utilisation"]) == len(last["perplexity"]) == 2
    assert all(0.0 < u <= 1.0 for u in last["utilisation"])
    assert all(1.0 <= p <= 8.0 for p in last["perplexity"])


def test_same_seed_same_model_and_codes(trained) -> None:
    x, edges, first = trained
    second = train_rqvae(x, edges, tiny_config())
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    xt = torch.from_numpy(x)
    assert torch.equal(first.model.nearest_indices(xt), second.model.nearest_indices(xt))
    other = train_rqvae(x, edges, tiny_config(seed=1))
    assert not torch.equal(first.model.quantizer.codebooks, other.model.quantizer.codebooks)


def test_training_leaves_global_rng_untouched(trained) -> None:
    x, _edges, _ = trained
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_rqvae(x[:64], None, tiny_config(epochs=1, warmup_epochs=0))
    assert torch.equal(torch.rand(3), expected)


def test_save_load_round_trip(trained, tmp_path: Path) -> None:
    x, _, result = trained
    folder = save_rqvae(result.model, result.cfg, tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    model, cfg = load_rqvae(folder)
    assert cfg == result.cfg
    assert bool(model.quantizer.initialised)
    xt = torch.from_numpy(x)
    assert torch.equal(model.nearest_indices(xt), result.model.nearest_indices(xt))


def test_save_rejects_unresolved_config(trained, tmp_path: Path) -> None:
    _, _, result = trained
    with pytest.raises(ValueError, match="resolved config"):
        save_rqvae(result.model, result.cfg.model_copy(update={"codebook_size": 16}), tmp_path)


def test_load_missing_folder_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an RQ-VAE checkpoint"):
        load_rqvae(tmp_path)


def test_uninitialised_quantizer_refuses_to_run() -> None:
    model = RQVAE(16, tiny_config())
    assert "quantizer.initialised" in model.state_dict()
    with pytest.raises(RuntimeError, match="not initialised"):
        model(torch.zeros(2, 16))


@pytest.mark.parametrize("cousage_on", ["quantized", "encoder"])
def test_cousage_term_alone_reaches_the_encoder(cousage_on: str) -> None:
    cfg = tiny_config(cousage_on=cousage_on, lambda_cousage=1.0)
    x = torch.from_numpy(clustered())
    torch.manual_seed(0)
    model = RQVAE(x.shape[1], cfg)
    model.quantizer.init_kmeans(model.encode(x), iters=5, generator=torch.Generator().manual_seed(0))
    codes = model.nearest_indices(x)
    u = 0
    others = torch.nonzero((codes != codes[u]).any(1)).flatten()
    v, w = int(others[0]), int(others[-1])  # tools with a different code than u
    # A third encoded row that is in no edge: with only the pair in the batch the term
    # is pulled / spread = ||z_u - z_v||^2 / (||z_u - z_v||^2 / 4), a constant whose
    # gradient is zero up to rounding.
    batch = Batch(
        rows=torch.tensor([u, v, w]),
        nodes=torch.tensor([0, 1, 2]),
        edge_u=torch.tensor([0]),
        edge_v=torch.tensor([1]),
        edge_w=torch.tensor([1.0]),
    )
    losses = batch_losses(model, x, batch, cfg)
    assert float(losses["loss_cousage"].detach()) > 0
    losses["loss_cousage"].backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert model.decoder[0].weight.grad is None  # the term does not touch the decoder


def test_epoch_batches_carry_every_edge_once() -> None:
    n = 100
    edges = chain_edges(n, n_edges=30)
    batches = tool_edge_batches(n, edges, batch_size=32, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 4
    nodes = torch.cat([b.rows[b.nodes] for b in batches])
    assert sorted(nodes.tolist()) == list(range(n))  # every tool once
    seen = sorted((int(b.rows[u]), int(b.rows[v])) for b in batches for u, v in zip(b.edge_u, b.edge_v, strict=True))
    assert seen == sorted(zip(edges.src.tolist(), edges.dst.tolist(), strict=True))
    for b in batches:  # the batch encodes both endpoints of its edges
        assert torch.equal(b.rows, torch.unique(b.rows))


def test_edges_are_validated() -> None:
    with pytest.raises(ValueError, match="equal 1-d"):
        CoUsageEdges(np.array([0, 1]), np.array([1]), np.array([1.0], dtype=np.float32))
    edges = CoUsageEdges(np.array([0]), np.array([5]), np.array([1.0], dtype=np.float32))
    with pytest.raises(ValueError, match="lie in"):
        train_rqvae(clustered(n=4), edges, tiny_config())
    loops = CoUsageEdges(np.array([1]), np.array([1]), np.array([1.0], dtype=np.float32))
    with pytest.raises(ValueError, match="self-loops"):
        loops.check_rows(4)


def test_code_usage_known_answer() -> None:
    usage = code_usage(torch.tensor([[0, 1], [0, 1], [1, 2], [3, 2]]), codebook_size=4)
    assert usage["collision_rate"] == pytest.approx(0.25)
    assert usage["utilisation"] == [0.75, 0.5]
    assert usage["perplexity"][1] == pytest.approx(2.0)


def test_codebook_size_rule() -> None:
    assert derive_codebook_size(46_985, 2) == 1024  # the paper's K for ToolBench
    assert derive_codebook_size(10, 2) == 16
    for n, levels in [(5000, 2), (47_000, 3), (100, 1)]:
        k = derive_codebook_size(n, levels)
        assert k**levels >= 16 * n and (k // 2) ** levels < 16 * n or k == 16
    assert RQVAEConfig().resolved(46_985).codebook_size == 1024
    assert RQVAEConfig(codebook_size=64).resolved(46_985).codebook_size == 64


def test_config_is_frozen_and_strict() -> None:
    cfg = RQVAEConfig()
    with pytest.raises(ValueError):
        cfg.levels = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        RQVAEConfig(codebok_size=8)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="encoder_widths"):
        RQVAEConfig(encoder_widths=())


def test_tf32_is_switched_on_for_training_only() -> None:
    from toolweaver.codes.rqvae import _tf32

    switches = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = tuple(s.allow_tf32 for s in switches)
    with pytest.raises(KeyError), _tf32(True):
        assert all(s.allow_tf32 for s in switches)
        raise KeyError("an error inside training still restores the switches")
    assert tuple(s.allow_tf32 for s in switches) == before
