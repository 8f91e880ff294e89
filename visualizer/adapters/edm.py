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
from visualizer.models.sampling import PRESETS, HeunSettings, edm_sampler


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
