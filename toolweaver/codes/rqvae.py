"""Collaborative RQ-VAE: tool embeddings -> L codes of K each, co-used tools close.

    z        = encoder(x)                                   (B, d)
    residual = z;  for level l:  q_l = nearest codeword of residual in codebook l
                                 residual = residual - q_l
    z_q      = z + (sum_l q_l - z).detach()                 straight-through: value = codes,
                                                            gradient = identity to the encoder
    x_hat    = decoder(z_q)

    loss = recon + quant + lambda * cousage
    recon   = mean_rows ||x_hat - x||^2
    quant   = mean_rows sum_l ( ||sg[r_l] - q_l||^2 + beta ||r_l - sg[q_l]||^2 )
    cousage = sum_{(u,v) in batch edges} A_uv ||z_u - z_v||^2 / sum A_uv / spread
    spread  = mean_rows ||z - mean(z)||^2 over the rows encoded in the batch

Every term is a per-row sum over dimensions. The co-usage term is the A-weighted mean
squared distance of the batch's co-used pairs relative to the batch spread: dividing by
the spread (with gradient) means shrinking all latents cannot lower it (without that it
collapses the codes), and the weighted mean makes lambda independent of how dense the
graph is (random pairs score about 2, identical pairs 0). The
co-usage term compares the straight-through quantised latents by default (their value
is the tools' codes; their gradient flows to the encoder, unlike the paper's code where
it only reached the codebook) or, with cousage_on="encoder", the raw encoder latents.

Batches carry edges: every epoch the tools are shuffled into batches of `batch_size`
and the edges are shuffled into as many equal chunks; batch b encodes its tools plus
the endpoints of edge chunk b (recon/quant use only its own tools, so every tool
weighs once per epoch). So every edge is seen exactly once per epoch, and the epoch's
co-usage term averages over that batch's edges.

All state is in parameters and buffers (`initialised` is a buffer), so `state_dict`
is the whole model.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from toolweaver.codes.config import RQVAEConfig
from toolweaver.codes.kmeans import kmeans, squared_distances
from toolweaver.codes.sinkhorn import normalise_cost, sinkhorn_log
from toolweaver.device import resolve_device

logger = logging.getLogger(__name__)

EVAL_BATCH_ROWS = 16384


@dataclass(frozen=True)
class CoUsageEdges:
    """Sparse co-usage graph over embedding rows: src, dst (E,) int64; weight (E,) float32."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    def __post_init__(self) -> None:
        if not (self.src.shape == self.dst.shape == self.weight.shape) or self.src.ndim != 1:
            raise ValueError(
                f"edges need equal 1-d src/dst/weight, got {self.src.shape}, {self.dst.shape}, {self.weight.shape}"
            )
        if len(self.weight) and (not np.isfinite(self.weight).all() or (self.weight < 0).any()):
            raise ValueError("edge weights must be finite and >= 0")

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def check_rows(self, n_rows: int) -> None:
        """Raise unless every endpoint indexes one of n_rows embeddings and no edge is a loop."""
        if len(self) == 0:
            return
        low = min(self.src.min(), self.dst.min())
        high = max(self.src.max(), self.dst.max())
        if low < 0 or high >= n_rows:
            raise ValueError(f"edge endpoints must lie in [0, {n_rows}); found range [{low}, {high}]")
        if (self.src == self.dst).any():
            raise ValueError("co-usage edges must not be self-loops (src == dst)")


