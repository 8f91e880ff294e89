"""A common probe: one frozen feature extractor for teacher finals, student outputs and real images.

Comparing sample sets needs one space that all of them can be put in. Two kinds of probe:

- `NetworkProbe`: a diffusion network (the teacher, usually) run once at a chosen sigma on
  x0 + sigma * eps with eps drawn from a seeded generator per row (EDM's noise model: a real image
  is *noised*, not scaled by sigma), one layer recorded and pooled as `embed` pools it. The class
  given to the network is the image's class. Same image, same row seed: same features.
- `ClassifierProbe`: a classifier's penultimate features (the demo's digit classifier; for
  ImageNet, any torchvision or timm model whose weights the user has, wrapped the same way).

Both take images as uint8 [N, H, W, C] (what `adapter.trace` returns) or float [N, C, H, W] in
[-1, 1], and return float32 features [N, D] on the CPU, in batches so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from visualizer.adapters.base import DiffusionAdapter
from visualizer.embeddings.pooling import pool_rows, resolve_pool
from visualizer.errors import UserError
from visualizer.trace.capture import capture

BATCH = 256
DEFAULT_SIGMA = 0.5          # network probes: the noise level when the spec names none (diversity_cli.PROBE_HELP)


def as_float_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, C] or float [N, C, H, W] in [-1, 1] -> float32 [N, C, H, W] in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim != 4:
        raise UserError(f"images: expected 4 dimensions [N, H, W, C] or [N, C, H, W], got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1
    x = x.float()
    if not torch.isfinite(x).all():
        raise UserError("images hold NaN or infinite values")
    return x


def row_noise(shape: Sequence[int], row_seeds: Sequence[int]) -> torch.Tensor:
    """Standard normal noise [N, *shape], row i drawn from its own generator seeded with row_seeds[i]."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s)))
                        for s in row_seeds])


@dataclass
class NetworkProbe:
    """Features of one layer of `adapter`'s network at noise level `sigma`, pooled with `pool`."""

    adapter: DiffusionAdapter
    layer: str
    sigma: float = 1.0
    pool: str = "auto"
    seed: int = 0                       # row i's noise comes from generator seed + i
    batch: int = BATCH
    resolved_pool: str = field(init=False)

    def __post_init__(self):
        if not np.isfinite(self.sigma) or self.sigma < 0:
            raise UserError(f"probe sigma must be a finite number >= 0, got {self.sigma}")
        shapes = self.adapter.layer_shapes()
        if self.layer not in shapes:
            raise UserError(f"probe layer {self.layer!r} is not a layer of this network")
        self.resolved_pool = resolve_pool(self.pool, shapes[self.layer][1:], self.layer)

    def describe(self) -> str:
        return (f"{self.adapter.role} network, layer {self.layer} ({self.resolved_pool} pooling), at sigma "
                f"{self.sigma:g} on x0 + sigma * eps (eps seeded per row from {self.seed})")

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor, labels: Sequence[int] | None) -> np.ndarray:
        x0 = as_float_images(images)
        n = len(x0)
        classes = None if labels is None else np.asarray(labels, np.int64).reshape(-1)
        if classes is not None and len(classes) != n:
            raise UserError(f"{len(classes)} labels for {n} images")
        reduce = lambda a: pool_rows(a, self.resolved_pool)       # noqa: E731
        out = []
        for lo in range(0, n, self.batch):
            hi = min(lo + self.batch, n)
            x = x0[lo:hi] + self.sigma * row_noise(x0.shape[1:], range(self.seed + lo, self.seed + hi))
            with capture(self.adapter.net, [self.layer], reduce=reduce) as cap:
                self.adapter.forward(x, self.sigma, None if classes is None else classes[lo:hi])
            out.append(cap.tensor(self.layer, 0).float().cpu().numpy())
        return np.concatenate(out)


@dataclass
class ClassifierProbe:
    """Penultimate features of a classifier: `features` maps float images [B, C, H, W] in [-1, 1] to [B, D]."""

    features: Callable[[torch.Tensor], torch.Tensor]
    name: str
    device: torch.device | str = "cpu"
    batch: int = BATCH

    def describe(self) -> str:
        return f"{self.name}: penultimate features"

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor, labels: Sequence[int] | None = None) -> np.ndarray:
        x = as_float_images(images)
        return np.concatenate([self.features(x[i:i + self.batch].to(self.device)).float().cpu().numpy()
                               for i in range(0, len(x), self.batch)])


def digit_probe(device: torch.device | str = "cpu") -> ClassifierProbe:
    """The demo's shipped digit classifier (96 features after global average pooling)."""
    from visualizer.digits.classifier import load_classifier

    net = load_classifier(device=device).eval()
    return ClassifierProbe(net.features, "the demo's digit classifier", device)


def parse_probe(text: str, teacher: DiffusionAdapter, is_demo: bool, device: torch.device | str | None = None):
    """The probe a command line names (`--probe`, shared by `diversity` and `embed`): `digits`, `auto`, or
    `network[:LAYER][@SIGMA]` on `teacher`; anything else is a UserError that says what is expected."""
    from visualizer.models.layer_names import BOTTLENECK

    if text == "digits" or (text == "auto" and is_demo):
        return digit_probe(device if device is not None else teacher.device)
    if text == "auto":
        text = "network"
    if not text.startswith("network"):
        raise UserError(f"--probe {text!r}: expected digits or network[:LAYER][@SIGMA]")
    rest = text[len("network"):]
    sigma = DEFAULT_SIGMA
    if "@" in rest:
        rest, _, s = rest.partition("@")
        try:
            sigma = float(s)
        except ValueError:
            raise UserError(f"--probe {text!r}: sigma {s!r} is not a number") from None
    if rest and not rest.startswith(":"):
        raise UserError(f"--probe {text!r}: expected digits or network[:LAYER][@SIGMA]")
    layer = rest[1:] or BOTTLENECK
    return NetworkProbe(teacher, layer, sigma=sigma)
