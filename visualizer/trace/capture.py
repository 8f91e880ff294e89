"""Record named layers of a bare EDMPrecond while anything (a sampler, one denoising call) runs it.

    with capture(net, ["enc.16x16_block1", "midblock"], reduce="l2") as cap:
        sample(net, ...)
    cap["midblock"][0].tensor            # heatmap of the first network evaluation, on the CPU
    cap.tensor("midblock", step=-1)      # ... of the last one

A thin front of the trace core (`Tracer`) for code that runs the network itself: only the layers
asked for are hooked, and the hooks are removed when the block ends, also when it ends with an
exception, so a failed run never leaves a hook behind to slow down or corrupt the next.

A *step* here is one forward call of the EDMPrecond (one network evaluation): a Heun sampler with
N steps gives 2N-1 of them, numbered from 0. A forward pre-hook on the network itself advances the
counter and reads that call's sigma, so records know their noise level without the sampler's help.
A layer run outside a network call (`net.model` called directly) records step -1 and sigma None.
`adapter.trace()` is the richer front: sampler steps, edits, sigma ranges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

import torch

from visualizer.models.networks import EDMPrecond
from visualizer.trace.edits import Edit
from visualizer.trace.recorder import Record, Sigma, SigmaFn, Tracer
from visualizer.trace.reductions import Reduction, get_reduction


@dataclass
class Capture:
    """What one `capture` block recorded: per layer name, one Record per network evaluation."""

    names: list[str]
    keep: str
    tracer: Tracer

    @property
    def records(self) -> dict[str, list[Record]]:
        return self.tracer.records

    @property
    def sigmas(self) -> list[Sigma]:
        """The sigma of every network evaluation, recorded or not."""
        return [ev.sigma for ev in self.tracer.evaluations]

    def __getitem__(self, name: str) -> list[Record]:
        return self.records[name]

    def __contains__(self, name: object) -> bool:
        return name in self.records

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    @property
    def num_steps(self) -> int:
        return len(self.tracer.evaluations)

    def tensor(self, name: str, step: int = -1) -> torch.Tensor:
        """The tensor of `name` at network evaluation `step`; negative steps count back from the last record."""
        records = self.records[name]
        if -len(records) <= step < 0:
            return records[step].tensor
        for r in records:
            if r.step == step:
                return r.tensor
        raise KeyError(f"{name}: no record at step {step}; recorded steps {[r.step for r in records]}")

    def stacked(self, name: str) -> torch.Tensor:
        """All records of `name` stacked on a new first dimension: [steps, ...]."""
        return torch.stack([r.tensor for r in self.records[name]])


@contextlib.contextmanager
def capture(
    net: EDMPrecond,
    names: str | Iterable[str],
    *,
    reduce: str | Reduction | None = None,   # a REDUCTIONS name or a function of the activation
    keep: str | None = None,                 # 'full' or 'reduced'; default: 'reduced' iff reduce is given
    to_cpu: bool = True,                     # move every record to the CPU (after reducing, so transfers stay small)
    sigma_fn: SigmaFn | None = None,         # (args, kwargs) of the net's forward -> sigma; default: its 2nd argument
    steps: Container[int] | None = None,     # record only these network evaluations (all if None)
    edits: Iterable[Edit] = (),              # edits to apply while recording (steps = network evaluations)
) -> Iterator[Capture]:
    """Hooks the named layers for the duration of the block and yields the Capture they fill.

    Full tensors are detached but not copied when they stay on their device (to_cpu=False, or a
    CPU run): later in-place changes by the network would show, which the EDM U-Net never makes.
    Reductions that need arguments are passed as functions, e.g. `functools.partial(single_channel, index=5)`.
    """
    names = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    keep = keep or ("reduced" if reduce is not None else "full")
    if keep not in ("full", "reduced"):
        raise ValueError(f"keep must be 'full' or 'reduced', got {keep!r}")
    if keep == "reduced" and reduce is None:
        raise ValueError("keep='reduced' needs a reduction (reduce=...)")
    if keep == "full" and reduce is not None:
        raise ValueError("a reduction applies only with keep='reduced'; reduce full captures afterwards")
    reduction = get_reduction(reduce) if isinstance(reduce, str) else reduce
    wants = None if steps is None else (lambda ev, i: i in steps)
    with Tracer(net, names, edits=list(edits), record=wants, to_cpu=to_cpu, sigma_fn=sigma_fn,
                reduce={n: reduction for n in names}) as tracer:
        yield Capture(names=names, keep=keep, tracer=tracer)