def _mlp(widths: list[int], dropout: float) -> nn.Sequential:
    """Linear layers over `widths` with ReLU (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@dataclass
class Quantized:
    """codeword_sum: sum of the chosen codewords (B, d), no straight-through; indices: the
    codes, one codeword index per level (B, L); loss_rows: codebook + commitment loss (B,)."""

    codeword_sum: torch.Tensor
    indices: torch.Tensor
    loss_rows: torch.Tensor


class ResidualQuantizer(nn.Module):
    """L codebooks of K vectors; quantises residuals level by level.

    Cell frames (`whitening_shrinkage` set): level l >= 1 can quantise its residual in the
    frame of the level-(l-1) cell it falls in, rotated onto that cell's principal axes
    and scaled to unit variance (PCA whitening, as in locally optimised product
    quantisation). The codebooks stay shared across cells, but each cell now spreads its
    tools over the whole level-l codebook. Without frames, the tools of a tight cell
    (near-duplicate docs) all have small residuals and land on the same few level-l
    codewords: on the real 47k catalog that is most of the ~25% first-pass collisions.
    Frames are buffers fit from data by `init_kmeans(..., frames=True)` (train_rqvae does
    it once, after training); until then (`framed` False) every frame is the identity.
    """

    # Buffers, declared for the type checker (nn.Module.__getattr__ is untyped).
    initialised: torch.Tensor
    framed: torch.Tensor
    whiten: torch.Tensor
    unwhiten: torch.Tensor

    def __init__(
        self, levels: int, codebook_size: int, dim: int, beta: float, whitening_shrinkage: float | None = None
    ) -> None:
        super().__init__()
        self.levels, self.codebook_size, self.dim, self.beta = levels, codebook_size, dim, beta
        self.whitening_shrinkage = whitening_shrinkage
        self.codebooks = nn.Parameter(torch.zeros(levels, codebook_size, dim))
        self.register_buffer("initialised", torch.tensor(False))
        self.register_buffer("framed", torch.tensor(False))
        if whitening_shrinkage is not None and levels > 1:
            eye = torch.eye(dim).expand(levels - 1, codebook_size, dim, dim).clone()
            self.register_buffer("whiten", eye)  # (L-1, K, d, d): residual row @ whiten -> level frame
            self.register_buffer("unwhiten", eye.clone())  # its inverse: level frame -> latent

    @property
    def whitened(self) -> bool:
        """True once cell frames are fit (before that, levels >= 1 use the identity frame)."""
        return self.whitening_shrinkage is not None and self.levels > 1 and bool(self.framed)

    # ---------------------------------------------------------------- frames

    def to_frame(self, residual: torch.Tensor, level: int, prev: torch.Tensor | None) -> torch.Tensor:
        """Residuals (B, d) in level `level`'s frame; prev (B,) = level-(l-1) codes."""
        if level == 0 or not self.whitened:
            return residual
        return torch.bmm(residual[:, None, :], self.whiten[level - 1][prev]).squeeze(1)

    def from_frame(self, vectors: torch.Tensor, level: int, prev: torch.Tensor | None) -> torch.Tensor:
        """Inverse of `to_frame`: level-frame vectors (B, d) -> latent space."""
        if level == 0 or not self.whitened:
            return vectors
        return torch.bmm(vectors[:, None, :], self.unwhiten[level - 1][prev]).squeeze(1)

    def codewords(self, level: int, codes: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """Latent-space contribution (B, d) of `codes` (B,) at `level` after cells `prev` (B,)."""
        return self.from_frame(self.codebooks[level][codes], level, prev)

    def residual_after(self, z: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """z (B, d) minus the codewords of its first m codes `prefix` (B, m)."""
        residual = z.float()
        for level in range(prefix.shape[1]):
            prev = prefix[:, level - 1] if level else None
            residual = residual - self.codewords(level, prefix[:, level], prev)
        return residual

    def level_distances(self, residual: torch.Tensor, level: int, prev: torch.Tensor | None) -> torch.Tensor:
        """Squared distances (B, K) from residuals (B, d) to codebook `level`, in its frame."""
        return squared_distances(self.to_frame(residual, level, prev), self.codebooks[level])

    @torch.no_grad()
    def fit_level_frames(
        self, level: int, residual: torch.Tensor, prev: torch.Tensor, cells: torch.Tensor | None = None
    ) -> None:
        """Whitening frame of every level-(l-1) cell (or only `cells`) from the residuals
        (N, d) entering level l, grouped by their level-(l-1) codes `prev` (N,).

        Each cell's second-moment matrix is shrunk toward the pooled one with a pseudo-count
        of `whitening_shrinkage` rows, so cells with few (or no) tools get a sane frame."""
        if self.whitening_shrinkage is None:
            raise ValueError("cell frames need a quantizer built with whitening_shrinkage")
        n, d = residual.shape
        sums = torch.zeros(self.codebook_size, d, d, device=residual.device)
        for rows, cells_of_rows in zip(residual.split(8192), prev.split(8192), strict=True):
            sums.index_add_(0, cells_of_rows, rows[:, :, None] * rows[:, None, :])
        pooled = sums.sum(0) / max(n, 1)
        counts = torch.bincount(prev, minlength=self.codebook_size).float()[:, None, None]
        shrink = float(self.whitening_shrinkage)
        moment = (sums + shrink * pooled) / (counts + shrink).clamp_min(1e-12)
        values, vectors = torch.linalg.eigh(moment.double())
        scale = values.clamp_min(1e-8 * values.max().item()).sqrt()
        whiten = (vectors / scale[:, None, :]).float()
        unwhiten = (vectors * scale[:, None, :]).transpose(1, 2).float()
        cells = torch.arange(self.codebook_size, device=residual.device) if cells is None else cells
        self.whiten[level - 1, cells] = whiten[cells]
        self.unwhiten[level - 1, cells] = unwhiten[cells]

    # ---------------------------------------------------------------- quantise

    @torch.no_grad()
    def init_kmeans(
        self, z: torch.Tensor, *, iters: int, generator: torch.Generator, first_level: int = 0, frames: bool = False
    ) -> None:
        """Codebooks `first_level`.. <- k-means of their residuals of z (N, d); earlier
        levels keep their codewords. frames=True (needs whitening_shrinkage) first fits
        each level's cell frames and clusters in them."""
        if frames and self.whitening_shrinkage is None:
            raise ValueError("frames=True needs a quantizer built with whitening_shrinkage")
        residual, prev = z.float(), None
        for level in range(self.levels):
            if level >= first_level:
                if prev is not None and frames:
                    self.fit_level_frames(level, residual, prev)
                    self.framed.fill_(True)
                framed = self.to_frame(residual, level, prev)
                self.codebooks[level].copy_(kmeans(framed, self.codebook_size, iters=iters, generator=generator))
            idx = self.level_distances(residual, level, prev).argmin(1)
            residual = residual - self.codewords(level, idx, prev)
            prev = idx
        self.initialised.fill_(True)

    def forward(self, z: torch.Tensor, *, sinkhorn_epsilon: float | None = None, sinkhorn_iters: int = 50) -> Quantized:
        """z (B, d) -> Quantized. With sinkhorn_epsilon, the last level is assigned by a
        balanced (uniform code usage) Sinkhorn plan instead of the nearest codeword.
        Codes are chosen in each level's frame; the codebook and commitment losses are
        measured in latent space, so their scale does not depend on the frames."""
        if not bool(self.initialised):
            raise RuntimeError("quantizer codebooks are not initialised: call init_kmeans (train_rqvae does)")
        residual = z.float()
        codeword_sum = torch.zeros_like(residual)
        loss_rows = torch.zeros(z.shape[0], device=z.device)
        indices: list[torch.Tensor] = []
        for level in range(self.levels):
            prev = indices[-1] if indices else None
            framed = self.to_frame(residual.detach(), level, prev)
            idx = self._choose(framed, level, sinkhorn_epsilon, sinkhorn_iters)
            quantized = self.codewords(level, idx, prev)
            loss_rows = loss_rows + ((residual.detach() - quantized) ** 2).sum(1)
            loss_rows = loss_rows + self.beta * ((residual - quantized.detach()) ** 2).sum(1)
            codeword_sum = codeword_sum + quantized
            residual = residual - quantized.detach()
            indices.append(idx)
        return Quantized(codeword_sum=codeword_sum, indices=torch.stack(indices, 1), loss_rows=loss_rows)

    @torch.no_grad()
    def _choose(self, framed: torch.Tensor, level: int, eps: float | None, iters: int) -> torch.Tensor:
        distances = squared_distances(framed, self.codebooks[level])
        if eps is None or level != self.levels - 1:
            return distances.argmin(1)
        plan = sinkhorn_log(normalise_cost(distances), eps, max_iters=iters, tol=0.0, check_every=iters)
        return plan.log_plan.argmax(1)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, L) -> sum of the chosen codewords (B, d), in latent space."""
        zero = torch.zeros(indices.shape[0], self.dim, device=indices.device)
        return -self.residual_after(zero, indices)


@dataclass
class Forward:
    """Outputs of RQVAE.forward for a batch of B rows."""

    z: torch.Tensor  # encoder latents (B, d)
    z_q: torch.Tensor  # straight-through quantised latents (B, d)
    quantized: Quantized


class RQVAE(nn.Module):
    """MLP encoder -> residual quantiser -> MLP decoder."""

    def __init__(self, input_dim: int, cfg: RQVAEConfig) -> None:
        super().__init__()
        if cfg.codebook_size is None:
            raise ValueError("RQVAE needs a resolved config: call cfg.resolved(n_tools) first")
        widths = [input_dim, *cfg.encoder_widths, cfg.latent_dim]
        self.input_dim = input_dim
        self.encoder = _mlp(widths, cfg.dropout)
        self.decoder = _mlp(widths[::-1], cfg.dropout)
        self.quantizer = ResidualQuantizer(
            cfg.levels,
            cfg.codebook_size,
            cfg.latent_dim,
            cfg.beta,
            cfg.whitening_shrinkage if cfg.residual_whitening else None,
        )

    @property
    def levels(self) -> int:
        return self.quantizer.levels

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def forward(self, x: torch.Tensor, *, sinkhorn_epsilon: float | None = None, sinkhorn_iters: int = 50) -> Forward:
        z = self.encoder(x).float()
        # distances decide the codes: keep them in float32 even under bf16 autocast
        with torch.autocast(device_type=z.device.type, enabled=False):
            quantized = self.quantizer(z, sinkhorn_epsilon=sinkhorn_epsilon, sinkhorn_iters=sinkhorn_iters)
        z_q = z + (quantized.codeword_sum - z).detach()
        return Forward(z=z, z_q=z_q, quantized=quantized)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(z_q)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (B, L) -> reconstructed embeddings (B, D)."""
        return self.decoder(self.quantizer.decode_indices(indices))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, D) -> encoder latents (N, d), in chunks, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self.encoder(chunk).float() for chunk in x.split(EVAL_BATCH_ROWS)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def nearest_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, D) -> nearest codes per level (N, L), no balancing."""
        z = self.encode(x)
        return torch.cat([self.quantizer(chunk).indices for chunk in z.split(EVAL_BATCH_ROWS)])


# --------------------------------------------------------------------------- training


@dataclass
class Batch:
    """Rows to encode (`rows` into the embedding matrix) and positions into them."""

    rows: torch.Tensor  # (R,) unique embedding rows encoded in this step
    nodes: torch.Tensor  # (B,) positions of the batch's own tools in `rows`
    edge_u: torch.Tensor  # (E_b,) positions of edge sources in `rows`
    edge_v: torch.Tensor  # (E_b,)
    edge_w: torch.Tensor  # (E_b,) weights A_uv


@dataclass
class TrainedCodeModel:
    """The trained model (on the training device), its resolved config and per-epoch metrics."""

    model: RQVAE
    cfg: RQVAEConfig
    device: torch.device
    epoch_metrics: list[dict[str, Any]] = field(default_factory=list)


def tool_edge_batches(
    n_rows: int, edges: CoUsageEdges | None, batch_size: int, generator: torch.Generator
) -> list[Batch]:
    """One epoch of batches: shuffled tools in chunks + one shuffled chunk of edges each."""
    order = torch.randperm(n_rows, generator=generator)
    node_chunks = order.split(batch_size)
    if edges is None or len(edges) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return [Batch(c.sort().values, torch.arange(len(c)), empty, empty, empty.float()) for c in node_chunks]
    src, dst = torch.from_numpy(edges.src), torch.from_numpy(edges.dst)
    weight = torch.from_numpy(edges.weight)
    edge_chunks = torch.randperm(len(edges), generator=generator).tensor_split(len(node_chunks))
    batches = []
    for nodes, chunk in zip(node_chunks, edge_chunks, strict=True):
        rows, inverse = torch.unique(torch.cat([nodes, src[chunk], dst[chunk]]), return_inverse=True)
        n_nodes, n_edges = len(nodes), len(chunk)
        batches.append(
            Batch(
                rows=rows,
                nodes=inverse[:n_nodes],
                edge_u=inverse[n_nodes : n_nodes + n_edges],
                edge_v=inverse[n_nodes + n_edges :],
                edge_w=weight[chunk],
            )
        )
    return batches


def batch_losses(
    model: RQVAE, x: torch.Tensor, batch: Batch, cfg: RQVAEConfig, *, quantize: bool = True
) -> dict[str, torch.Tensor]:
    """Loss terms of one batch; x is the full embedding matrix on the model's device.

    quantize=False is the warm-up: a plain autoencoder (recon only), so that the k-means
    initialisation afterwards clusters meaningful latents instead of a random projection.
    """
    dev = x.device
    rows, nodes = batch.rows.to(dev), batch.nodes.to(dev)
    eps = cfg.sinkhorn_epsilon if cfg.sinkhorn_last_level else None
    zero = torch.zeros((), device=dev)
    with _autocast(dev, cfg):
        if quantize:
            out = model(x[rows], sinkhorn_epsilon=eps, sinkhorn_iters=cfg.sinkhorn_iters)
            latent, quant = out.z_q, out.quantized.loss_rows[nodes].mean()
            latent_co = out.z if cfg.cousage_on == "encoder" else out.z_q
        else:
            latent = latent_co = model.encoder(x[rows]).float()
            quant = zero
        x_hat = model.decode(latent[nodes]).float()
    recon = ((x_hat - x[rows][nodes]) ** 2).sum(1).mean()
    cousage = zero
    if quantize and len(batch.edge_w):
        diff = latent_co[batch.edge_u.to(dev)] - latent_co[batch.edge_v.to(dev)]
        weight = batch.edge_w.to(dev)
        pulled = (weight * (diff**2).sum(1)).sum() / weight.sum().clamp_min(1e-12)
        cousage = pulled / _spread(latent_co)
    total = recon + quant + cfg.lambda_cousage * cousage
    return {"loss_total": total, "loss_recon": recon, "loss_quant": quant, "loss_cousage": cousage}


def _spread(latent: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the batch latents (R, d) to their mean, >= a tiny floor.

    Dividing the co-usage term by it makes the term scale-free: otherwise the cheapest
    way to pull co-used tools together is to shrink every latent (the decoder scales
    back up), which collapses all tools onto a few codes.
    """
    centred = latent - latent.mean(0, keepdim=True)
    return (centred**2).sum(1).mean().clamp_min(1e-12)


