"""RQ-VAE checkpoints: `model.safetensors` (the whole state_dict, buffers included) and
`config.json` (the resolved RQVAEConfig plus the input dimension). No pickle anywhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from toolweaver.codes.config import RQVAEConfig
from toolweaver.codes.rqvae import RQVAE

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


def save_rqvae(model: RQVAE, cfg: RQVAEConfig, folder: str | Path) -> Path:
    """Write weights + config into `folder` (created); returns the folder."""
    if cfg.codebook_size != model.codebook_size or cfg.levels != model.levels:
        raise ValueError(
            f"cfg (L={cfg.levels}, K={cfg.codebook_size}) does not describe the model "
            f"(L={model.levels}, K={model.codebook_size}); pass the resolved config (TrainedCodeModel.cfg)"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": str(FORMAT_VERSION)})
    meta = {"format": FORMAT_VERSION, "input_dim": model.input_dim, "config": cfg.model_dump(mode="json")}
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("saved RQ-VAE to %s", folder)
    return folder


def load_rqvae(folder: str | Path, *, device: torch.device | str = "cpu") -> tuple[RQVAE, RQVAEConfig]:
    """Read a folder written by save_rqvae -> (model in eval mode on `device`, config)."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: not an RQ-VAE checkpoint folder (see save_rqvae)")
    meta = json.loads(config_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{config_path}: checkpoint format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    # checkpoints written before residual whitening existed were trained without it
    cfg = RQVAEConfig.model_validate({"residual_whitening": False, **meta["config"]})
    model = RQVAE(int(meta["input_dim"]), cfg)
    model.load_state_dict(load_file(str(weights_path)), strict=True)
    return model.to(device).eval(), cfg
