"""Configuration of the collaborative RQ-VAE tokenizer and its code assignment.

One frozen pydantic model; defaults live here and nowhere else. Sizes are chosen for
the ~47k-tool ToolBench catalog with 384-d MiniLM embeddings and the 2-core CPU
(see bench/tokenize.py); the paper's own setting is noted next to each field.

Codebook size rule (`codebook_size=None`): the smallest power of two K with
K**levels >= 16 * n_tools, at least 16. The 16x head-room keeps the expected number of
nearest-code collisions low and leaves free last-level slots for collision resolution.
For 47k tools and L=2 this gives K=1024, the paper's choice (2,048 added tokens).

Training schedule: `warmup_epochs` of plain autoencoder, then k-means initialisation of
the codebooks on the warmed-up latents, then `epochs` with quantisation, re-seeding dead
codewords after each epoch. Both the warm-up and the re-seeding exist because without
them the codes collapse onto a few codewords in the first epochs (measured: 99%
collisions), which is what forces the paper's code into thousands of epochs.

epochs=15: on a 47k-tool synthetic stand-in (bench/tokenize.py --synthetic 47000) the
reconstruction loss plateaus within ~8 quantised epochs (0.3408 at 8, 0.34+-0.002 up to 20)
while the nearest-code collision rate only creeps up (0.164 right after k-means, 0.196
at 20), so more epochs buy nothing; the paper's 5,000 are not needed with the warm-up.

Cell frames (residual_whitening=True, whitening_shrinkage=5): after training, levels >= 2
are re-clustered on the final latents in the PCA-whitened frame of each tool's level-1
cell (rqvae.ResidualQuantizer, refit_cell_frames). On the real ~47k catalog below this
lowers the first-pass collision rate from 0.25 to ~0.09 at no cost in recall@10 of the
decoded latents. The shrinkage trades the two: on one trained model (lambda=0.04, seed 0)
shrinkage 8 / 6 / 5 / 4 gave collision rates 0.102 / 0.096 / 0.093 / 0.089 and recall@10
0.276 / 0.271 / 0.271 / 0.259. Fitting the frames before or during training was worse
(0.15-0.23: the shared codebook, updated through every cell's frame, loses perplexity),
and so was fitting them on a 16k-row sample (0.14 vs 0.09 on all rows): hence
kmeans_sample=65536, which covers the whole 47k catalog.

lambda_cousage=0.04 (with the co-usage term compared on the quantised latents): on the
real ~47k catalog (46,992 MiniLM-embedded ToolEnv2404 + StableToolBench + ToolLens APIs,
2,079 ToolLens + StableToolBench co-usage edges, L=2, K=1024, 3 seeds,
bench/tokenize.py --seeds 0,1,2 --lambdas 0,0.04, with the cell frames above) first-code
alignment of co-used pairs rose from 0.196+-0.012 (lambda=0) to 0.240+-0.010 (3.6 std)
while recall@10 of the decoded latents fell 0.8% relative (0.2684 -> 0.2663). Before the
cell frames existed, lambda=0.1 gave less alignment than 0.04 at a 9.8% recall cost,
and lambda=0.02 about half the gain. On ToolLens alone (every tool co-used) lambda=1
cost 41% recall.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

CAPACITY_HEADROOM = 16
MIN_CODEBOOK_SIZE = 16


class RQVAEConfig(BaseModel):
    """Collaborative RQ-VAE: architecture, loss weights, training and assignment knobs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # architecture (paper: L=2, K=1024, widths 2048..64, latent 32)
    levels: int = Field(2, ge=1, le=8, description="L: code length (levels of residual quantisation)")
    codebook_size: int | None = Field(
        None, ge=2, description="K per level; None -> derived from the catalog size (module docstring)"
    )
    encoder_widths: tuple[int, ...] = Field(
        (256,), description="hidden widths of the MLP encoder; the decoder mirrors them"
    )
    latent_dim: int = Field(32, ge=1, description="dimension of the quantised latent")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    residual_whitening: bool = Field(
        True,
        description="levels >= 2 quantise the residual in the PCA-whitened frame of its previous-level "
        "cell (rqvae.ResidualQuantizer; module docstring)",
    )
    whitening_shrinkage: float = Field(
        5.0, ge=0.0, description="pseudo-count of rows pulling each cell's residual covariance to the pooled one"
    )

    # loss (paper: beta=0.25)
    beta: float = Field(0.25, ge=0.0, description="commitment weight")
    lambda_cousage: float = Field(
        0.04,
        ge=0.0,
        description="weight of the co-usage term (A-weighted mean ||z_u - z_v||^2 of co-used "
        "pairs over the latent spread; rqvae.py); 0 disables it",
    )
    cousage_on: Literal["quantized", "encoder"] = Field(
        "quantized",
        description="latents the co-usage term compares: straight-through quantised latents "
        "(value = codes, gradient reaches the encoder) or the raw encoder latents",
    )

    # training (paper: 5,000 epochs at batch 5,096 on an A100)
    warmup_epochs: int = Field(
        2, ge=0, description="autoencoder-only epochs before the k-means codebook initialisation"
    )
    epochs: int = Field(15, ge=1, description="epochs with quantisation (after the warm-up)")
    batch_size: int = Field(512, ge=2, description="tools per step (co-used endpoints come on top)")
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    seed: int = 0
    kmeans_iters: int = Field(10, ge=1, description="Lloyd iterations of the codebook initialisation")
    kmeans_sample: int = Field(
        65536, ge=2, description="rows sampled for the k-means initialisation and the final cell-frame refit"
    )
    revive_dead_codes: bool = Field(
        True, description="after each epoch, move unused codewords onto residuals of random tools"
    )
    sinkhorn_last_level: bool = Field(
        False, description="balance last-level code usage with Sinkhorn during training (paper: on)"
    )
    sinkhorn_epsilon: float = Field(0.003, gt=0.0, description="entropic regularisation of training Sinkhorn")
    sinkhorn_iters: int = Field(50, ge=1, description="Sinkhorn iterations per training batch")

    # collision resolution at assignment time
    resolve_epsilon: float = Field(0.05, gt=0.0, description="Sinkhorn epsilon of the first resolution round")
    resolve_rounds: int = Field(8, ge=0, description="Sinkhorn rounds before the deterministic fallback")

    # runtime
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="on CUDA: TF32 matmuls and bf16 autocast for the MLPs")

    @model_validator(mode="after")
    def _check(self) -> RQVAEConfig:
        if not self.encoder_widths or any(w < 1 for w in self.encoder_widths):
            raise ValueError(f"encoder_widths must be non-empty positive ints, got {self.encoder_widths}")
        if self.sinkhorn_last_level and self.levels < 1:
            raise ValueError("sinkhorn_last_level needs at least one level")
        return self

    def resolved(self, n_tools: int) -> RQVAEConfig:
        """This config with `codebook_size` filled in for a catalog of `n_tools`."""
        if self.codebook_size is not None:
            return self
        return self.model_copy(update={"codebook_size": derive_codebook_size(n_tools, self.levels)})


def derive_codebook_size(n_tools: int, levels: int) -> int:
    """Smallest power of two K >= 16 with K**levels >= 16 * n_tools."""
    if n_tools < 1:
        raise ValueError(f"n_tools must be >= 1, got {n_tools}")
    need = CAPACITY_HEADROOM * n_tools
    k = max(MIN_CODEBOOK_SIZE, 2 ** math.ceil(math.log2(math.ceil(need ** (1.0 / levels)))))
    while k**levels < need:  # guards float rounding in the root
        k *= 2
    return k


def resolve_device(name: str) -> torch.device:
    """ "auto" | "cpu" | "cuda" -> torch.device; resolved once, at the entry point.

    "cuda" without a CUDA device is an error, never a silent CPU fallback.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "device='cuda' was requested but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}); use device='cpu' or 'auto', or install a CUDA build of torch"
            )
        return torch.device("cuda", torch.cuda.current_device())
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; expected 'auto', 'cpu' or 'cuda'")
