"""Activation [B, C, H, W] -> something an eye can read: a heatmap [B, H, W] or an RGB image [B, 3, H, W].

Every function also takes one unbatched activation [C, H, W] and then returns one unbatched
result ([H, W] or [3, H, W]), as torch's own layers do. Results are float32 whatever the
activation's dtype, so float16/bfloat16 captures reduce without overflow in the squares. They run
on the activation's device, which lets `capture(keep='reduced')` send only the heatmap to the CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from visualizer.errors import UserError

Reduction = Callable[..., torch.Tensor]


def _per_sample(fn: Reduction) -> Reduction:
    """Lets `fn` see float32 [B, C, H, W] only, and gives unbatched input an unbatched result."""

    @functools.wraps(fn)
    def wrapper(a: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if a.ndim not in (3, 4):
            raise ValueError(f"{fn.__name__}: expected an activation [B, C, H, W] or [C, H, W], got {tuple(a.shape)}")
        out = fn(a.detach().unsqueeze(0).float() if a.ndim == 3 else a.detach().float(), *args, **kwargs)
        return out[0] if a.ndim == 3 else out

    return wrapper


@_per_sample
def channel_l2(a: torch.Tensor) -> torch.Tensor:
    """Per-position L2 norm over channels: where the layer is active at all, whatever the sign."""
    return torch.linalg.vector_norm(a, dim=1)


@_per_sample
def mean_abs(a: torch.Tensor) -> torch.Tensor:
    """Per-position mean |a| over channels: like `l2` but not dominated by a few large channels."""
    return a.abs().mean(1)


@_per_sample
def single_channel(a: torch.Tensor, index: int) -> torch.Tensor:
    """One channel as it is (signed); negative indices count from the last channel."""
    c = a.shape[1]
    if not -c <= index < c:
        raise UserError(f"channel {index} does not exist: this layer has {c} channels (0..{c - 1})")
    return a[:, index]


@_per_sample
def topk_energy(a: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Mean |a| over the k channels with the most energy sum(a^2) over space, chosen per sample.

    Most channels of a block are quiet for a given image; averaging only the loud ones shows their
    pattern instead of washing it out. k larger than the channel count means all channels.
    """
    if k < 1:
        raise UserError(f"topk needs k >= 1, got {k}")
    _, c, h, w = a.shape
    top = a.pow(2).sum((2, 3)).topk(min(k, c), dim=1).indices
    return a.gather(1, top[:, :, None, None].expand(-1, -1, h, w)).abs().mean(1)


@_per_sample
def pca_rgb(a: torch.Tensor) -> torch.Tensor:
    """The first three principal components of the channels (positions as examples) as R, G, B in [0, 1].

    Each component's sign is fixed so that its largest-magnitude channel loading is positive, so the
    colours do not flip between runs, devices or SVD back-ends. Components that do not exist (fewer
    than 3 channels or positions) or carry no variance are 0.
    """
    b, c, h, w = a.shape
    x = a.flatten(2).transpose(1, 2)                        # [B, HW, C]: positions are the examples
    x = x - x.mean(1, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)     # vh [B, r, C], r = min(HW, C)
    n = min(3, vh.shape[1])
    v = vh[:, :n]
    biggest = v.gather(2, v.abs().argmax(2, keepdim=True))  # [B, n, 1]
    v = v * torch.where(biggest < 0, -1.0, 1.0)
    scores = x @ v.transpose(1, 2)                          # [B, HW, n]
    lo, hi = scores.amin(1, keepdim=True), scores.amax(1, keepdim=True)
    # Rank tolerance as in matrix_rank: below it a "component" is rounding noise, not structure.
    real = s[:, None, :n] > s[:, None, :1] * max(h * w, c) * torch.finfo(s.dtype).eps
    scores = torch.where(real & (hi > lo), (scores - lo) / (hi - lo).clamp_min(1e-30), 0.0)
    rgb = torch.zeros(b, 3, h * w, device=a.device)
    rgb[:, :n] = scores.transpose(1, 2)
    return rgb.reshape(b, 3, h, w)


REDUCTIONS: dict[str, Reduction] = {
    "l2": channel_l2,
    "mean_abs": mean_abs,
    "channel": single_channel,
    "topk": topk_energy,
    "pca_rgb": pca_rgb,
}


# Elementwise work and one sum over channels: a fast path may compile these into its graph (models.acceleration),
# so a click copies maps, not activations. The others (an SVD, a top-k, an index) run after the graph.
IN_GRAPH = frozenset({channel_l2, mean_abs})


def get_reduction(name: str) -> Reduction:
    if name not in REDUCTIONS:
        raise UserError(f"unknown reduction {name!r}; valid names: {', '.join(REDUCTIONS)}")
    return REDUCTIONS[name]


def reduce(name: str, a: torch.Tensor, **kwargs) -> torch.Tensor:
    """`REDUCTIONS[name](a, **kwargs)`, e.g. reduce('channel', a, index=5); unknown names are a UserError."""
    return get_reduction(name)(a, **kwargs)


PARAMETRIC = {"channel": ("index", 0), "topk": ("k", 8)}   # reductions that take one integer


def reduction_spec(name: str, value: int | None = None) -> str:
    """'l2', 'topk:8', 'channel:5': a reduction and its one integer, as one hashable string."""
    if name not in REDUCTIONS:
        raise UserError(f"unknown reduction {name!r}; valid names: {', '.join(REDUCTIONS)}")
    if name in PARAMETRIC:
        return f"{name}:{int(PARAMETRIC[name][1] if value is None else value)}"
    return name


def parse_reduction(spec: str) -> Reduction:
    """The function a `reduction_spec` string names, with its integer bound."""
    name, _, arg = spec.partition(":")
    fn = get_reduction(name)
    if name in PARAMETRIC:
        return functools.partial(fn, **{PARAMETRIC[name][0]: int(arg or PARAMETRIC[name][1])})
    return fn
