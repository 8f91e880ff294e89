"""DMD2's ImageNet-64 one-step generator: the teacher's architecture, image = G(z*80, 80, label)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from visualizer.adapters.base import DiffusionAdapter, SampleResult
from visualizer.checkpoints.download import resolve_checkpoint
from visualizer.checkpoints.loading import load_network
from visualizer.models.images import dmd2_to_uint8
from visualizer.models.sampling import dmd2_few_step, dmd2_generate, edm_sigmas


class DMD2Adapter(DiffusionAdapter):
    name = "dmd2-imagenet-64"
    role = "student"

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None, **kw) -> DMD2Adapter:
        """pytorch_model.bin / .pth / .safetensors, or a checkpoint_model_NNNNNN/ folder."""
        path = resolve_checkpoint(path)
        return cls(load_network(path), device=device, checkpoint=path, **kw)

    @torch.no_grad()
    def sample(self, num_samples: int = 1, class_label: int | Sequence[int] | None = None,
               seeds: Sequence[int] | None = None, callback: Callable[[dict], None] | None = None,
               num_steps: int = 1, **_ignored) -> SampleResult:
        """One step by default; num_steps > 1 re-noises the estimate along a Karras schedule from 80."""
        seeds = self._seeds(num_samples, seeds)
        generators, latents, classes = self.draw(seeds, class_label)
        labels = self.labels(classes, len(seeds))
        if num_steps <= 1:
            x0 = dmd2_generate(self.net, latents, labels, sigma=self.first_sigma, callback=callback)
        else:
            sigmas = edm_sigmas(num_steps, sigma_max=self.first_sigma, device=self.device)[:-1].float()
            x0 = dmd2_few_step(self.net, latents, labels, sigmas=sigmas, generators=generators, callback=callback)
        return SampleResult(images=dmd2_to_uint8(x0), class_labels=classes.cpu().numpy(), seeds=seeds,
                            denoised=x0.float().cpu())
