"""Edits: what a trace writes into a layer's output while the sampler runs.

Every edit is one affine map of the block output y, restricted to a mask M over channels and
positions (1 where the edit acts):

    replace with v      y' = (1 - M) y + M v
    mean-ablate         y' = (1 - M) y + M mu          (mu: a given mean, or the mean over a set of seeds)
    zero                y' = (1 - M) y
    scale by f          y' = (1 - M + M f) y
    add direction d     y' = y + M a d

so it is a pair (scale, shift) with y' = scale * y + shift, and several edits of one layer compose
into one pair. That form is what lets the fast path compile edits into its CUDA graph: the pair is
an input of the graph, so an edited call replays a graph like an unedited one. An edit given as an
arbitrary function (`Edit.function`) cannot be put in that form: the fast path runs that call eagerly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from visualizer.errors import UserError
from visualizer.models.sampling import Evaluation
from visualizer.trace.steps import SigmaRange

OPS = ("replace", "mean", "zero", "scale", "add", "function")
Value = torch.Tensor | float | Mapping[int, torch.Tensor]


@dataclass(frozen=True, eq=False)
class Edit:
    """One edit of one layer; build it with the class methods (`Edit.zero("midblock", channels=[3])`).

    `steps`: 'all', a list of sampler step indices, or a `SigmaRange` (each evaluation's own sigma).
    `value`: a tensor broadcast to the layer's output [B, C, H, W] ([C] means one value per channel),
    a number, or {step: tensor}: activations as a trace records them, at the first evaluation of
    each step, which is where such an edit applies (not at Heun's correction, which sees another
    sigma). `channels` and `region` ([H, W], nonzero = inside) restrict it.
    """

    layer: str
    op: str
    value: Value | Callable[[torch.Tensor], torch.Tensor] | None = None
    channels: tuple[int, ...] | None = None
    region: torch.Tensor | None = None
    steps: str | tuple[int, ...] | SigmaRange = "all"
    seeds: tuple[int, ...] | None = None      # mean-ablate: seeds to average over (resolved by adapter.trace)

    def __post_init__(self):
        if self.op not in OPS:
            raise UserError(f"edit of {self.layer}: unknown operation {self.op!r}; one of {', '.join(OPS)}")
        steps = self.steps
        if not (steps == "all" or isinstance(steps, SigmaRange)
                or (isinstance(steps, tuple) and all(isinstance(s, int) for s in steps))):
            raise UserError(f"edit of {self.layer}: steps must be 'all', step indices or a SigmaRange, got {steps!r}")
        if self.op == "mean" and self.value is None and not self.seeds:
            raise UserError(f"mean-ablation of {self.layer} needs a mean (value=) or seeds to compute it from")

    # -- constructors ---------------------------------------------------------------------------------
    @classmethod
    def replace(cls, layer: str, value: Value, **where) -> Edit:
        """Replace the output (where masked) by `value`: another model's or another seed's activation."""
        return cls(layer, "replace", value, **_where(where))

    @classmethod
    def mean_ablate(cls, layer: str, mean: Value | None = None, *, seeds: Sequence[int] | None = None,
                    **where) -> Edit:
        """Replace by a mean activation: `mean` given, or the per-step mean over `seeds` (same class, same sampler)."""
        return cls(layer, "mean", mean, seeds=None if seeds is None else tuple(int(s) for s in seeds),
                   **_where(where))

    @classmethod
    def zero(cls, layer: str, **where) -> Edit:
        """Zero the output, or chosen `channels` of it, or a `region` of it."""
        return cls(layer, "zero", None, **_where(where))

    @classmethod
    def scale(cls, layer: str, factor: float | torch.Tensor, **where) -> Edit:
        return cls(layer, "scale", factor, **_where(where))

    @classmethod
    def add(cls, layer: str, direction: Value, alpha: float = 1.0, **where) -> Edit:
        """Steer: add `alpha` * `direction` (e.g. the difference of two classes' mean activations)."""
        if isinstance(direction, Mapping):
            direction = {k: alpha * torch.as_tensor(v) for k, v in direction.items()}
        else:
            direction = alpha * torch.as_tensor(direction)
        return cls(layer, "add", direction, **_where(where))

    @classmethod
    def function(cls, layer: str, fn: Callable[[torch.Tensor], torch.Tensor], **where) -> Edit:
        """Any function of the output; runs eagerly (the fast path cannot compile an arbitrary function)."""
        return cls(layer, "function", fn, **_where(where))

    # -- where and when -------------------------------------------------------------------------------
    def applies(self, ev: Evaluation) -> bool:
        if isinstance(self.value, Mapping) and (ev.step not in self.value or ev.stage == "heun"):
            return False
        if self.steps == "all":
            return True
        if isinstance(self.steps, SigmaRange):
            return ev.sigma in self.steps
        return ev.step in self.steps

    @property
    def affine_form(self) -> bool:
        return self.op != "function"

    def affine(self, shape: Sequence[int], step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) float32 on `device` with y' = scale * y + shift, for outputs of `shape` [B, C, H, W]."""
        _, c, h, w = shape
        mask = self.mask(c, h, w, device)
        if self.op == "zero":
            return 1 - mask, torch.zeros((), device=device)
        value = self.value[step] if isinstance(self.value, Mapping) else self.value
        value = self._fit(torch.as_tensor(value, dtype=torch.float32, device=device), shape)
        if self.op in ("replace", "mean"):
            return 1 - mask, mask * value
        if self.op == "scale":
            return 1 - mask + mask * value, torch.zeros((), device=device)
        return torch.ones((), device=device), mask * value    # add

    def mask(self, c: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        """[1, C, H, W] float32: 1 where the edit acts."""
        mask = torch.ones(1, c, h, w, device=device)
        if self.channels is not None:
            bad = [i for i in self.channels if not -c <= i < c]
            if bad:
                raise UserError(f"edit of {self.layer}: channel(s) {bad} do not exist (the layer has {c}: 0..{c - 1})")
            keep = torch.zeros(c, device=device)
            keep[list(self.channels)] = 1
            mask = mask * keep[None, :, None, None]
        if self.region is not None:
            region = torch.as_tensor(self.region, device=device)
            if tuple(region.shape) != (h, w):
                raise UserError(f"edit of {self.layer}: region is {tuple(region.shape)}, the layer is {h}x{w}")
            mask = mask * (region != 0).float()[None, None]
        return mask

    def _fit(self, value: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The value as a tensor that broadcasts to `shape`; [C] means one value per channel."""
        c = shape[1]
        if value.ndim == 1 and value.shape[0] == c:
            value = value[:, None, None]
        try:
            fits = value.ndim <= 4 and torch.broadcast_shapes(value.shape, tuple(shape)) == tuple(shape)
        except RuntimeError:
            fits = False
        if not fits:
            raise UserError(f"edit of {self.layer}: value of shape {tuple(value.shape)} does not fit the layer's "
                            f"output {tuple(shape)} (give [B, C, H, W], [C, H, W], [C] or a number)")
        return value


def _where(kw: dict) -> dict:
    unknown = set(kw) - {"channels", "region", "steps"}
    if unknown:
        raise TypeError(f"unknown edit argument(s): {', '.join(sorted(unknown))}")
    out = dict(kw)
    if out.get("channels") is not None:
        out["channels"] = tuple(int(c) for c in out["channels"])
    steps = out.get("steps", "all")
    if not (steps == "all" or isinstance(steps, SigmaRange)):
        out["steps"] = tuple(int(s) for s in ([steps] if isinstance(steps, int) else steps))
    return out


def compose(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One (scale, shift) for affine maps applied in order: s2 (s1 y + b1) + b2 = (s1 s2) y + (s2 b1 + b2)."""
    scale, shift = pairs[0]
    for s, b in pairs[1:]:
        scale, shift = scale * s, shift * s + b
    return scale, shift

