"""Configuration of the code model (the collaborative RQ-VAE) and its code assignment.

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

The default values (epochs, cell frames and their shrinkage, lambda_cousage) were
chosen by measurement on the real ~47k catalog: docs/results.md, "Tokenizer".
"""

from __future__ import annotations

import logging
import math
from typing import Literal

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
