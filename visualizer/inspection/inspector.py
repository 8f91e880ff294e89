"""The inspection engine: regenerate one (seed, class) with the loaded models and read it layer by layer.

No Dash here: the app, notebooks and benchmarks drive it the same way,
`Inspector(teacher, student).first_look(seed, class_label, layers)`.

Two questions, answered separately so the fast one never waits for the slow one:

- `first_look`: every model at the shared first input z*80, sigma 80. For a one-step student that
  is its whole sample; for a multi-step teacher it is its first network evaluation, the one the
  student imitates. Gives one image and one heatmap per chosen layer per model, and the cosine /
  CKA similarity of the two models at every layer.
- `trajectory`: a multi-step model's whole sampler run, with the denoised image and the heatmaps
  at the first evaluation of every sampler step. Cancellable from the sampler callback.

Heatmaps are reduced on the model's device; only the reduced maps (and scalar similarities) reach
the CPU. Each model has a lock, held while its hooks are in place, so concurrent requests never
see each other's activations; a first look goes before waiting teacher runs (`locks.ModelLock`), and a
run in progress gives way to it at its next network evaluation, then starts again (at most
MAX_GIVE_WAY times a run). Results live in an LRU cache bounded in bytes and keyed by value
(model identity and settings, seed, class, layers, reduction): a repeated click is a lookup, and
concurrent identical requests compute once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from visualizer.adapters.base import DiffusionAdapter
from visualizer.embeddings.pooling import pool_rows
from visualizer.errors import UserError
from visualizer.inspection.cache import LRUCache
from visualizer.inspection.edits import MEAN_SEEDS, EditSpec, samples_of, seeds_of, to_trace_edit
from visualizer.inspection.locks import ModelLock
from visualizer.inspection.requests import Request
from visualizer.inspection.results import FirstLook, StepView, Trajectory
from visualizer.metrics.compare import compare_all
from visualizer.models.layer_names import legacy_names, native_names
from visualizer.trace import Edit
from visualizer.trace.reductions import IN_GRAPH, parse_reduction

Progress = Callable[[int, int], None]
MAX_GIVE_WAY = 3      # times a teacher run in progress gives way to waiting first looks (then it keeps its model)


class _GiveWay(Exception):
    """Raised inside a run when a first look waits for its model: the run lets go of it and starts again."""


@dataclass(eq=False)
class ModelSlot:
    """One loaded model, the settings its sampler runs with, and the lock that guards its hooks."""

    key: str
    adapter: DiffusionAdapter
    sample_kwargs: dict = field(default_factory=dict)
    lock: ModelLock = field(default_factory=ModelLock)     # a first look goes before waiting teacher runs

    @property
    def role(self) -> str:
        return self.adapter.role

    @property
    def multi_step(self) -> bool:
        return self.adapter.multi_step

    @property
    def identity(self) -> tuple:
        a = self.adapter
        settings = tuple(sorted((k, str(v)) for k, v in self.sample_kwargs.items()))
        return (a.name, a.checkpoint, str(a.device), a.precision, a.compile, settings)

    def settings(self):
        return self.adapter.sampler_settings(self.sample_kwargs.get("preset"), self.sample_kwargs.get("num_steps"))

    def num_steps(self) -> int:
        return int(self.settings().num_steps)


def relative_change(after: torch.Tensor, before: torch.Tensor) -> float:
    """||after - before|| / ||before||: how far an edit moved a layer (0 where it did not)."""
    with torch.no_grad():
        norm = before.double().norm().item()
        return (after.double() - before.double()).norm().item() / norm if norm else 0.0


def _maps(tensors: Mapping[str, torch.Tensor], layers: Sequence[str], reduce_fn) -> dict[str, np.ndarray]:
    """Reduce on the tensors' device, then move only the [H, W] maps to the CPU (float16 to halve the cache)."""
    with torch.no_grad():
        return {name: reduce_fn(tensors[name][:1])[0].to(torch.float16).cpu().numpy() for name in layers}


