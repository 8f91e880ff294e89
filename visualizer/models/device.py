"""Where the models run: CUDA, then Apple MPS, then the CPU, unless the user says otherwise."""

from __future__ import annotations

import torch


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """MPS lacks float64 and fp16 GroupNorm paths we rely on, so everything there stays float32."""
    if requested not in (None, "auto"):
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {requested!r} requested but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def sampler_dtype(device: torch.device) -> torch.dtype:
    """The EDM sampler integrates in float64; MPS has no float64, so it integrates in float32 there."""
    return torch.float32 if device.type == "mps" else torch.float64
