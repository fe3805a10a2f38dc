"""The one device rule: `auto` picks CUDA when present; CUDA without it is an error."""

from __future__ import annotations

import pytest
import torch

from toolweaver.device import resolve_device


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_device("cuda:0")


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported device 'mps'"):
        resolve_device("mps")
