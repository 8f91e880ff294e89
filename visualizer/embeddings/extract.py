"""One batch of seeds through one model: final images plus pooled activations at the chosen steps.

Forward hooks keep only a reference to each layer's latest output; the sampler's per-evaluation
callback, which runs right after that evaluation, decides whether to keep it (the first network
call of a wanted step) and pools it on the device. So a 256-step teacher costs no copies for the
510 calls nobody asked for, and the hooks are removed even when sampling fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from visualizer.adapters.base import DiffusionAdapter
from visualizer.embeddings.pooling import pool_rows
from visualizer.embeddings.store import to_store_dtype


@dataclass
class BatchRecord:
    images: np.ndarray                              # uint8 [B, H, W, C]
    class_labels: np.ndarray                        # int64 [B]
    features: dict[tuple[str, int], np.ndarray]     # (layer, step) -> float16 [B, features]
    sigmas: dict[int, float]                        # step -> noise level of its first network call
    num_steps: int | None                           # as the sampler reported it


def record_batch(
    adapter: DiffusionAdapter,
    seeds: Sequence[int],
    class_labels: Sequence[int] | None,
    pools: Mapping[str, str],
    steps: Sequence[int],
    sample_kwargs: Mapping | None = None,
    record: bool = True,
) -> BatchRecord:
    """Samples `seeds` (with the given classes, or the generator's own draw when None) and records `pools` layers.

    `record=False` samples without hooks (the benchmark's baseline).
    """
    latest: dict[str, torch.Tensor] = {}
    kept: dict[tuple[str, int], np.ndarray] = {}
    sigmas: dict[int, float] = {}
    wanted = set(steps) if record else set()
    seen_steps: list[int] = []
    reported: dict[str, int] = {}

    def hook_for(name: str):
        def hook(module, inputs, output):
            latest[name] = output
        return hook

    def callback(info: Mapping) -> None:
        step = int(info["step"])
        if "num_steps" in info:
            reported["num_steps"] = int(info["num_steps"])
        if step in wanted and step not in sigmas:
            # The network consumes sigma as float32: record that value, as its shortest decimal (80.0, 0.002).
            sigmas[step] = float(str(np.float32(float(info["sigma"]))))
            for name, pool in pools.items():
                rows = pool_rows(latest[name], pool).cpu().numpy()
                kept[(name, step)] = to_store_dtype(rows)
        if not seen_steps or seen_steps[-1] != step:
            seen_steps.append(step)
        latest.clear()

    handles = []
    try:
        if record:
            for name in pools:
                handles += adapter.register_activation_hooks([name], hook_for(name))
        labels = None if class_labels is None else [int(c) for c in class_labels]
        result = adapter.sample(seeds=[int(s) for s in seeds], class_label=labels, callback=callback,
                                **dict(sample_kwargs or {}))
    finally:
        for h in handles:
            h.remove()
    missing = sorted(wanted - set(sigmas))
    if missing:
        ran = reported.get("num_steps", len(seen_steps))
        raise RuntimeError(f"{adapter.name}: the sampler ran {ran} step(s) and never reached step(s) {missing}")
    return BatchRecord(images=np.asarray(result.images), class_labels=np.asarray(result.class_labels, dtype=np.int64),
                       features=kept, sigmas=sigmas, num_steps=reported.get("num_steps"))


def layer_shape(adapter: DiffusionAdapter, name: str) -> tuple[int, ...]:
    """Per-sample output shape of a layer, (C, H, W) for the U-Net blocks."""
    shapes = adapter.layer_shapes()   # name -> (batch, C, H, W)
    if name in shapes:
        return tuple(int(s) for s in shapes[name])[1:]
    # A name the shape table does not list (an alias): measure it with one forward pass.
    seen: list[torch.Size] = []
    handles = adapter.register_activation_hooks([name], lambda m, i, o: seen.append(o.shape))
    try:
        x = torch.zeros(1, adapter.net.img_channels, adapter.resolution, adapter.resolution)
        adapter.forward(x, adapter.first_sigma, [0] if adapter.num_classes else None)
    finally:
        for h in handles:
            h.remove()
    return tuple(int(s) for s in seen[0][1:])


def batches(num_seeds: int, batch_size: int) -> list[range]:
    """Seed positions of each batch; the batching is part of the result (kernels may differ by batch shape)."""
    return [range(start, min(start + batch_size, num_seeds)) for start in range(0, num_seeds, batch_size)]