def _autocast(device: torch.device, cfg: RQVAEConfig) -> torch.autocast:
    """bf16 autocast for the MLPs on CUDA (when cfg.amp); a disabled context elsewhere."""
    enabled = device.type == "cuda" and cfg.amp
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def code_usage(indices: torch.Tensor, codebook_size: int) -> dict[str, Any]:
    """Codes (N, L) -> collision rate (1 - distinct/N), utilisation and perplexity per level."""
    n, levels = indices.shape
    distinct = torch.unique(indices, dim=0).shape[0]
    utilisation, perplexity = [], []
    for level in range(levels):
        counts = torch.bincount(indices[:, level], minlength=codebook_size).float()
        p = counts / n
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        utilisation.append(float((counts > 0).float().mean()))
        perplexity.append(float(entropy.exp()))
    return {"collision_rate": 1.0 - distinct / n, "utilisation": utilisation, "perplexity": perplexity}


def train_rqvae(
    embeddings: np.ndarray,
    edges: CoUsageEdges | None,
    cfg: RQVAEConfig,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainedCodeModel:
    """Train the collaborative RQ-VAE on embeddings (N, D) float32; same inputs + seed ->
    same model on CPU. `progress` receives each epoch's metrics dict."""
    x_np = _check_embeddings(embeddings)
    if edges is not None:
        edges.check_rows(x_np.shape[0])
    cfg = cfg.resolved(x_np.shape[0])
    device = resolve_device(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), _tf32(device.type == "cuda" and cfg.amp):
        # module init and dropout use the global RNG; seed it inside a fork so the
        # caller's RNG state is untouched
        torch.manual_seed(cfg.seed)
        return _train(x_np, edges, cfg, device, generator, progress)


@contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls (about free accuracy-wise for an MLP) for the body only: the global
    switches are restored afterwards, so the caller's numerics are left as they were."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _train(
    x_np: np.ndarray,
    edges: CoUsageEdges | None,
    cfg: RQVAEConfig,
    device: torch.device,
    generator: torch.Generator,
    progress: Callable[[dict[str, Any]], None] | None,
) -> TrainedCodeModel:
    x = torch.from_numpy(x_np).to(device)
    model = RQVAE(x.shape[1], cfg).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainedCodeModel(model=model, cfg=cfg, device=device)
    logger.info(
        "training RQ-VAE: %d tools, L=%d, K=%d, %d+%d epochs on %s",
        x.shape[0],
        cfg.levels,
        cfg.codebook_size,
        cfg.warmup_epochs,
        cfg.epochs,
        device,
    )

    def record(metrics: dict[str, Any]) -> None:
        result.epoch_metrics.append(metrics)
        logger.info("epoch %d: %s", metrics["epoch"], _fmt(metrics))
        if progress is not None:
            progress(metrics)

    for epoch in range(1, cfg.warmup_epochs + 1):
        start = time.perf_counter()
        sums = train_epoch(model, x, edges, cfg, optimiser, generator, quantize=False)
        record({"epoch": epoch, "phase": "warmup", **sums, "seconds": time.perf_counter() - start})
    start = time.perf_counter()
    sample = torch.randperm(x.shape[0], generator=generator)[: cfg.kmeans_sample].sort().values
    model.quantizer.init_kmeans(model.encode(x[sample.to(device)]), iters=cfg.kmeans_iters, generator=generator)
    init_s = time.perf_counter() - start
    for epoch in range(cfg.warmup_epochs + 1, cfg.warmup_epochs + cfg.epochs + 1):
        start = time.perf_counter()
        sums = train_epoch(model, x, edges, cfg, optimiser, generator, quantize=True)
        indices = model.nearest_indices(x)
        usage = code_usage(indices, model.codebook_size)
        revived = revive_dead_codes(model, x, indices, generator) if cfg.revive_dead_codes else 0
        seconds = time.perf_counter() - start + init_s
        init_s = 0.0
        record({"epoch": epoch, "phase": "rq", **sums, **usage, "revived": revived, "seconds": seconds})
    if cfg.residual_whitening and cfg.levels > 1:
        record(refit_cell_frames(model, x, edges, cfg, generator, epoch=cfg.warmup_epochs + cfg.epochs + 1))
    model.eval()
    return result


