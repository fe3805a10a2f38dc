"""Structured tool codes: collaborative RQ-VAE, Sinkhorn, unique code assignment.

The compute core needs only torch, numpy, safetensors and pydantic; importing this
package does not import sentence-transformers, storage or prefect (the `embed` and
`cousage` modules are imported explicitly by whoever needs them).
"""

from toolweaver.codes.assign import CodeAssignment, CollisionError, assign_codes, assign_new_codes
from toolweaver.codes.checkpoint import load_rqvae, save_rqvae
from toolweaver.codes.config import RQVAEConfig, derive_codebook_size
from toolweaver.codes.metrics import code_metrics
from toolweaver.codes.rqvae import RQVAE, CoUsageEdges, TrainedCodeModel, train_rqvae
from toolweaver.codes.sinkhorn import sinkhorn, sinkhorn_log
from toolweaver.codes.vocab import format_code, parse_code, vocabulary

__all__ = [
    "RQVAE",
    "CoUsageEdges",
    "CodeAssignment",
    "CollisionError",
    "RQVAEConfig",
    "TrainedCodeModel",
    "assign_codes",
    "assign_new_codes",
    "code_metrics",
    "derive_codebook_size",
    "format_code",
    "load_rqvae",
    "parse_code",
    "save_rqvae",
    "sinkhorn",
    "sinkhorn_log",
    "train_rqvae",
    "vocabulary",
]
