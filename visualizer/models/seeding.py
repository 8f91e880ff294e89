"""Per-seed random streams: every image draws its noise from its own generator, never from a batch-wide one.

The scheme is the EDM reference generator's: one ``torch.Generator`` per image, seeded with
``seed % 2**32`` on the sampling device; from it, in order, the latent ``randn([C, H, W])`` in
float32, then the class index ``randint(label_dim, size=[])``, then every noise draw the sampler
makes. So an image depends only on its seed, its class, the sampler settings and the device type
(CPU and CUDA streams differ), never on which other seeds share its batch. Teacher and student use
the same scheme, so for a seed the student's input ``z * 80`` is the teacher's first input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["draw_latents_and_classes", "make_generators", "one_hot", "randn_like_per_seed"]


def make_generators(seeds: Sequence[int], device: str | torch.device | None = None) -> list[torch.Generator]:
    """One generator per seed, on the device that samples (a CPU generator cannot feed CUDA draws)."""
    device = torch.device("cpu" if device is None else device)
    return [torch.Generator(device=device).manual_seed(int(seed) % 2**32) for seed in seeds]


def draw_latents_and_classes(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    label_dim: int,
    class_labels: int | Sequence[int] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents float32 [B, *shape] and class indices int64 [B], one latent then one class per generator.

    The class is drawn even when `class_labels` forces it, so forcing a class leaves the rest of
    the image's stream (the sampler's noise) unchanged. `class_labels` is one index for the whole
    batch or one per generator. `label_dim` 0 (an unconditional network) draws no class and returns
    zeros, as the reference does for unconditional networks.
    """
    if not generators:
        raise ValueError("draw_latents_and_classes needs at least one generator")
    shape = [int(s) for s in shape]
    latents, classes = [], []
    for g in generators:
        latents.append(torch.randn(shape, generator=g, dtype=torch.float32, device=g.device))
        if label_dim > 0:
            classes.append(torch.randint(label_dim, size=[], generator=g, device=g.device))
        else:
            classes.append(torch.zeros([], dtype=torch.int64, device=g.device))
    latents_t, classes_t = torch.stack(latents), torch.stack(classes)
    if class_labels is not None:
        forced = torch.as_tensor(class_labels, dtype=torch.int64).reshape(-1).to(classes_t.device)
        if forced.numel() not in (1, len(generators)):
            raise ValueError(f"{forced.numel()} class labels for {len(generators)} seeds; give one or one per seed")
        if label_dim > 0 and bool(((forced < 0) | (forced >= label_dim)).any()):
            raise ValueError(f"class labels {forced.tolist()} outside 0..{label_dim - 1}")
        classes_t = forced.expand(len(generators)).clone()
    return latents_t, classes_t


def randn_like_per_seed(
    generators: Sequence[torch.Generator], like: torch.Tensor, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Standard normal noise shaped like `like` [B, ...], row b drawn from generator b.

    The dtype is part of the stream: a float64 draw consumes the generator differently from a
    float32 one, and the EDM reference draws its churn noise in float64.
    """
    if len(generators) != like.shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {like.shape[0]}")
    return torch.stack([torch.randn(like.shape[1:], generator=g, dtype=dtype, device=g.device) for g in generators])


def one_hot(class_idx: torch.Tensor | Sequence[int], label_dim: int, device: str | torch.device | None = None
            ) -> torch.Tensor:
    """The float32 [B, label_dim] rows the network's label embedding takes."""
    idx = torch.as_tensor(class_idx, dtype=torch.int64, device=device).reshape(-1)
    return torch.nn.functional.one_hot(idx, label_dim).to(torch.float32)
