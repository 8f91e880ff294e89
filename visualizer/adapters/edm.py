"""NVIDIA's EDM ImageNet-64 teacher: Heun sampler, 256 steps with churn (FID 1.36) or deterministic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from visualizer.adapters.base import Callback, DiffusionAdapter
from visualizer.checkpoints.download import resolve_checkpoint
from visualizer.checkpoints.loading import load_network
from visualizer.models.images import edm_to_uint8
from visualizer.models.sampling import HeunSettings, edm_sampler

# The EDM paper's settings for ImageNet-64; each adapter owns its presets (`presets`, `default_preset`).
PRESETS: dict[str, HeunSettings] = {
    # ImageNet-64 FID 1.36 (EDM Table 2 / Fig. 5): 256 steps, NFE 511.
    "fid": HeunSettings(num_steps=256, S_churn=40, S_min=0.05, S_max=50, S_noise=1.003),
    # No churn: the probability-flow ODE. 256 steps keeps the fid preset's sigma grid, so the two
    # presets compare step by step; the EDM paper's deterministic 64x64 runs use 40 steps (NFE 79),
    # which `sampler_settings("deterministic", num_steps=40)` gives.
    "deterministic": HeunSettings(num_steps=256, S_churn=0, S_noise=1),
}


class EDMAdapter(DiffusionAdapter):
    name = "edm-imagenet-64"
    role = "teacher"
    presets = PRESETS
    default_preset = "fid"

    @classmethod
    def from_pickle(cls, path_or_url: str | Path, device: str | torch.device | None = None, **kw) -> EDMAdapter:
        """An official EDM pickle, local or by URL (downloaded once into the cache); never executes its code."""
        return cls.from_checkpoint(resolve_checkpoint(path_or_url), device=device, **kw)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None, **kw) -> EDMAdapter:
        """.pkl (official layout), .safetensors (converted), .pth/.bin or a DMD2-style folder."""
        path = resolve_checkpoint(path)
        return cls(load_network(path), device=device, checkpoint=path, **kw)

    def settings(self, preset: str | None = None, **overrides) -> HeunSettings:
        """`sampler_settings` under its earlier name."""
        return self.sampler_settings(preset, **overrides)

    def run_sampler(self, latents: torch.Tensor, labels: torch.Tensor | None, generators: Sequence[torch.Generator],
                    settings: HeunSettings, callback: Callback | None = None, progress: bool = False) -> torch.Tensor:
        return edm_sampler(self.net, latents, labels, generators=generators, settings=settings, callback=callback,
                           disable_progress=not progress)

    def to_uint8(self, x: torch.Tensor) -> np.ndarray:
        return edm_to_uint8(x)
