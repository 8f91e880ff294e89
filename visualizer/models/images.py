"""Model outputs in [-1, 1] to uint8 pixels, each model's own way, and to PIL images.

The two papers quantise differently (EDM adds 128, DMD2 adds 127.5, both truncate), and a pixel
off by one is a visible mismatch when teacher and student images are diffed, so each model keeps
its own conversion. Both return numpy uint8 [B, H, W, C] on the CPU: what PIL, the app and the
stores consume.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["dmd2_to_uint8", "edm_to_uint8", "to_pil"]


def _nchw(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
    # float16/bfloat16 cannot hold x * 127.5 + 128 to the pixel; compute those (and integers) in float32.
    return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)


def _to_uint8_hwc(pixels: torch.Tensor) -> np.ndarray:
    # .to(uint8) truncates toward zero; after clamping to [0, 255] that is the floor the references use.
    return pixels.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def edm_to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """EDM: clip(x * 127.5 + 128, 0, 255), truncated; x = -1 maps to 0 (0.5 truncated), x = 0 to 128."""
    return _to_uint8_hwc(_nchw(x) * 127.5 + 128)


def dmd2_to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """DMD2: clamp((x + 1) * 127.5, 0, 255), truncated; x = 0 maps to 127 (127.5 truncated)."""
    return _to_uint8_hwc((_nchw(x) + 1) * 127.5)


def to_pil(images: np.ndarray | torch.Tensor) -> list[Image.Image]:
    """uint8 [B, H, W, C] (C = 1 or 3) to PIL images: grey ('L') or 'RGB'."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 [B, H, W, 1 or 3], got {arr.dtype} {arr.shape}")
    if arr.shape[-1] == 1:
        return [Image.fromarray(np.ascontiguousarray(a[..., 0])) for a in arr]
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]
