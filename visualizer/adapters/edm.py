"""NVIDIA's EDM ImageNet-64 teacher: Heun sampler, 256 steps with churn (FID 1.36) or deterministic."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from visualizer.adapters.base import DiffusionAdapter, SampleResult
from visualizer.checkpoints.download import resolve_checkpoint
from visualizer.checkpoints.loading import load_network
from visualizer.models.images import edm_to_uint8
from visualizer.models.sampling import PRESETS, edm_sampler


class EDMAdapter(DiffusionAdapter):
    name = "edm-imagenet-64"
    role = "teacher"
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

    def settings(self, preset: str | None = None, **overrides):
        preset = preset or self.default_preset
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})

    @torch.no_grad()
    def sample(self, num_samples: int = 1, class_label: int | Sequence[int] | None = None,
               seeds: Sequence[int] | None = None, callback: Callable[[dict], None] | None = None,
               num_steps: int | None = None, preset: str | None = None, progress: bool = False,
               **overrides) -> SampleResult:
        seeds = self._seeds(num_samples, seeds)
        generators, latents, classes = self.draw(seeds, class_label)
        settings = self.settings(preset, num_steps=num_steps, **overrides)
        x0 = edm_sampler(self.net, latents, self.labels(classes, len(seeds)), generators=generators,
                         settings=settings, callback=callback, disable_progress=not progress)
        return SampleResult(images=edm_to_uint8(x0), class_labels=classes.cpu().numpy(), seeds=seeds,
                            denoised=x0.float().cpu())