def refit_cell_frames(
    model: RQVAE,
    x: torch.Tensor,
    edges: CoUsageEdges | None,
    cfg: RQVAEConfig,
    generator: torch.Generator,
    *,
    epoch: int,
) -> dict[str, Any]:
    """Re-cluster levels >= 1 of the trained model in whitened cell frames (ResidualQuantizer).

    Runs once, on the final encoder latents: the encoder, decoder and level-1 codebook are
    kept as trained (so is what the co-usage term pulled together); only how each cell is
    subdivided changes. Fitting frames during training was tried and is worse: the shared
    level-l codebook, updated by gradient through every cell's frame, loses half its
    perplexity. Returns the metrics row of this phase (losses measured, not trained)."""
    start = time.perf_counter()
    sample = torch.randperm(x.shape[0], generator=generator)[: cfg.kmeans_sample].sort().values.to(x.device)
    model.quantizer.init_kmeans(
        model.encode(x[sample]), iters=cfg.kmeans_iters, generator=generator, first_level=1, frames=True
    )
    with torch.no_grad():
        sums = train_epoch(model, x, edges, cfg, None, generator, quantize=True)
    usage = code_usage(model.nearest_indices(x), model.codebook_size)
    return {"epoch": epoch, "phase": "refit", **sums, **usage, "revived": 0, "seconds": time.perf_counter() - start}


