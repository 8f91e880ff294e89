"""Coloured handwritten digits at 32x32: the small dataset the embedded demo's teacher and student learn.

The shapes are scikit-learn's copy of the UCI "Optical Recognition of Handwritten Digits" set
(Alpaydin & Kaynak 1998, CC BY 4.0): 1797 greyscale 8x8 digits, 10 classes. They are stored in
``visualizer/assets/digits/digits.npz`` (uint8 0..16 plus labels, about 45 KB), so training needs only
torch and numpy, not scikit-learn.

Why this colouring: class must be carried by the shape alone, so colour is a nuisance variable that
is independent of the class. Each rendering draws the digit in a bright, saturated random hue over
a dark linear gradient whose hue sits roughly opposite on the colour wheel (random direction). That
makes every image contrasting and pleasant to look at, gives the networks an unlimited supply of
distinct images from few shapes, and leaves a clear split between "what" (shape) and "how"
(colour, pose) for the visualizer to show. The pose is jittered a little too (rotation up to 10
degrees, shifts up to 2 pixels), so the model learns smooth digits rather than 1797 fixed bitmaps.

The 8x8 shape is resampled straight into the 32x32 frame (bicubic, inside a 26-pixel box) and its
edge is softly sharpened, which turns the blocky source into smooth strokes.

"The data distribution" is this rendering process: random shape from a split, random colour,
random pose. Randomness comes from a torch.Generator only, so a rendering is fully determined by
the generator's seed and device. Fixed evaluation sets (`DigitsSplit.fixed`) always draw on the CPU,
so they are the same on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "digits"
DIGITS_FILE = ASSETS / "digits.npz"
IMG_RESOLUTION = 32
NUM_CLASSES = 10
BOX_PIXELS = 26           # side of the square the 8x8 source is stretched over, before jitter
MAX_SHIFT_PIXELS = 2.0    # pose jitter: uniform shift in each direction
MAX_ROTATION_DEG = 10.0   # pose jitter: uniform rotation


def load_digits(path: str | Path = DIGITS_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Source shapes as uint8 [N, 8, 8] with values 0..16, and int64 labels [N]."""
    with np.load(path) as f:
        return f["images"].astype(np.uint8), f["labels"].astype(np.int64)


def split_indices(labels: np.ndarray, held_out_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: the same fraction of every class is held out; both index arrays sorted."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_held = int(round(len(idx) * held_out_fraction))
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _rand(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B] hue (turns), saturation, value in [0, 1] -> [B, 3] RGB in [0, 1]."""
    n = 5 - 2 * torch.arange(3, device=h.device, dtype=torch.float32)  # [5, 3, 1], made on the device: no copy
    k = (n[None] + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def render(shapes: torch.Tensor, generator: torch.Generator, jitter: bool = True) -> torch.Tensor:
    """Source shapes [B, 8, 8] (0..16, any dtype) -> coloured images [B, 3, 32, 32] in [-1, 1].

    All random draws come from `generator` in a fixed order and on its device.
    """
    b, res = shapes.shape[0], IMG_RESOLUTION
    device = generator.device
    masks = shapes.to(device=device, dtype=torch.float32)[:, None] / 16

    # Pose: output pixel -> source coordinate, both in grid_sample's [-1, 1] convention.
    angle = _rand(generator, b, -1, 1) * math.radians(MAX_ROTATION_DEG)
    shift = torch.stack([_rand(generator, b, -1, 1), _rand(generator, b, -1, 1)], 1) * MAX_SHIFT_PIXELS
    if not jitter:
        angle, shift = torch.zeros_like(angle), torch.zeros_like(shift)
    zoom = res / BOX_PIXELS
    cos, sin = angle.cos() * zoom, angle.sin() * zoom
    theta = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # [B, 2, 2]
    offset = -(theta @ (shift * 2 / res)[:, :, None])                                   # shift in [-1, 1] units
    grid = F.affine_grid(torch.cat([theta, offset], 2), [b, 1, res, res], align_corners=False)
    m = F.grid_sample(masks, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
    m = torch.clamp((m - 0.3) / 0.4, 0, 1)
    m = m * m * (3 - 2 * m)  # smoothstep: crisp but anti-aliased stroke edges

    # Colour: bright random hue for the digit, dark gradient of a roughly opposite hue behind it.
    hue = _rand(generator, b, 0, 1)
    fg = hsv_to_rgb(hue, _rand(generator, b, 0.55, 1.0), _rand(generator, b, 0.85, 1.0))
    bg_hue = (hue + 0.5 + _rand(generator, b, -0.15, 0.15)) % 1
    bg_sat = _rand(generator, b, 0.35, 0.9)
    bg0 = hsv_to_rgb(bg_hue, bg_sat, _rand(generator, b, 0.08, 0.3))
    bg1 = hsv_to_rgb((bg_hue + _rand(generator, b, -0.08, 0.08)) % 1, bg_sat, _rand(generator, b, 0.3, 0.55))
    direction = _rand(generator, b, 0, 2 * math.pi)
    coords = (torch.arange(res, device=device, dtype=torch.float32) + 0.5) / res * 2 - 1
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    t = (xx[None] * direction.cos()[:, None, None] + yy[None] * direction.sin()[:, None, None]) / math.sqrt(2)
    t = (t + 1)[:, None] / 2                                                              # [B, 1, H, W] in [0, 1]
    bg = bg0[:, :, None, None] * (1 - t) + bg1[:, :, None, None] * t
    img = bg * (1 - m) + fg[:, :, None, None] * m
    return img * 2 - 1


@dataclass
class DigitsSplit:
    """One split's source shapes and labels, kept on the device the renderings are made on."""

    shapes: torch.Tensor  # uint8 [N, 8, 8]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch: shapes drawn with replacement, each with a fresh colour and pose."""
        idx = torch.randint(len(self), (size,), generator=generator, device=generator.device)
        idx = idx.to(self.labels.device)
        return render(self.shapes[idx], generator), self.labels[idx].to(generator.device)

    def fixed(self, seed: int = 0, repeats: int = 1, device: str | torch.device = "cpu",
              jitter: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Every shape rendered `repeats` times with colours and poses from a CPU generator seeded with `seed`.

        The same on every machine, which makes it the reference set for accuracy and Frechet distances.
        """
        g = torch.Generator().manual_seed(seed)
        shapes = self.shapes.cpu().repeat(repeats, 1, 1)
        labels = self.labels.cpu().repeat(repeats)
        images = torch.cat([render(chunk, g, jitter=jitter) for chunk in shapes.split(1024)])
        return images.to(device), labels.to(device)


def load_split(split: str = "train", device: str | torch.device = "cpu", held_out_fraction: float = 0.2,
               split_seed: int = 0, path: str | Path = DIGITS_FILE) -> DigitsSplit:
    """'train' or 'held_out' (stratified, fixed by `split_seed`)."""
    images, labels = load_digits(path)
    train, held = split_indices(labels, held_out_fraction, split_seed)
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', not {split!r}")
    idx = train if split == "train" else held
    return DigitsSplit(torch.from_numpy(images[idx]).to(device), torch.from_numpy(labels[idx]).to(device))
