"""How alike two activations of the same layer are: teacher vs student, one seed vs another, step vs step.

Inputs are [B, C, H, W] (or one unbatched [C, H, W]); per-sample scores come back as float64 [B]
(a 0-d tensor for unbatched input). Cosine similarity compares the two tensors element by element,
so it needs equal shapes; linear CKA compares the *representations* (which positions look alike to
the layer), so it ignores rotations and scale of the channel space and works across widths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from visualizer.errors import UserError
from visualizer.trace.capture import Capture
from visualizer.trace.reductions import Reduction, get_reduction


def _batched(a: torch.Tensor) -> torch.Tensor:
    if a.ndim == 3:
        return a.unsqueeze(0)
    if a.ndim == 4:
        return a
    raise ValueError(f"expected an activation [B, C, H, W] or [C, H, W], got {tuple(a.shape)}")


def _same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise UserError(f"{what} needs activations of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def difference_map(a: torch.Tensor, b: torch.Tensor, reduction: str | Reduction = "l2", **kwargs) -> torch.Tensor:
    """The reduction (default per-position L2 over channels) of a - b: where the two disagree."""
    _same_shape(a, b, "difference_map")
    fn = get_reduction(reduction) if isinstance(reduction, str) else reduction
    return fn(a.float() - b.to(a.device).float(), **kwargs)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of the angle between the flattened activations of each sample: [B] float64 in [-1, 1]."""
    _same_shape(a, b, "cosine_similarity")
    x, y = _batched(a).flatten(1).double(), _batched(b).to(a.device).flatten(1).double()
    out = F.cosine_similarity(x, y, dim=1)
    return out[0] if a.ndim == 3 else out


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Linear CKA per sample with spatial positions as examples: [B] float64 in [0, 1].

    X = a as [H*W, C_a] and Y = b as [H*W, C_b], both centred over positions;
    CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F). Where positions are fewer than channels (8x8
    layers with 768 channels) the same value is computed from the smaller [H*W, H*W] Gram matrices.
    NaN where either activation is constant over space.
    """
    x, y = _batched(a), _batched(b).to(a.device)
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise UserError(f"linear_cka needs the same batch and spatial size, got {tuple(a.shape)} and {tuple(b.shape)}")
    x = x.flatten(2).transpose(1, 2).double()        # [B, HW, C_a]
    y = y.flatten(2).transpose(1, 2).double()        # [B, HW, C_b]
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    if x.shape[1] < max(x.shape[2], y.shape[2]):
        gx, gy = x @ x.transpose(1, 2), y @ y.transpose(1, 2)
        cross = (gx * gy).sum((1, 2))                # <XX^T, YY^T>_F = ||Y^T X||_F^2
    else:
        gx, gy = x.transpose(1, 2) @ x, y.transpose(1, 2) @ y
        cross = (y.transpose(1, 2) @ x).pow(2).sum((1, 2))
    out = cross / (torch.linalg.matrix_norm(gx) * torch.linalg.matrix_norm(gy))
    return out[0] if a.ndim == 3 else out


def _layer_tensor(source: Capture | Mapping[str, torch.Tensor], name: str, step: int) -> torch.Tensor:
    if isinstance(source, Capture):
        if source.keep != "full":
            raise UserError("compare_all needs full activations; capture with keep='full' (no reduce)")
        return source.tensor(name, step)
    return source[name]


def compare_all(
    capture_a: Capture | Mapping[str, torch.Tensor],
    capture_b: Capture | Mapping[str, torch.Tensor],
    step: int = 0,
) -> dict[str, dict[str, float]]:
    """{layer: {'cosine': float, 'cka': float}} for every layer both hold, in capture_a's order.

    Scores are means over the batch. `step` picks the network evaluation of each capture; the
    default 0 is the first call, the one a teacher and its one-step student share the input of.
    Plain {layer: tensor} mappings work too. Cosine is NaN where the shapes differ.
    """
    out = {}
    for name in capture_a:
        if name not in capture_b:
            continue
        a, b = _layer_tensor(capture_a, name, step), _layer_tensor(capture_b, name, step)
        cosine = cosine_similarity(a, b).mean().item() if a.shape == b.shape else math.nan
        out[name] = {"cosine": cosine, "cka": linear_cka(a, b).mean().item()}
    return out
