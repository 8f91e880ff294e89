"""Fast paths for the U-Net body on CUDA: torch.compile and CUDA-graph replay, with forward hooks still seen.

Eager PyTorch at batch 1 is launch-bound: each of the ~700 kernels of a network evaluation costs
some microseconds of Python and driver time, more than the GPU needs to run it. Two remedies:

- compile: `torch.compile` of the body fuses GroupNorm, SiLU, the adaptive scale/shift and the
  residual adds into fewer, larger kernels (this also helps large batches);
- graphs: a call of a shape seen before replays a CUDA graph of the whole body, one launch.

Neither can run Python forward hooks inside (a graph replays kernels only; a compiled graph would
be rebuilt for every new hook). So the fast path owns its taps: it runs the U-Net's `trunk` with
its own block runner, which calls the blocks hook-free, keeps every block's output and applies
edits, and `FastBody` then calls each hooked block's forward hooks with that output, in network
order: traces and user hooks see the same tensors as in eager mode.

Recording hooks of the trace core (`trace.recorder.Tap`) tell the fast path two more things, so the
graph does their work and nothing is copied that nobody reads: `recording()`, whether this call is
recorded at all (a Heun correction is not: its outputs are left in the graph's buffers), and
`in_graph`, a reduction (a heatmap: [B, C, H, W] -> [B, H, W]) that the graph applies to the block's
output itself, so a click copies maps, not activations; a block whose hooks need the full output
keeps it. Which blocks keep what is part of the graph's key.

Edits reach the graph through the hooks of the trace core (`trace.recorder.Tap`): a hook with an
`edit()` method returns this call's edit as a pair (scale, shift), applied as y' = scale * y + shift
to that block's output inside the graph; the pair is an input of the graph, so an edited call
replays a graph captured once per shape: an editable graph takes every block's pair as an input
(identity for blocks not edited), so no set of edits recompiles it; edited calls too large for a
graph replay it in graph-sized chunks. Such hooks are then given the edited output through `observe`.
Plain hooks get an empty `inputs` tuple and must not return a replacement output. Anything the fast
path cannot honour (an edit with no (scale, shift) form, pre-hooks or keyword hooks on a block, hooks
on modules inside a block or outside the blocks, autograd, training mode) runs that call eagerly,
counted in `counts`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from visualizer.models.networks import DhariwalUNet

COMPILE_MODES = ("off", "graphs", "full")   # eager; CUDA graphs of the eager body; torch.compile + CUDA graphs
# Compiled variants of `FastBody._body` that dynamo may keep: one per net x input shape x what is kept x editable.
# Its default (8) is shared by every FastBody, since dynamo caches per code object; past it, new variants would run
# uncompiled, silently. A GPU test run met it (teacher and student, plain, reduced, full and editable graphs).
RECOMPILE_LIMIT = 64
FALLBACK = object()    # what a hook's edit() returns for an edit the fast path cannot express
log = logging.getLogger(__name__)
Edits = dict[str, tuple[torch.Tensor, torch.Tensor]]
Reduction = Callable[[torch.Tensor], torch.Tensor]
Keep = dict[str, Reduction | None]     # per kept block: a reduction applied in the graph, or None (the output)


def apply_affine(y: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """y' = scale * y + shift in y's dtype: how an edit changes a block's output, eager and in a graph alike.

    The result keeps y's memory layout (attention blocks return channels-last strides): the next
    convolutions pick their kernels by layout, so an edit that changes no value changes no bit.
    """
    return torch.addcmul(shift.to(y.dtype), y, scale.to(y.dtype), out=torch.empty_like(y))


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]   # static buffers the replay reads
    edits: Edits                                                     # ... every block's (scale, shift) if editable
    out: torch.Tensor                                                # ... and writes
    kept: dict[str, torch.Tensor]
    dirty: set[str] = field(default_factory=set)                     # blocks whose edit buffers are not identity


def _hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _needs_output(hook: Callable) -> bool:
    """Plain hooks always see the output; recording hooks only on calls they record."""
    return hook.recording() if hasattr(hook, "recording") else True


def _in_graph(hooks: list[Callable]) -> Reduction | None:
    """The reduction a block's hooks all accept in place of its output, or None (they need the output)."""
    wanted = {getattr(h, "in_graph", None) for h in hooks if not hasattr(h, "recording") or h.names}
    return wanted.pop() if len(wanted) == 1 else None