def train_epoch(
    model: RQVAE,
    x: torch.Tensor,
    edges: CoUsageEdges | None,
    cfg: RQVAEConfig,
    optimiser: torch.optim.Optimizer | None,
    generator: torch.Generator,
    *,
    quantize: bool,
) -> dict[str, float]:
    """One pass over the tools; returns the batch-mean of each loss term.
    optimiser=None only measures the losses (call it under torch.no_grad)."""
    model.train()
    totals: dict[str, torch.Tensor] = {}
    batches = tool_edge_batches(x.shape[0], edges, cfg.batch_size, generator)
    for batch in batches:
        losses = batch_losses(model, x, batch, cfg, quantize=quantize)
        if optimiser is not None:
            optimiser.zero_grad(set_to_none=True)
            losses["loss_total"].backward()
            optimiser.step()
        for name, value in losses.items():
            totals[name] = totals.get(name, torch.zeros((), device=x.device)) + value.detach()
    # one device sync per epoch, not per batch
    return {name: float(value) / len(batches) for name, value in totals.items()}


@torch.no_grad()
def revive_dead_codes(model: RQVAE, x: torch.Tensor, indices: torch.Tensor, generator: torch.Generator) -> int:
    """Codewords no tool uses are moved onto the residuals of randomly drawn tools.

    A dead codeword gets no gradient and can never win again; re-seeding it where the
    data is (tools drawn uniformly, so crowded codes are split most often) raises
    utilisation and lowers collisions. A re-seeded cell has no tools yet, so its frame
    for the next level becomes the pooled one. Returns the number of codewords moved.
    """
    quantizer = model.quantizer
    residual = model.encode(x)
    revived = 0
    for level in range(quantizer.levels):
        prev = indices[:, level - 1] if level else None
        counts = torch.bincount(indices[:, level], minlength=quantizer.codebook_size)
        dead = (counts == 0).nonzero().squeeze(1)
        if len(dead):
            donors = torch.randperm(x.shape[0], generator=generator)[: len(dead)].to(x.device)
            dead = dead[: len(donors)]
            framed = quantizer.to_frame(residual[donors], level, prev[donors] if prev is not None else None)
            quantizer.codebooks[level, dead] = framed
            revived += len(dead)
        residual = residual - quantizer.codewords(level, indices[:, level], prev)
        if len(dead) and quantizer.whitened and level + 1 < quantizer.levels:
            quantizer.fit_level_frames(level + 1, residual, indices[:, level], cells=dead)
    return revived


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"embeddings must be (N >= 2, D), got shape {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or inf")
    return np.ascontiguousarray(embeddings, dtype=np.float32)


def _fmt(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, list):
            parts.append(f"{key}=[{', '.join(f'{v:.3g}' for v in value)}]")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)
