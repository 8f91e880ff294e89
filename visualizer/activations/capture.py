"""Record named layers of an EDMPrecond while anything (a sampler, one denoising call) runs it.

    with capture(net, ["enc.16x16_block1", "midblock"], reduce="l2") as cap:
        sample(net, ...)
    cap["midblock"][0].tensor            # heatmap of the first network evaluation, on the CPU
    cap.tensor("midblock", step=-1)      # ... of the last one

Only the layers asked for are hooked, and the hooks are removed when the block ends, also when it
ends with an exception, so a failed run never leaves a hook behind to slow down or corrupt the next.

A *step* is one forward call of the EDMPrecond (one network evaluation): a Heun sampler with N
steps gives 2N-1 of them, numbered from 0. A forward pre-hook on the network itself advances the
counter and reads that call's sigma, so records know their noise level without the sampler's help.
A layer run outside a network call (`net.model` called directly) records step -1 and sigma None.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from visualizer.activations.layers import resolve_layers
from visualizer.activations.reductions import Reduction, get_reduction
from visualizer.models.networks import EDMPrecond

HookFn = Callable[[nn.Module, tuple, Any], Any]
SigmaFn = Callable[[tuple, dict], Any]
Sigma = float | tuple[float, ...] | None


@dataclass
class Record:
    step: int                # index of the network evaluation, from 0
    sigma: Sigma             # the call's noise level: one float, per-sample floats if they differ, or None
    tensor: torch.Tensor     # the layer output (keep='full') or its reduction (keep='reduced'), detached


@dataclass
class Capture:
    """What one `capture` block recorded: per layer name, one Record per network evaluation."""

    names: list[str]
    keep: str
    records: dict[str, list[Record]] = field(default_factory=dict)
    sigmas: list[Sigma] = field(default_factory=list)   # sigma of every step, recorded or not

    def __getitem__(self, name: str) -> list[Record]:
        return self.records[name]

    def __contains__(self, name: object) -> bool:
        return name in self.records

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    @property
    def num_steps(self) -> int:
        return len(self.sigmas)

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


def register_forward_hooks(net: EDMPrecond, names: str | Iterable[str], fn: HookFn) -> list[RemovableHandle]:
    """PyTorch forward hooks `fn(module, input, output)` on the named layers; the caller removes the handles."""
    return [module.register_forward_hook(fn) for module in resolve_layers(net, names).values()]


def first_tensor(output: Any) -> torch.Tensor:
    """A layer's output, or the first tensor of a tuple/list output (attention layers elsewhere return pairs)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"layer output holds no tensor: {type(output).__name__}")


def default_sigma(args: tuple, kwargs: dict) -> Any:
    """EDMPrecond.forward(x, sigma, class_labels): sigma is the second positional argument or `sigma=`."""
    return kwargs["sigma"] if "sigma" in kwargs else (args[1] if len(args) > 1 else None)


def _as_sigma(value: Any) -> Sigma:
    if value is None:
        return None
    t = torch.as_tensor(value).detach().flatten()
    if t.numel() == 0:
        return None
    values = t.double().cpu().tolist()
    return values[0] if all(v == values[0] for v in values) else tuple(values)


@contextlib.contextmanager
def capture(
    net: EDMPrecond,
    names: str | Iterable[str],
    *,
    reduce: str | Reduction | None = None,   # a REDUCTIONS name or a function of the activation
    keep: str | None = None,                 # 'full' or 'reduced'; default: 'reduced' iff reduce is given
    to_cpu: bool = True,                     # move every record to the CPU (after reducing, so transfers stay small)
    sigma_fn: SigmaFn | None = None,         # (args, kwargs) of the net's forward -> sigma; default `default_sigma`
    steps: Container[int] | None = None,     # record only these network evaluations (all if None)
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
    modules = resolve_layers(net, names)          # unknown names fail here, before anything is hooked
    sigma_fn = sigma_fn or default_sigma
    cap = Capture(names=names, keep=keep, records={n: [] for n in names})

    def on_call(module: nn.Module, args: tuple, kwargs: dict) -> None:
        cap.sigmas.append(_as_sigma(sigma_fn(args, kwargs)))

    def hook_for(name: str) -> HookFn:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            step = len(cap.sigmas) - 1
            if steps is not None and step not in steps:
                return
            with torch.no_grad():
                t = first_tensor(output).detach()
                if reduction is not None:
                    t = reduction(t)
                if to_cpu:
                    t = t.cpu()
            cap.records[name].append(Record(step, cap.sigmas[step] if step >= 0 else None, t))

        return hook

    handles: list[RemovableHandle] = []
    try:
        handles.append(net.register_forward_pre_hook(on_call, with_kwargs=True))
        handles += [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
        yield cap
    finally:
        for h in handles:
            h.remove()
