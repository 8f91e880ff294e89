"""How alike two activations of the same layer are for one sample: teacher vs student, one seed vs another.

Inputs are [B, C, H, W] (or one unbatched [C, H, W]); per-sample scores come back as float64 [B]
(a 0-d tensor for unbatched input). Cosine similarity compares the two tensors element by element,
so it needs equal shapes; linear CKA compares the *representations* (which positions look alike to
the layer), so it ignores rotations and scale of the channel space and works across widths.

One sample's score is descriptive, never a conclusion: uncentred cosine is dominated by the mean
activation every sample shares, and CKA with spatial positions as examples is inflated by the
layer's shape (two independent Gaussian tensors of 96x8x8 score about 0.6). So `sample_scores`
reports centred cosine (each model's mean activation over reference samples removed) and CKA, each
beside two baselines: independent noise of the layer's shape, and the same model on a different
seed of the same class. Comparisons over many samples live in `visualizer.metrics.cka`.
"""

from __future__ import annotations

import copy
import functools
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


def centred_cosine(a: torch.Tensor, b: torch.Tensor, mean_a: torch.Tensor, mean_b: torch.Tensor) -> torch.Tensor:
    """Cosine of (a - mean_a) and (b - mean_b) per sample: [B] float64 (0-d for unbatched input).

    The means are each model's average activation of that layer ([C, H, W], e.g. from
    `reference_means`), so what every sample shares does not count as agreement.
    """
    _same_shape(a, b, "centred_cosine")
    return cosine_similarity(a.double() - mean_a.to(a.device).double(), b.double() - mean_b.to(a.device).double())


def noise_baseline(shape: tuple[int, ...] | torch.Size, draws: int = 32, seed: int = 0,
                   confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """What two independent standard-normal tensors of one layer's shape [C, H, W] score.

    {'cosine_centred' | 'cka': {'mean', 'lo', 'hi'}} over `draws` pairs (quantiles at `confidence`).
    Centred cosine of noise is about 0 +- 1/sqrt(C H W); spatial CKA is far from 0 when channels
    outnumber positions.
    """
    return copy.deepcopy(_noise_baseline(tuple(int(s) for s in shape), int(draws), int(seed), float(confidence)))


@functools.lru_cache(maxsize=256)
def _noise_baseline(shape: tuple[int, ...], draws: int, seed: int, confidence: float) -> dict[str, dict[str, float]]:
    """Computed once per shape and draw settings (deterministic: it is a function of them only), so a page
    drawing every layer's baselines at each click does not redraw the same noise (0.3 s on the demo's CPU)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn((draws, *shape), generator=g, dtype=torch.float64)
    b = torch.randn((draws, *shape), generator=g, dtype=torch.float64)
    zero = torch.zeros(tuple(shape), dtype=torch.float64)
    return {"cosine_centred": _spread(centred_cosine(a, b, zero, zero), confidence),
            "cka": _spread(linear_cka(a, b), confidence)}


def _spread(values: torch.Tensor, confidence: float) -> dict[str, float]:
    alpha = (1 - confidence) / 2
    v = values.double()
    return {"mean": v.mean().item(), "lo": v.quantile(alpha).item(), "hi": v.quantile(1 - alpha).item()}


def _pair(a: torch.Tensor, b: torch.Tensor, mean_a: torch.Tensor, mean_b: torch.Tensor) -> dict[str, float]:
    cos = centred_cosine(a, b, mean_a, mean_b).item() if a.shape == b.shape else math.nan
    return {"cosine_centred": cos, "cka": linear_cka(a, b).item()}


def sample_scores(
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    mean_a: Mapping[str, torch.Tensor],
    mean_b: Mapping[str, torch.Tensor],
    other_a: Mapping[str, torch.Tensor] | None = None,
    other_b: Mapping[str, torch.Tensor] | None = None,
    *,
    noise_draws: int = 32,
    confidence: float = 0.95,
) -> dict[str, dict]:
    """One sample, every layer: centred cosine and spatial CKA of a vs b, each with its baselines.

    `a`, `b`: {layer: [C, H, W]} (models A and B on the same seed and class); `mean_a`, `mean_b`:
    each model's mean activation per layer; `other_a`, `other_b`: the same models on a different seed
    of the same class. Returns {layer: {'cosine_centred', 'cka', 'baselines': {'noise': {metric:
    {mean, lo, hi}}, 'other_seed_a': {metric: value}, 'other_seed_b': ...}}} in a's layer order;
    `label` says what it is: one sample, descriptive.
    """
    out, noise = {}, {}
    for name, x in a.items():
        if name not in b:
            continue
        y = b[name]
        shape = tuple(x.shape[-3:])
        if shape not in noise:
            noise[shape] = noise_baseline(shape, noise_draws, confidence=confidence)
        baselines = {"noise": noise[shape]}
        if other_a is not None and name in other_a:
            baselines["other_seed_a"] = _pair(x, other_a[name], mean_a[name], mean_a[name])
        if other_b is not None and name in other_b:
            baselines["other_seed_b"] = _pair(y, other_b[name], mean_b[name], mean_b[name])
        out[name] = {**_pair(x, y, mean_a[name], mean_b[name]), "baselines": baselines,
                     "shape": list(shape), "label": "one sample: descriptive"}
    return out


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
