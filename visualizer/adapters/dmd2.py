"""DMD2's ImageNet-64 one-step generator: the teacher's architecture, image = G(z*80, 80, label)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from visualizer.adapters.base import Callback, DiffusionAdapter
from visualizer.checkpoints.download import resolve_checkpoint
from visualizer.checkpoints.loading import load_network
from visualizer.models.images import dmd2_to_uint8
from visualizer.models.sampling import GeneratorSettings, dmd2_few_step


class DMD2Adapter(DiffusionAdapter):
    name = "dmd2-imagenet-64"
    role = "student"
    presets = {"one-step": GeneratorSettings(num_steps=1)}
    default_preset = "one-step"

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None, **kw) -> DMD2Adapter:
        """pytorch_model.bin / .pth / .safetensors, or a checkpoint_model_NNNNNN/ folder."""
        path = resolve_checkpoint(path)
        return cls(load_network(path), device=device, checkpoint=path, **kw)

    def run_sampler(self, latents: torch.Tensor, labels: torch.Tensor | None, generators: Sequence[torch.Generator],
                    settings: GeneratorSettings, callback: Callback | None = None,
                    progress: bool = False) -> torch.Tensor:
        """One step by default; num_steps > 1 re-noises the estimate along a Karras schedule from 80."""
        return dmd2_few_step(self.net, latents, labels, sigmas=settings.levels(), generators=generators,
                             callback=callback)

    def to_uint8(self, x: torch.Tensor) -> np.ndarray:
        return dmd2_to_uint8(x)

    def describe_settings(self, settings: GeneratorSettings, preset: str | None = None) -> dict:
        return {"num_steps": settings.num_steps}