class FastBody:
    """Drop-in for `DhariwalUNet.__call__` (install as `EDMPrecond.body`); see the module docstring.

    Graphs are kept per input shape for batches up to `graph_max_batch` (larger batches keep the
    GPU busy without them and would pin a large memory pool), at most `max_graphs` of them, least
    recently used dropped first.
    """

    def __init__(self, model: DhariwalUNet, *, compile: bool = False, graphs: bool = True,
                 graph_max_batch: int = 16, max_graphs: int = 4, compile_mode: str | None = None,
                 channels_last: bool = False):
        self.model = model
        self.channels_last = channels_last
        if channels_last:   # NHWC convolutions; for profile_body.py only (no gain measured, see RESULTS.md)
            model.to(memory_format=torch.channels_last)
        blocks = [*model.enc.values(), *model.dec.values()]
        self.blocks: dict[str, nn.Module] = dict(zip(model.block_names(), blocks, strict=True))
        self.all_taps = tuple(self.blocks)
        # Every module but the blocks themselves: a hook on any of them needs the eager path.
        self._others = [m for m in model.modules() if all(m is not b for b in blocks)]
        if compile:
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        self.fn = torch.compile(self._body, dynamic=False, mode=compile_mode) if compile else self._body
        self.graphs, self.graph_max_batch, self.max_graphs = graphs, graph_max_batch, max_graphs
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._lock = threading.Lock()
        # how calls ran: 'eager', 'direct', 'replay', 'capture'; 'eager_edit' for edits with no graph form
        self.counts: Counter[str] = Counter()

    def _body(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None,
              taps: tuple[str, ...] | Keep = (), edits: Edits | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The U-Net with hook-free blocks: F(x), and what is kept of the `taps` blocks' outputs after their
        `edits`: the output itself, or its reduction where `taps` maps the block to one."""
        kept: dict[str, torch.Tensor] = {}
        edits = edits or {}
        keep = taps if isinstance(taps, dict) else dict.fromkeys(taps)

        def run(name: str, block: nn.Module, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
            y = block.forward(*args)
            if name in edits:
                y = apply_affine(y, *edits[name])
            if name in keep:
                kept[name] = y if keep[name] is None else keep[name](y)
            return y

        m = self.model
        return m.head(m.trunk(x, m.embedding(noise_labels, class_labels), run)), kept

    def __call__(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None
                 ) -> torch.Tensor:
        hooked = self._hooked()
        edits = None if hooked is None else self._edits(hooked)
        if edits is None or torch.is_grad_enabled() or self.model.training:
            self.counts["eager"] += 1
            return self.model(x, noise_labels, class_labels)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        hooks = {n: list(self.blocks[n]._forward_hooks.values()) for n in hooked}
        keep: Keep = {n: _in_graph(h) for n, h in hooks.items()}
        needed = [n for n, h in hooks.items() if any(map(_needs_output, h))]
        if self.graphs and x.is_cuda and x.shape[0] <= self.graph_max_batch:
            with self._lock:
                out, kept = self._replay((x, noise_labels, class_labels), keep, edits, needed)
        elif edits and self.graphs and x.is_cuda:
            # Large edited batches replay the editable graph in graph-sized chunks: a compiled body would be
            # recompiled for every set of edited blocks, while the editable graph is captured once per shape.
            out, kept = self._chunked(x, noise_labels, class_labels, keep, edits, needed)
        elif edits:
            self.counts["direct_edit"] += 1
            out, kept = self._body(x, noise_labels, class_labels, taps=keep, edits=edits)
        else:
            self.counts["direct"] += 1
            out, kept = self.fn(x, noise_labels, class_labels, taps=keep)
        for name in needed:
            block = self.blocks[name]
            for hook in hooks[name]:
                if hasattr(hook, "observe"):
                    if hook.recording():
                        hook.observe(block, kept[name], reduced=keep[name] is not None)
                elif hook(block, (), kept[name]) is not None:
                    raise RuntimeError(f"a forward hook on {name} returned a new output; hooks that replace "
                                       "outputs need the eager path (compile 'off'), or an edit (visualizer.trace)")
        return out

    def _chunked(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None, keep: Keep,
                 edits: Edits, needed: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """An edited batch larger than `graph_max_batch` as editable-graph replays of at most that many rows;
        per-row edits (a [B, C, H, W] scale or shift of this batch's size) are sliced with their rows."""
        n, m = x.shape[0], self.graph_max_batch

        def rows(t: torch.Tensor | None, a: int, b: int, dim: int | None = None) -> torch.Tensor | None:
            """Rows a:b of a per-row tensor (of `dim` dimensions if given: an edit's [C,1,1] may have C == n)."""
            per_row = torch.is_tensor(t) and t.dim() > 0 and t.shape[0] == n and dim in (None, t.dim())
            return t[a:b] if per_row else t

        outs, kept = [], {name: [] for name in needed}
        with self._lock:
            for a in range(0, n, m):
                b = min(a + m, n)
                part = (x[a:b], rows(noise_labels, a, b), rows(class_labels, a, b))
                out, part_kept = self._replay(part, keep, {k: (rows(sc, a, b, 4), rows(sh, a, b, 4))
                                                           for k, (sc, sh) in edits.items()}, needed)
                outs.append(out)
                for name in needed:
                    kept[name].append(part_kept[name])
        return torch.cat(outs), {name: torch.cat(parts) for name, parts in kept.items()}

    def _replay(self, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], keep: Keep, edits: Edits,
                needed: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One replay of the graph for these inputs (captured on first use; editable when there are edits), with
        its output and the `needed` blocks' kept values cloned: the next replay overwrites the graph's. Under
        `_lock`."""
        g = self._graph(*inputs, self._graph_keep(keep), bool(edits))
        for static, new in zip(g.inputs, inputs, strict=True):
            if static is not None:
                static.copy_(new)
        if g.edits:
            self._load_edits(g, edits)
        g.graph.replay()
        self.counts["replay"] += 1
        return g.out.clone(), {n: g.kept[n].clone() for n in needed}

    def _graph_keep(self, keep: Keep) -> Keep:
        """What a graph keeps of every block: once any block is hooked all are kept, so a new choice of layers
        replays the same graph; blocks nobody hooked are kept as the most common choice among the hooked ones."""
        if not keep:
            return {}
        choices = list(keep.values())
        default = max(choices, key=lambda c: (choices.count(c), c is not None))   # ties: a reduction
        return {n: keep.get(n, default) for n in self.all_taps}

    @staticmethod
    def _load_edits(g: _Graph, edits: Edits) -> None:
        """Writes this call's edits into an editable graph's buffers; blocks edited last time go back to identity."""
        for name, (scale, shift) in g.edits.items():
            if name in edits:
                scale.copy_(edits[name][0])       # broadcasts [C,1,1], [1,C,H,W] or a number to the buffer
                shift.copy_(edits[name][1])
                g.dirty.add(name)
            elif name in g.dirty:
                scale.fill_(1)
                shift.zero_()
                g.dirty.discard(name)

    def _edits(self, hooked: list[str]) -> Edits | None:
        """This call's edits per block from the hooks that have them; None when one needs the eager path."""
        edits: Edits = {}
        for name in hooked:
            for hook in self.blocks[name]._forward_hooks.values():
                pair = hook.edit() if hasattr(hook, "edit") else None
                if pair is FALLBACK:
                    self.counts["eager_edit"] += 1
                    log.info("an edit of %s has no (scale, shift) form; this call runs eagerly", name)
                    return None
                if pair is not None:
                    edits[name] = pair
        return edits

    def _hooked(self) -> list[str] | None:
        """Names of the blocks with forward hooks, or None when some hook needs the eager path."""
        if any(map(_hooks, self._others)):
            return None
        if torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
            return None
        hooked = []
        for name, block in self.blocks.items():
            if block._forward_pre_hooks or block._forward_hooks_with_kwargs:
                return None
            if block._forward_hooks:
                hooked.append(name)
        return hooked

    def _graph(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None,
               taps: Keep, editable: bool = False) -> _Graph:
        """The graph for this input shape and what it keeps of each block (`_graph_keep`); an editable one takes
        every block's (scale, shift) as an input (identity by default), so any set of edits replays one graph."""
        key = (x.device, x.dtype, tuple(x.shape), tuple(noise_labels.shape),
               None if class_labels is None else (class_labels.dtype, tuple(class_labels.shape)),
               tuple(taps.items()), editable)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        static = (x.clone(), noise_labels.clone(), None if class_labels is None else class_labels.clone())
        static_edits: Edits = {}
        if editable:
            with torch.no_grad():
                _, outputs = self._body(*static, taps=self.all_taps)
            static_edits = {n: (torch.ones(y.shape, device=y.device), torch.zeros(y.shape, device=y.device))
                            for n, y in outputs.items()}
            del outputs
        # Compilation, autotuning and cuDNN's algorithm search happen in these warm-up calls, not in the capture.
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.fn(*static, taps=taps, edits=static_edits or None)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's model may launch work while this one captures.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out, kept = self.fn(*static, taps=taps, edits=static_edits or None)
        self.counts["capture"] += 1
        self._graphs[key] = _Graph(graph, static, static_edits, out, kept)
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        return self._graphs[key]

    def warm_up(self, batch: int = 1, dtype: torch.dtype = torch.float32, hooked: bool = True,
                reduce: Reduction | None = None, full: tuple[str, ...] | list[str] = ()) -> None:
        """Compiles and captures the graph of `batch`-sized calls now, so the first real call does not wait.

        `dtype` is the body's input dtype (the net's compute dtype); `hooked` warms the graph that
        keeps every block (what calls with capture hooks replay), as its outputs or, with `reduce`, as
        that reduction of them but the `full` blocks' (what a click whose heatmaps reduce in the graph
        replays); else the plain one.
        """
        ref = next(self.model.parameters())
        res, label_dim = self.model.img_resolution, self.model.label_dim
        x = torch.zeros(batch, self.model.enc[next(iter(self.model.enc))].in_channels, res, res,
                        dtype=dtype, device=ref.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        noise = torch.zeros(batch, device=ref.device)
        labels = torch.zeros(batch, label_dim, device=ref.device) if label_dim else None
        keep: Keep = {n: None if n in full else reduce for n in self.all_taps} if hooked else {}
        if self.graphs and x.is_cuda and batch <= self.graph_max_batch:
            with self._lock, torch.no_grad():
                self._graph(x, noise, labels, keep)
        else:
            with torch.no_grad():
                self.fn(x, noise, labels, taps=keep)

    def __deepcopy__(self, memo: dict) -> None:
        """A copied net runs eagerly: graphs and compiled code belong to the original's tensors."""
        return None

    def __reduce__(self):
        return type(None), ()    # pickling a net (torch.save) stores no fast path either

    def release(self) -> None:
        """Drops every captured graph and its memory pool."""
        with self._lock:
            self._graphs.clear()


def accelerate(net: nn.Module, device: torch.device, mode: str = "full", **kw) -> str:
    """Installs a FastBody on an EDMPrecond for `mode` on `device`; returns the mode in effect.

    CUDA only: on the CPU and on Apple MPS the net stays eager ('off'), since CUDA graphs do not
    exist there and torch.compile would need a C++ toolchain (CPU) or lacks kernels (MPS).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if mode == "off" or device.type != "cuda":
        net.body = None
        return "off"
    net.body = FastBody(net.model, compile=mode == "full", graphs=True, **kw)
    return mode