class PartialTrajectory:
    """A run in progress, step by step as the sampler reaches them: each step stays on the model's device
    until someone asks for it (`view(k)`), then that step alone is converted (and kept converted)."""

    def __init__(self, model: str, num_steps: int, to_uint8: Callable):
        self.model = model
        self.num_steps = num_steps
        self._to_uint8 = to_uint8
        self._steps: list[tuple[float, torch.Tensor, dict[str, torch.Tensor]]] = []
        self._views: dict[int, StepView] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, sigma: float, denoised: torch.Tensor, maps: dict[str, torch.Tensor]) -> None:
        self._steps.append((sigma, denoised, maps))

    @property
    def sigmas(self) -> list[float]:
        return [s for s, _, _ in self._steps[:len(self)]]

    def view(self, k: int) -> StepView:
        """Step `k` (0-based) as the finished trajectory would show it; an IndexError if not reached yet."""
        with self._lock:
            if k not in self._views:
                sigma, denoised, maps = self._steps[k]
                with torch.no_grad():
                    image = self._to_uint8(denoised)[0]
                    self._views[k] = StepView(k, sigma, image, {n: m[0].to(torch.float16).cpu().numpy()
                                                                for n, m in maps.items()})
            return self._views[k]


class Inspector:
    """The app's engine: given the loaded models, answers `first_look` and `trajectory` requests, cached."""

    def __init__(self, *models: ModelSlot | DiffusionAdapter | Sequence[ModelSlot | DiffusionAdapter],
                 cache: LRUCache | None = None):
        """Models as ModelSlots, or adapters (keyed by their role, sampling with their defaults), or one list."""
        if len(models) == 1 and isinstance(models[0], (list, tuple)):
            models = tuple(models[0])
        slots = [m if isinstance(m, ModelSlot) else ModelSlot(m.role, m) for m in models]
        keys = [s.key for s in slots]
        if len(set(keys)) != len(keys):
            raise UserError(f"two models share the key {keys}; give ModelSlots with distinct keys")
        self.slots = {s.key: s for s in slots}
        self.cache = cache if cache is not None else LRUCache()
        self._layers = self._common_layers()
        self._running: dict[tuple, PartialTrajectory] = {}     # trajectory key -> its steps so far
        # Layers a trajectory also records at every step, pooled as an embed run pooled them ({layer: pool},
        # `embeddings.pooling`), so its steps can be placed on the run's maps (`inspection.maps`).
        self.map_pools: dict[str, str] = {}

    # -- what the models offer ---------------------------------------------------------------------
    @property
    def pair(self) -> tuple[str, str] | None:
        """The two models compared: a teacher and a student when both roles are loaded, else the first two."""
        keys = list(self.slots)
        if len(keys) < 2:
            return None
        teachers = [k for k in keys if self.slots[k].role == "teacher"]
        students = [k for k in keys if self.slots[k].role != "teacher"]
        return (teachers[0], students[0]) if teachers and students else (keys[0], keys[1])

    def shown(self) -> list[str]:
        """Model keys in display order: the compared pair first (teacher left), then any others."""
        pair = list(self.pair or ())
        return pair + [k for k in self.slots if k not in pair]

    def layers(self) -> list[str]:
        """Names every loaded model knows, native first then legacy, in the first model's order."""
        return list(self._layers)

    def _common_layers(self) -> list[str]:
        slots = list(self.slots.values())
        if not slots:
            return []
        common = set.intersection(*(set(s.adapter.hookable_layers) for s in slots))
        return [n for n in slots[0].adapter.hookable_layers if n in common]

    def aliases(self) -> dict[str, str]:
        """Every layer name -> the name of the same module in the other scheme (legacy <-> native).

        `encoder_block_0` <-> `enc.32x32_conv`, `midblock` <-> `dec.8x8_in0`, ...: two names of one module,
        so a page can show either and hover both. Names with no partner are absent.
        """
        slots = list(self.slots.values())
        if not slots:
            return {}
        net = slots[0].adapter.net
        by_path = {path: name for name, path in native_names(net).items()}
        out = {}
        for legacy, path in legacy_names(net).items():
            native = by_path.get(path)
            if native is not None and legacy in self._layers and native in self._layers:
                out[legacy], out[native] = native, legacy
        return out

    def native_layers(self) -> list[str]:
        return [n for n in self.layers() if n.startswith(("enc.", "dec."))]

    def legacy_layers(self) -> list[str]:
        return [n for n in self.layers() if not n.startswith(("enc.", "dec."))]

    def check(self, req: Request) -> None:
        bad = [n for n in req.layers if n not in self._layers]
        if bad:
            raise UserError(f"unknown layer(s) {', '.join(bad)}; valid names: {', '.join(self.layers())}")
        parse_reduction(req.reduction)
        for slot in self.slots.values():
            if slot.adapter.num_classes and not 0 <= req.class_label < slot.adapter.num_classes:
                raise UserError(f"class {req.class_label} is out of range for {slot.key} "
                                f"(0..{slot.adapter.num_classes - 1})")
        for spec in req.edits:
            if spec.model not in self.slots:
                raise UserError(f"edit: no model {spec.model!r} is loaded (loaded: {', '.join(self.slots)})")
            if spec.layer not in self._layers:
                raise UserError(f"edit: unknown layer {spec.layer!r}; valid names: {', '.join(self.layers())}")
            if spec.source == "other":
                self.partner(spec.model)
            n = self.slots[spec.model].adapter.num_classes
            if spec.source and spec.source.startswith("classes:") and n:
                bad = [c for c in map(int, spec.source[8:].split("-")) if not 0 <= c < n]
                if bad:
                    raise UserError(f"edit: class {bad[0]} is out of range for {spec.model} (0..{n - 1})")
            if any(seed >= 2**32 for seed in seeds_of(spec.source or "")):
                raise UserError("edit: seeds must lie in 0 .. 2^32 - 1")
            bad = [c for _, c in samples_of(spec.source or "") if n and not 0 <= c < n]
            if bad:
                raise UserError(f"edit: class {bad[0]} is out of range for {spec.model} (0..{n - 1})")

    # -- the shared first input ---------------------------------------------------------------------
    def request(self, req: Request | int, class_label: int | None = None, layers: Sequence[str] | None = None,
                reduction: str = "l2") -> Request:
        """A Request as given, or made from (seed, class, layers or every native layer, reduction)."""
        if isinstance(req, Request):
            return req
        if class_label is None:
            raise UserError("a seed needs its class_label")
        return Request.make(req, class_label, self.native_layers() if layers is None else layers, reduction)

    def first_look(self, req: Request | int, class_label: int | None = None, layers: Sequence[str] | None = None,
                   reduction: str = "l2", *, models: Sequence[str] | None = None) -> FirstLook:
        """Every model at the shared first input: `first_look(Request)` or `first_look(seed, class, layers)`.

        `models`: only these model keys are computed (a page that hides a model); None: all of them. The
        similarity needs both models of the pair; an edit of a model left out is not applied.
        """
        req = self.request(req, class_label, layers, reduction)
        self.check(req)
        keys = self._chosen(models)
        key = ("first", tuple(self.slots[k].identity for k in keys), req)
        if models is not None:
            key += (keys,)
        return self.cache.get_or_compute(key, lambda: self._first_look(req, keys), lambda v: v.nbytes)

    def _chosen(self, models: Sequence[str] | None) -> tuple[str, ...]:
        if models is None:
            return tuple(self.slots)
        unknown = [m for m in models if m not in self.slots]
        if unknown:
            raise UserError(f"no model {unknown[0]!r} is loaded (loaded: {', '.join(self.slots)})")
        return tuple(k for k in self.slots if k in models)

    def _first_look(self, req: Request, keys: Sequence[str] | None = None) -> FirstLook:
        start = time.perf_counter()
        reduce_fn = parse_reduction(req.reduction)
        keys = tuple(self.slots) if keys is None else tuple(keys)
        pair = self.pair if self.pair and all(k in keys for k in self.pair) else None
        # Similarity covers every module once: the native names (the legacy ones alias the same modules).
        every = self.native_layers() or self.layers()
        views, finals, full = {}, {}, {}
        originals, original_finals, changes = {}, {}, {}
        for key in keys:
            slot = self.slots[key]
            edited = bool(req.edits_for(key))
            wanted = list(dict.fromkeys([*req.layers, *(every if (pair and key in pair) or edited else [])]))
            tensors, view, final = self._first_evaluation(slot, req, wanted, reduce_fn)
            views[key] = view
            if final is not None:
                finals[key] = final
            if edited:     # the same call without the edits, and how far every layer moved
                before, originals[key], original_final = self._first_evaluation(slot, req.unedited(), wanted,
                                                                                 reduce_fn)
                if original_final is not None:
                    original_finals[key] = original_final
                changes[key] = {n: relative_change(tensors[n], before[n]) for n in every}
                del before
            if pair and key in pair:
                full[key] = {n: tensors[n] for n in every}
            del tensors
        similarity = None
        if pair:
            with torch.no_grad():
                similarity = compare_all(full[pair[0]], full[pair[1]])
        full.clear()
        return FirstLook(views, finals, similarity, pair, time.perf_counter() - start, originals, original_finals,
                         changes)

    def _first_evaluation(self, slot: ModelSlot, req: Request, names: Sequence[str], reduce_fn):
        """(full activations on the device, the step-0 view, the final image if the model is one-step)."""
        edits = self.trace_edits(slot, req)
        with slot.lock:
            trace = slot.adapter.trace([req.seed], req.class_label, names, settings=slot.settings(),
                                       forward_only=slot.multi_step, keep_denoised=True, to_cpu=False, edits=edits)
        tensors = {n: trace[(n, 0)] for n in names}
        image = slot.adapter.to_uint8(trace.denoised[0][:1])[0]
        view = StepView(0, trace.sigmas[0], image, _maps(tensors, req.layers, reduce_fn))
        return tensors, view, None if slot.multi_step else trace.images[0]

    # -- edits --------------------------------------------------------------------------------------
    def partner(self, model: str) -> ModelSlot:
        """The other model of the compared pair: where an edit's 'other' source comes from."""
        pair = self.pair
        if not pair or model not in pair:
            raise UserError(f"edit: {model!r} has no partner to take activations from (loaded: {list(self.slots)})")
        return self.slots[pair[1] if model == pair[0] else pair[0]]

    def trace_edits(self, slot: ModelSlot, req: Request) -> list[Edit]:
        """The trace Edits of `req` for one model, their values computed from the sources they name."""
        out = []
        for spec in req.edits_for(slot.key):
            if spec.layer not in self._layers:
                raise UserError(f"edit: unknown layer {spec.layer!r}; valid names: {', '.join(self.layers())}")
            shape = slot.adapter.layer_shapes()[spec.layer][1:]
            out.append(to_trace_edit(spec, shape, self._edit_value(slot, req, spec)))
        return out

    def _edit_value(self, slot: ModelSlot, req: Request, spec: EditSpec):
        """The replacement, mean or direction of one edit, on the model's device; None where none is needed."""
        if spec.source is None:
            return None
        kind = spec.source.partition(":")[0]
        if kind == "other":
            # The partner at the shared first input: it replaces the first call only (the teacher's later
            # steps see other inputs), so a teacher target gets a {step 0: value} mapping.
            other = self.partner(slot.key)
            with other.lock:
                t = other.adapter.trace([req.seed], req.class_label, [spec.layer], forward_only=True,
                                        settings=other.settings(), to_cpu=False)
            value = t[(spec.layer, 0)].to(slot.adapter.device)
            return {0: value} if slot.multi_step else value
        if kind == "classes":
            a, b = (int(c) for c in spec.source.partition(":")[2].split("-"))
            seeds = range(MEAN_SEEDS)
            with slot.lock:
                means = [slot.adapter.trace(seeds, c, [spec.layer], forward_only=True, settings=slot.settings(),
                                            to_cpu=False)[(spec.layer, 0)].mean(0) for c in (a, b)]
            return means[0] - means[1]
        seeds = seeds_of(spec.source)
        # 'samples:': each at its own class (a point's neighbours on the map); 'seed(s):': the request's class
        classes = [c for _, c in samples_of(spec.source)] if kind == "samples" else req.class_label
        with slot.lock:
            t = slot.adapter.trace(seeds, classes, [spec.layer], steps="all", settings=slot.settings(),
                                   to_cpu=False)
        per_step = {s: t[(spec.layer, s)].mean(0, keepdim=True) for s in t.steps}
        return per_step if slot.multi_step else per_step[0]

    # -- a multi-step model's whole run ----------------------------------------------------------------
    def trajectory_key(self, model: str, req: Request) -> tuple:
        return ("trajectory", self.slots[model].identity, req, tuple(sorted(self._pools(model).items())))

    def warm_up(self, model: str) -> float:
        """Compiles and captures the graphs a click on `model` replays, before the first click (seconds taken):
        a multi-step model's trajectory keeps the default reduction's heatmaps in its graph, pooled layers whole."""
        slot = self.slots[model]
        reduce_fn = parse_reduction(Request.reduction)
        if slot.multi_step and reduce_fn in IN_GRAPH:
            return slot.adapter.warm_up(reduce=reduce_fn, full=tuple(self._pools(model)))
        return slot.adapter.warm_up()

    def _pools(self, model: str) -> dict[str, str]:
        known = set(self.slots[model].adapter.hookable_layers)
        return {n: p for n, p in self.map_pools.items() if n in known}

    def cached_trajectory(self, model: str, req: Request) -> Trajectory | None:
        return self.cache.get(self.trajectory_key(model, req))

    def partial_trajectory(self, model: str, req: Request) -> PartialTrajectory | None:
        """The steps of a run still in progress (streamed as they are computed); None when none is running."""
        return self._running.get(self.trajectory_key(model, req))

    def trajectory(self, model: str, req: Request | int, class_label: int | None = None,
                   layers: Sequence[str] | None = None, reduction: str = "l2", *, progress: Progress | None = None,
                   should_stop: Callable[[], None] | None = None) -> Trajectory:
        """A multi-step model's whole run; `should_stop()` is called before every network evaluation and
        raises to abandon it."""
        req = self.request(req, class_label, layers, reduction)
        self.check(req)
        return self.cache.get_or_compute(self.trajectory_key(model, req),
                                         lambda: self._trajectory(self.slots[model], req, progress, should_stop),
                                         lambda v: v.nbytes)

    def _trajectory(self, slot: ModelSlot, req: Request, progress: Progress | None,
                    should_stop: Callable[[], None] | None) -> Trajectory:
        start = time.perf_counter()
        key = self.trajectory_key(slot.key, req)
        reduce_fn = parse_reduction(req.reduction)
        partial = PartialTrajectory(slot.key, slot.num_steps(), slot.adapter.to_uint8)
        latest: dict[str, torch.Tensor] = {}
        pools = self._pools(slot.key)
        pooled: dict[str, list[torch.Tensor]] = {n: [] for n in pools}
        wanted = list(dict.fromkeys([*req.layers, *pools]))

        def keeping(name: str):
            def reduce(t: torch.Tensor) -> torch.Tensor:   # the trace's reduction, and the pooled row of a pooled layer
                if name in pools:      # the row an embed run would have stored for this step
                    pooled[name].append(pool_rows(t[:1], pools[name]))
                return reduce_fn(t) if name in req.layers else t.new_zeros(t.shape[0], 1)
            return reduce

        # Maps of layers that are not pooled reduce inside the fast path's graph where the reduction allows it.
        reductions = {n: reduce_fn if reduce_fn in IN_GRAPH and n not in pools else keeping(n) for n in wanted}

        gave_way = [0]

        def on_evaluation(info: dict) -> None:
            if gave_way[0] < MAX_GIVE_WAY and slot.lock.urgent_waiting:
                if should_stop is not None:
                    should_stop()         # a cancelled run just stops
                raise _GiveWay()          # a first look waits for this model: it goes first, this run restarts
            latest.update({n: t[:1] for n, t in info.get("records", {}).items() if n in req.layers})
            if info.get("stage", "euler") in ("euler", "generator"):
                partial.add(float(info["sigma"]), info["denoised"][:1].detach(), dict(latest))
                latest.clear()
                if progress is not None:
                    progress(len(partial), int(info["num_steps"]))
            if should_stop is not None:
                should_stop()

        if should_stop is not None:
            should_stop()
        # Maps and estimates stay on the model's device until the run ends, so the GPU never waits for
        # Python between evaluations; a page reading a step while the run goes on converts only that one.
        edits = self.trace_edits(slot, req)
        while True:
            self._running[key] = partial
            try:
                with slot.lock.background():
                    trace = slot.adapter.trace([req.seed], req.class_label, wanted, steps="all", edits=edits,
                                               reduce=reductions, settings=slot.settings(),
                                               keep_denoised=True, to_cpu=False, callback=on_evaluation)
                break
            except _GiveWay:
                gave_way[0] += 1         # the lock is free: the first look runs, then this run starts again
            finally:
                if self._running.get(key) is partial:
                    del self._running[key]
            partial = PartialTrajectory(slot.key, slot.num_steps(), slot.adapter.to_uint8)
            latest.clear()
            for rows in pooled.values():
                rows.clear()
        with torch.no_grad():    # converted on the device, then one small copy each (float16 maps, uint8 images)
            images = slot.adapter.to_uint8(torch.cat([trace.denoised[s][:1] for s in trace.steps]))
            maps = {n: trace.layer(n)[:, 0].to(torch.float16).cpu().numpy() for n in req.layers}
            rows = {n: torch.cat(r).cpu().numpy().astype(np.float32) for n, r in pooled.items()
                    if len(r) == len(trace.steps)}
        views = [StepView(s, trace.sigmas[s], images[k], {n: maps[n][k] for n in req.layers})
                 for k, s in enumerate(trace.steps)]
        return Trajectory(slot.key, views, trace.images[0], trace.num_steps, time.perf_counter() - start, rows)

    # -- where the behaviour lives (visualizer.metrics.causal), cached and under the models' locks ---------
    MAX_SWEEP_SEEDS = 64

    def patch_sweep(self, seeds: Sequence[int], classes: Sequence[int] | int | None,
                    layers: Sequence[str] | None = None) -> list:
        """`causal.patch_sweep` over the compared pair (teacher into student, every native layer by default):
        per layer the mean RMSE over `seeds` with its bootstrap interval and the other-seed baseline."""
        from visualizer.metrics.causal import patch_sweep

        teacher, student = self._teacher_student()
        seeds = tuple(int(s) for s in seeds)
        if not 2 <= len(seeds) <= self.MAX_SWEEP_SEEDS:
            raise UserError(f"a patch sweep takes 2 to {self.MAX_SWEEP_SEEDS} seeds, got {len(seeds)}")
        classes = int(classes) if isinstance(classes, int) else None if classes is None else \
            tuple(int(c) for c in classes)
        layers = tuple(self.native_layers() if layers is None else layers)
        bad = [n for n in layers if n not in self._layers]
        if bad:
            raise UserError(f"unknown layer(s) {', '.join(bad)}; valid names: {', '.join(self.layers())}")
        key = ("sweep", teacher.identity, student.identity, seeds, classes, layers)

        def compute():
            with teacher.lock, student.lock:      # both models' hooks; always in this order
                return patch_sweep(teacher.adapter, student.adapter, seeds, classes, layers)
        return self.cache.get_or_compute(key, compute, lambda rows: 4096 + 64 * len(seeds) * len(rows))

    def weight_drift(self) -> dict[str, float]:
        """`causal.weight_drift` of the compared pair: ||W_student - W_teacher|| / ||W_teacher|| per block."""
        from visualizer.metrics.causal import weight_drift

        teacher, student = self._teacher_student()
        key = ("drift", teacher.identity, student.identity)
        return self.cache.get_or_compute(key, lambda: weight_drift(teacher.adapter, student.adapter),
                                         lambda d: 4096 + 64 * len(d))

    def _teacher_student(self) -> tuple[ModelSlot, ModelSlot]:
        pair = self.pair
        if not pair:
            raise UserError("the causal tools compare two models; load a teacher and a student")
        return self.slots[pair[0]], self.slots[pair[1]]

    # -- everything at once (tests, scripts) --------------------------------------------------------
    def regenerate(self, req: Request) -> tuple[FirstLook, dict[str, Trajectory]]:
        first = self.first_look(req)
        return first, {k: self.trajectory(k, req) for k, s in self.slots.items() if s.multi_step}


def hooks_left(adapters: Sequence[DiffusionAdapter]) -> int:
    """Forward (pre-)hooks still registered on any module of the adapters' networks; 0 when all were removed."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
               for a in adapters for m in a.net.modules())
