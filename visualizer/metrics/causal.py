"""Where the student's behaviour lives: patch the teacher into the student layer by layer, and weight drift.

Teacher and student share one architecture and, for a seed, one first input (z*80 at sigma 80), so a
student whose layer L takes the teacher's output there is a direct experiment: how far its image
moves measures how much of the difference between the two flows through L.

- `patch_sweep`: for every layer, the student's image with that layer patched from the teacher at
  the same seed, against the unpatched student: per-seed RMSE in pixel units ([-1, 1] scale), the
  mean over seeds with a bootstrap interval, and a baseline: the same patch taken from the teacher
  at *another seed of the same class* (any foreign activation moves the output; the same-seed patch
  is informative where it moves it less, or more, than that).
- `weight_drift`: ||W_student - W_teacher|| / ||W_teacher|| over each block's parameters.

Both are descriptive of the seeds used; the interval is over seeds, not over models or checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from visualizer.adapters.base import DiffusionAdapter
from visualizer.errors import UserError
from visualizer.models.layer_names import resolve_layers
from visualizer.trace import Edit


@dataclass
class SweepRow:
    layer: str
    rmse: float                   # mean over seeds: student patched from the teacher at the same seed
    low: float                    # 95% bootstrap interval of that mean (over seeds)
    high: float
    other_seed: float             # baseline: the patch from the teacher at another seed of the same class
    per_seed: list[float]


def bootstrap_mean(values: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean over resampled seeds (each seed is one independent draw)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _rmse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return (a.double() - b.double()).pow(2).flatten(1).mean(1).sqrt().cpu().numpy()


@torch.no_grad()
def patch_sweep(teacher: DiffusionAdapter, student: DiffusionAdapter, seeds: Sequence[int],
                classes: Sequence[int] | int | None, layers: Sequence[str], batch_size: int = 64,
                progress=None) -> list[SweepRow]:
    """Per layer: how far the student's output moves when that layer takes the teacher's value (see module doc)."""
    if teacher.layer_shapes().keys() != student.layer_shapes().keys() or \
            any(teacher.layer_shapes()[n] != student.layer_shapes()[n] for n in layers):
        raise UserError("patch_sweep needs teacher and student of one architecture")
    resolve_layers(student.net, layers)     # unknown names fail before any work
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise UserError("patch_sweep needs at least two seeds (the baseline pairs each seed with another)")
    classes = [int(classes)] * len(seeds) if isinstance(classes, int) else classes
    same: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    other: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    for start in range(0, len(seeds), batch_size):
        batch = seeds[start:start + batch_size]
        labels = None if classes is None else list(classes[start:start + batch_size])
        t = teacher.trace(batch, labels, layers, forward_only=True, to_cpu=False)
        base = student.trace(batch, labels, to_cpu=False).final
        # Another seed of the same class: the next seed in the batch with that class (cyclic), else the next seed.
        shift = _partner_index(labels, len(batch))
        for k, name in enumerate(layers):
            act = t[(name, 0)].to(student.device)
            patched = student.trace(batch, labels, edits=[Edit.replace(name, act)], to_cpu=False).final
            foreign = student.trace(batch, labels, edits=[Edit.replace(name, act[shift])], to_cpu=False).final
            same[name].append(_rmse(patched, base))
            other[name].append(_rmse(foreign, base))
            if progress is not None:
                progress(start // batch_size * len(layers) + k + 1, -(-len(seeds) // batch_size) * len(layers))
    rows = []
    for name in layers:
        values = np.concatenate(same[name])
        low, high = bootstrap_mean(values)
        rows.append(SweepRow(name, float(values.mean()), low, high, float(np.concatenate(other[name]).mean()),
                             values.tolist()))
    return rows


def _partner_index(labels: Sequence[int] | None, n: int) -> list[int]:
    out = []
    for i in range(n):
        same_class = [j for j in range(n) if j != i and (labels is None or labels[j] == labels[i])]
        later = [j for j in same_class if j > i]
        out.append((later or same_class or [(i + 1) % n])[0])
    return out


def weight_drift(teacher: DiffusionAdapter, student: DiffusionAdapter) -> dict[str, float]:
    """Block (native name) -> ||W_s - W_t||_F / ||W_t||_F over the block's parameters, in network order."""
    out = {}
    t_blocks = resolve_layers(teacher.net, teacher.net.model.block_names())
    s_blocks = resolve_layers(student.net, student.net.model.block_names())
    if t_blocks.keys() != s_blocks.keys():
        raise UserError("weight_drift needs teacher and student of one architecture")
    for name, t_block in t_blocks.items():
        t = dict(t_block.named_parameters())
        s = dict(s_blocks[name].named_parameters())
        if t.keys() != s.keys() or any(t[k].shape != s[k].shape for k in t):
            raise UserError(f"weight_drift: block {name} differs in shape between teacher and student")
        num = sum((s[k].double().cpu() - t[k].double().cpu()).pow(2).sum() for k in t)
        den = sum(t[k].double().cpu().pow(2).sum() for k in t)
        out[name] = float((num / den).sqrt()) if den > 0 else 0.0
    return out
