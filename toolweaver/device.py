"""The device, resolved once at the entry point and passed down.

Every config carries a device *name* (`auto`, `cpu`, `cuda`, `cuda:1`, ...); the
command, flow or bench script that starts the work calls `resolve_device` once and
hands the resulting `torch.device` to the library. Asking for CUDA where there is none
is an error with a fix in its message, never a silent CPU fallback (torchtune's rule).
Precision follows the device (`TrainConfig.precision`, `RQVAEConfig.amp`: bf16 autocast
on CUDA, exact fp32 on the CPU).
"""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> the current CUDA device when present, else the CPU; `cpu`, `cuda`,
    `cuda:<i>` as given (`cuda` = the current CUDA device)."""
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {name!r} was asked for but CUDA is not available (torch {torch.__version__} sees "
                "no cuda device); use device 'cpu' or 'auto', or install a CUDA build of torch"
            )
        return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
    if device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:<index>'")
    return device
