"""A sampler run under a Tracer: what `adapter.trace()` returns, built from any sampler function.

    trace = adapter.trace([0, 1], [207, 207], ["enc.8x8_block2"], steps="all", reduce="l2")
    trace.images                       # uint8 [B, H, W, C], the final samples
    trace["enc.8x8_block2", 10]        # heatmaps of that layer at sampler step 10, [B, H, W]
    trace.sigmas                       # the sigma of every sampler step's first evaluation

Recording happens at the first network evaluation of each chosen sampler step (for EDM's Heun
sampler, at t_hat_i; the correction is not recorded), on the device, reduced or pooled there when
asked. Nothing is copied to the host until the run ends, then one copy per layer (`to_cpu=False`
leaves everything on the device, for callers that reduce or convert further there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from visualizer.models.networks import EDMPrecond
from visualizer.models.sampling import Evaluation
from visualizer.trace.edits import Edit
from visualizer.trace.recorder import Reduction, Tracer
from visualizer.trace.reductions import get_reduction
from visualizer.trace.steps import Steps, select_steps

Callback = Callable[[dict], None]
Reduce = str | Reduction | Mapping[str, "str | Reduction | None"] | None


@dataclass
class Trace:
    """One traced run: final samples, the sigma of every step, and activations per (layer, step)."""

    seeds: list[int]
    class_labels: np.ndarray                     # int64 [B]
    images: np.ndarray                           # uint8 [B, H, W, C], each model's own pixel conversion
    final: torch.Tensor                          # float32 [B, C, H, W], the last denoised estimate
    sigmas: list[float]                          # sigma of the first evaluation of every sampler step
    steps: list[int]                             # the recorded steps
    activations: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)   # [B, ...] per (layer, step)
    denoised: dict[int, torch.Tensor] = field(default_factory=dict)   # step -> estimate [B, C, H, W] (keep_denoised)
    evaluations: list[Evaluation] = field(default_factory=list)       # every network call of the run
    edited_calls: int = 0                        # block calls an edit changed

    @property
    def num_steps(self) -> int:
        return len(self.sigmas)

    def __getitem__(self, key: tuple[str, int]) -> torch.Tensor:
        return self.activations[key]

    def layer(self, name: str) -> torch.Tensor:
        """[len(steps), B, ...]: `name` at every recorded step, in step order."""
        return torch.stack([self.activations[(name, s)] for s in self.steps])


def reductions_for(layers: Sequence[str], reduce: Reduce) -> dict[str, Reduction | None]:
    """One reduction (or None: the full activation) per layer from a name, a function or a per-layer mapping."""
    per_layer = reduce if isinstance(reduce, Mapping) else dict.fromkeys(layers, reduce)
    return {n: get_reduction(r) if isinstance(r, str) else r for n, r in per_layer.items()}


def run_traced(
    net: EDMPrecond,
    plan: Sequence[Evaluation],
    run: Callable[[Callback], torch.Tensor],
    layers: Sequence[str] = (),
    *,
    steps: Steps = "first",
    reduce: Reduce = None,
    edits: Sequence[Edit] = (),
    keep_denoised: bool = False,
    to_cpu: bool = True,
    callback: Callback | None = None,
) -> tuple[torch.Tensor, dict]:
    """Runs `run(callback)` (a sampler over `net` whose evaluations are `plan`) with layers recorded and
    edited; returns its output and the pieces of a Trace (sigmas, steps, activations, denoised...)."""
    firsts = {}                                   # step -> index of its first evaluation
    for i, ev in enumerate(plan):
        firsts.setdefault(ev.step, i)
    sigmas = [plan[i].sigma for i in firsts.values()]
    wanted = select_steps(steps, sigmas) if layers or keep_denoised else []
    record_at = {firsts[s] for s in wanted}
    kept: dict[int, torch.Tensor] = {}
    done = [0]

    def on_evaluation(info: dict) -> None:
        index = done[0]
        done[0] += 1
        if keep_denoised and index in record_at:
            kept[plan[index].step] = info["denoised"].detach()
        if callback is not None:   # with what this evaluation recorded, for previews while the run goes on
            callback(dict(info, records={n: r[-1].tensor for n, r in tracer.records.items()
                                         if r and r[-1].step == index}))

    tracer = Tracer(net, layers, edits=edits, plan=plan, record=lambda ev, i: i in record_at,
                    reduce=reductions_for(layers, reduce))
    if layers or edits:
        with tracer:
            out = run(on_evaluation)
    else:
        out = run(on_evaluation)
    activations = {}
    for name in tracer.layers:
        records = tracer.records[name]
        # One copy per layer to the host; on the device the records are used as they are.
        tensors = list(torch.stack([r.tensor for r in records]).cpu()) if to_cpu and records else \
            [r.tensor for r in records]
        activations.update({(name, plan[r.step].step): t for r, t in zip(records, tensors, strict=True)})
    steps_kept = list(kept)
    values = list(torch.stack(list(kept.values())).cpu()) if to_cpu and kept else list(kept.values())
    denoised = dict(zip(steps_kept, values, strict=True))
    return out, dict(sigmas=sigmas, steps=wanted, activations=activations, denoised=denoised,
                     evaluations=list(tracer.evaluations) or list(plan[:done[0]]), edited_calls=tracer.edited_calls)
