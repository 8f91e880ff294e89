"""The one way into a network's activations, for reading and for writing: `Tracer`.

A Tracer puts one forward hook (a `Tap`) on each block it records or edits and one pre-hook on the
EDMPrecond that counts network evaluations. Each evaluation is matched to the sampler's plan
(`models.sampling.evaluations`), so inside a call the Tracer knows its sampler step, stage and
sigma; without a plan (a bare network called by anything) an evaluation is its own step.

Eager PyTorch calls the Tap as a hook: it applies the layer's edits and records the output. The
fast path (`models.acceleration.FastBody`) runs the body without hooks, asks each Tap for its edit
as a (scale, shift) pair to feed into its graph, and hands it the edited output afterwards; an edit
that has no such form makes that call eager. So `capture()`, `adapter.trace()` and user hooks see
the same tensors on both paths. Hooks are removed when the block ends, also on an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visualizer.models.acceleration import FALLBACK, apply_affine
from visualizer.models.layer_names import layer_shapes, resolve_layers
from visualizer.models.networks import EDMPrecond
from visualizer.models.sampling import Evaluation
from visualizer.trace.edits import Edit, compose
from visualizer.trace.reductions import IN_GRAPH

Reduction = Callable[[torch.Tensor], torch.Tensor]
Recorded = Callable[[Evaluation, int], bool]      # (evaluation, its index) -> record it?
SigmaFn = Callable[[tuple, dict], Any]
Sigma = float | tuple[float, ...] | None


@dataclass
class Record:
    step: int                # index of the network evaluation, from 0 (-1: a layer run outside a network call)
    sigma: Sigma             # the call's noise level: one float, per-sample floats if they differ, or None
    tensor: torch.Tensor     # the layer output, or its reduction, detached


def first_tensor(output: Any) -> torch.Tensor:
    """A layer's output, or the first tensor of a tuple/list output (attention layers elsewhere return pairs)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"layer output holds no tensor: {type(output).__name__}")


def call_sigma(args: tuple, kwargs: dict) -> Any:
    """EDMPrecond.forward(x, sigma, class_labels): sigma is the second positional argument or `sigma=`."""
    return kwargs["sigma"] if "sigma" in kwargs else (args[1] if len(args) > 1 else None)


def as_sigma(value: Any) -> Sigma:
    """One float, per-sample floats if they differ, or None."""
    if value is None:
        return None
    t = torch.as_tensor(value).detach().flatten()
    if t.numel() == 0:
        return None
    values = t.double().cpu().tolist()
    return values[0] if all(v == values[0] for v in values) else tuple(values)


class Tap:
    """The hook on one block: edits its output, then records it under each name that points at the block."""

    def __init__(self, tracer: Tracer, names: list[str], edits: list[Edit], shape: tuple[int, ...]):
        self.tracer, self.names, self.edits, self.shape = tracer, names, edits, shape

    def _active(self) -> list[Edit]:
        ev = self.tracer.current
        return [e for e in self.edits if ev is not None and e.applies(ev)]

    def edit(self) -> tuple[torch.Tensor, torch.Tensor] | None | object:
        """This call's edit as (scale, shift), None when nothing applies, FALLBACK when it has no such form."""
        active = self._active()
        if not active:
            return None
        if not all(e.affine_form for e in active):
            return FALLBACK
        self.tracer.edited_calls += 1
        return self.tracer.affine(self, active)

    def recording(self) -> bool:
        """Whether this call is recorded: the fast path copies nothing out of its graph for calls that are not."""
        return bool(self.names) and self.tracer._recording

    @property
    def in_graph(self) -> Reduction | None:
        """The reduction the fast path may apply inside its graph: the one all this block's names use, if it is
        graph-safe (`reductions.IN_GRAPH`); None when the full output is wanted."""
        fns = {self.tracer.reduce.get(n) for n in self.names}
        fn = fns.pop() if len(fns) == 1 else None
        return fn if fn in IN_GRAPH else None

    def observe(self, module: nn.Module, output: torch.Tensor, reduced: bool = False) -> None:
        """Records the block's (edited) output, or with `reduced` its `in_graph` reduction made by the fast path."""
        self.tracer.record(self.names, output, reduced)

    def __call__(self, module: nn.Module, inputs: tuple, output: Any) -> torch.Tensor | None:
        active = self._active()
        y = first_tensor(output)
        if active:
            pending = []
            for e in active:
                if e.affine_form:
                    pending.append(self.tracer.affine(self, [e]))
                    continue
                if pending:
                    y, pending = apply_affine(y, *compose(pending)), []
                y = e.value(y)
            if pending:
                y = apply_affine(y, *compose(pending))
            self.tracer.edited_calls += 1
        self.observe(module, y)
        return y if active else None


