"""One batch of seeds through one model: final images plus pooled activations at the chosen steps.

A trace (`adapter.trace`) records each layer at the first network call of each wanted step and
pools it on the device right there, so a 256-step teacher costs no copies for the calls nobody
asked for, and its hooks are removed even when sampling fails.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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

    `sample_kwargs` are the sampler's (`preset`, `num_steps`, `progress`); `record=False` samples
    without hooks (the benchmark's baseline).
    """
    kwargs = dict(sample_kwargs or {})
    layers = list(pools) if record else []
    labels = None if class_labels is None else [int(c) for c in class_labels]
    trace = adapter.trace([int(s) for s in seeds], labels, layers, steps=list(steps) if layers else [],
                          reduce={n: functools.partial(pool_rows, pool=p) for n, p in pools.items()}, **kwargs)
    # The network consumes sigma as float32: record that value, as its shortest decimal (80.0, 0.002).
    sigmas = {s: float(str(np.float32(trace.sigmas[s]))) for s in trace.steps}
    features = {key: to_store_dtype(rows.numpy()) for key, rows in trace.activations.items()}
    return BatchRecord(images=np.asarray(trace.images), class_labels=np.asarray(trace.class_labels, dtype=np.int64),
                       features=features, sigmas=sigmas, num_steps=trace.num_steps)


def layer_shape(adapter: DiffusionAdapter, name: str) -> tuple[int, ...]:
    """Per-sample output shape of a layer, (C, H, W) for the U-Net blocks."""
    shapes = adapter.layer_shapes()   # name -> (batch, C, H, W)
    if name in shapes:
        return tuple(int(s) for s in shapes[name])[1:]
    # A name the shape table does not list (an alias): measure it with one forward pass.
    trace = adapter.trace([0], 0 if adapter.num_classes else None, [name], forward_only=True)
    return tuple(int(s) for s in trace[(name, 0)].shape[1:])


def batches(num_seeds: int, batch_size: int) -> list[range]:
    """Seed positions of each batch; the batching is part of the result (kernels may differ by batch shape)."""
    return [range(start, min(start + batch_size, num_seeds)) for start in range(0, num_seeds, batch_size)]
