"""Spatial pooling of a layer's output into one feature row per sample, before it is stored.

`auto` keeps a layer whole when it has at most `MAX_FEATURES` values per sample and otherwise
average-pools with the smallest power-of-two window that brings it to at most `MAX_FEATURES`
(ImageNet-64 bottleneck 768x8x8 -> avg4 -> 768x2x2 = 3072 features; a 192x64x64 layer -> avg16 ->
3072). Average pooling keeps the channel identity and the coarse layout, which is what separates
samples at this resolution, while bounding the store at 8 KB per sample and layer in float16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from visualizer.embeddings.spec import MAX_FEATURES
from visualizer.errors import UserError


def resolve_pool(pool: str, shape: Sequence[int], layer: str) -> str:
    """The concrete pooling (`none`, `mean`, `avgK`) for one layer's per-sample shape (C, H, W) or (C,)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        if pool in ("auto", "none", "mean"):
            return "none"
        raise UserError(f"--pool {pool}: layer {layer!r} has shape {shape}, which has no spatial dimensions")
    c, h, w = shape
    if pool == "auto":
        k = 1
        while c * (h // k) * (w // k) > MAX_FEATURES and h % (2 * k) == 0 and w % (2 * k) == 0:
            k *= 2
        if c * (h // k) * (w // k) > MAX_FEATURES:
            return "mean"
        return "none" if k == 1 else f"avg{k}"
    if pool.startswith("avg"):
        k = int(pool[3:])
        if h % k or w % k:
            raise UserError(f"--pool {pool}: layer {layer!r} is {h}x{w}, not divisible by {k}")
    return pool


def pooled_features(pool: str, shape: Sequence[int]) -> int:
    shape = tuple(int(s) for s in shape)
    if pool == "none" or len(shape) != 3:
        return int(torch.Size(shape).numel())
    c, h, w = shape
    if pool == "mean":
        return c
    k = int(pool[3:])
    return c * (h // k) * (w // k)


def pool_rows(x: torch.Tensor, pool: str) -> torch.Tensor:
    """[B, C, H, W] (or [B, ...]) -> float32 [B, features], computed where x lives (the GPU, usually)."""
    x = x.detach().float()
    if x.ndim == 4 and pool == "mean":
        x = x.mean(dim=(2, 3))
    elif x.ndim == 4 and pool.startswith("avg"):
        x = F.avg_pool2d(x, int(pool[3:]))
    return x.flatten(1)