class Tracer:
    """Records and edits named layers of an EDMPrecond while anything runs it (see the module docstring).

    `record(evaluation, index)` chooses the evaluations that are recorded (all by default);
    `reduce` maps a layer name to a function applied on the device before anything is kept
    (a heatmap reduction, a pooling); `plan` lists the sampler's evaluations in order; without
    one, `sigma_fn(args, kwargs)` reads each call's sigma. Records stay on the device they were
    computed on unless `to_cpu`.
    """

    def __init__(self, net: EDMPrecond, layers: Sequence[str] = (), *, edits: Sequence[Edit] = (),
                 plan: Sequence[Evaluation] | None = None, record: Recorded | None = None,
                 reduce: Mapping[str, Reduction | None] | None = None, to_cpu: bool = False,
                 sigma_fn: SigmaFn | None = None):
        self.net, self.plan, self.to_cpu = net, list(plan) if plan is not None else None, to_cpu
        self.sigma_fn = sigma_fn or call_sigma
        self.layers = list(dict.fromkeys(layers))
        self.wants = record or (lambda ev, i: True)
        self.reduce = dict(reduce or {})
        edited = [e.layer for e in edits]
        modules = resolve_layers(net, [*self.layers, *edited])   # unknown names fail here, before any hook
        shapes = layer_shapes(net)
        self.taps: dict[int, tuple[nn.Module, Tap]] = {}
        for name, module in modules.items():
            if id(module) not in self.taps:
                self.taps[id(module)] = (module, Tap(self, [], [], shapes[name][1:]))
            tap = self.taps[id(module)][1]
            if name in self.layers and name not in tap.names:
                tap.names.append(name)
        for e in edits:
            self.taps[id(modules[e.layer])][1].edits.append(e)
        self.evaluations: list[Evaluation] = []     # every call so far
        self.records: dict[str, list[Record]] = {n: [] for n in self.layers}
        self.current: Evaluation | None = None
        self._recording = self.wants(Evaluation(-1, "call", None), -1)   # a block run outside any network call
        self._batch = 1
        self._affine_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.edited_calls = 0
        self._handles: list = []

    # -- hooks ----------------------------------------------------------------------------------------
    def _on_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        i = len(self.evaluations)
        if self.plan is not None and i < len(self.plan):
            ev = self.plan[i]
        else:
            ev = Evaluation(i, "call", as_sigma(self.sigma_fn(args, kwargs)))
        self.evaluations.append(ev)
        self.current = ev
        x = args[0] if args else kwargs.get("x")
        self._batch = int(x.shape[0]) if isinstance(x, torch.Tensor) else 1
        self._recording = self.wants(ev, i)

    def affine(self, tap: Tap, edits: list[Edit]) -> tuple[torch.Tensor, torch.Tensor]:
        """The composed (scale, shift) of `edits` at the current step, built once per step and batch size."""
        step = self.current.step
        key = (id(tap), tuple(map(id, edits)), step, self._batch)
        if key not in self._affine_cache:
            device = next(self.net.parameters()).device
            shape = (self._batch, *tap.shape)
            self._affine_cache[key] = compose([e.affine(shape, step, device) for e in edits])
        return self._affine_cache[key]

    def record(self, names: list[str], output: torch.Tensor, reduced: bool = False) -> None:
        if not self._recording or not names:
            return
        index = len(self.evaluations) - 1
        sigma = self.evaluations[index].sigma if index >= 0 else None
        with torch.no_grad():
            y = output.detach()
            for name in names:
                fn = None if reduced else self.reduce.get(name)
                t = fn(y) if fn is not None else y
                self.records[name].append(Record(index, sigma, t.cpu() if self.to_cpu else t))

    # -- lifetime -------------------------------------------------------------------------------------
    def __enter__(self) -> Tracer:
        try:
            self._handles.append(self.net.register_forward_pre_hook(self._on_call, with_kwargs=True))
            self._handles += [module.register_forward_hook(tap) for module, tap in self.taps.values()]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._affine_cache.clear()



def register_forward_hooks(net: EDMPrecond, names: str | Sequence[str], fn: Callable) -> list:
    """The raw primitive: PyTorch forward hooks `fn(module, input, output)` on the named layers; the caller
    removes the returned handles. Recording and editing go through `Tracer`; this is for everything else."""
    return [module.register_forward_hook(fn) for module in resolve_layers(net, names).values()]
