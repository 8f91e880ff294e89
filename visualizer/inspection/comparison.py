"""Teacher vs student over many samples, and one sample with its baselines: the engine behind the page's
comparison view (issue 15), Dash-free, so notebooks get the same numbers.

`Comparisons(inspector, run)` answers three questions for the inspector's teacher/student pair, each
cached in the inspector's byte-bounded cache (keyed by the models' identities and the query) and each
holding a model's lock only while that model runs (a click's first look goes first):

- `matrix(MatrixQuery)`: the teacher-layer x student-layer debiased CKA matrix over many samples
  (`metrics.cka.cka_matrix`: half-sample intervals, the shuffled-pair null) at one teacher step. Rows
  come from the embed run's pooled stores (`metrics.teacher_student.compare_run`) when the run holds
  them for the layers and the step, or from a fresh trace at full resolution of a bounded seed set
  (classes balanced, or all one class); `source='auto'` picks the stores when it can. The result's
  `context` says which, since pooling changes the score.
- `alignment(AlignmentQuery)`: sigma alignment, each student layer against the teacher's same layer at
  every sampler step (`metrics.cka.sigma_alignment`) and its ridge. From the run's all-step stores (or a
  run made from it that covers them, e.g. by `python -m visualizer compare --sigma-alignment`, in
  data/runs/), else from a fresh trace of a small seed set (<= MAX_ALIGNMENT_SEEDS): the teacher's
  whole sampler recorded at every step, each layer average-pooled as `embed --pool auto` stores it
  (<= 4,096 values per sample), so the rows are comparable with all-step stores and fit in memory.
- `sample_report(seed, class_label)`: one sample's centred cosine and spatial CKA per layer, each with
  its baselines (`metrics.teacher_student.sample_report`); each model's reference means are computed
  once per model and layer set, the noise baselines once per shape.

Fresh traces go in batches; `progress(done, total, text)` is called after each and `should_stop()`
before each (it raises to abandon the work; nothing partial is cached).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visualizer.embeddings.pooling import pool_rows, pooled_features, resolve_pool
from visualizer.errors import UserError
from visualizer.inspection.inspector import Inspector, ModelSlot
from visualizer.metrics.cka import CKAMatrix, SigmaAlignment, cka_matrix, sigma_alignment
from visualizer.metrics.runs import EmbedRun
from visualizer.metrics.teacher_student import (
    MAX_TRACE_BYTES,
    compare_run,
    reference_means,
    sample_report,
    trace_rows,
)

Progress = Callable[[int, int, str], None]
SOURCES = ("auto", "stores", "trace")
MAX_MATRIX_SEEDS = 1024          # a fresh trace for the matrix: full resolution, so bounded
MAX_ALIGNMENT_SEEDS = 64         # a fresh trace of every teacher step: the whole sampler per seed
MAX_RESAMPLES = 1000
MAX_ALIGNMENT_BYTES = 2 << 30    # the pooled rows of every teacher step held at once (float16)
NULL_DRAWS = 1000                # shuffled pairings (at most n - 1 are distinct)
BATCH = 32
DEFAULT_MATRIX_SEEDS = tuple(range(200))
DEFAULT_ALIGNMENT_SEEDS = tuple(range(32))


@dataclass(frozen=True)
class MatrixQuery:
    """What the matrix compares: canonical layer names (teacher rows = student columns), the teacher's
    0-based sampler step, where the rows come from, the seeds of a fresh trace, one class or all, and
    the half-sample resamples behind the intervals."""

    layers: tuple[str, ...]
    teacher_step: int = 0
    source: str = "auto"
    seeds: tuple[int, ...] = DEFAULT_MATRIX_SEEDS
    class_label: int | None = None
    resamples: int = 200


@dataclass(frozen=True)
class AlignmentQuery:
    layers: tuple[str, ...]
    source: str = "auto"
    seeds: tuple[int, ...] = DEFAULT_ALIGNMENT_SEEDS
    resamples: int = 200


def _never(*_args) -> None:
    return None


@dataclass
class Comparisons:
    """The comparison engine over an Inspector's teacher/student pair and (optionally) the embed run shown.

    `Comparisons.of(inspector, run)` gives the one engine of that inspector (the app's features share it).
    """

    inspector: Inspector
    run_path: str | Path | None = None
    runs_dir: Path = Path("data", "runs")            # where runs made from this one (more layers, steps) live
    _run: EmbedRun | None = field(default=None, init=False, repr=False)
    _opened: bool = field(default=False, init=False, repr=False)
    _all_steps: dict = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def of(cls, inspector: Inspector, run_path: str | Path | None = None) -> Comparisons:
        """The engine kept on `inspector` (made on first use): one per loaded pair, whoever asks."""
        found = inspector.__dict__.get("_comparisons")
        if found is None or found.run_path != run_path:
            found = inspector.__dict__["_comparisons"] = cls(inspector, run_path)
        return found

    # -- what is available ---------------------------------------------------------------------------
    @property
    def pair(self) -> tuple[ModelSlot, ModelSlot]:
        pair = self.inspector.pair
        if not pair:
            raise UserError("comparisons need two models: load a teacher and a student")
        return self.inspector.slots[pair[0]], self.inspector.slots[pair[1]]

    def run(self) -> EmbedRun | None:
        """The embed run behind the page's table, if it has activation stores (else None)."""
        if not self._opened:
            self._opened = True
            if self.run_path is not None:
                try:
                    self._run = EmbedRun.open(self.run_path)
                except UserError:
                    self._run = None
        return self._run

    def _run_keys(self, run: EmbedRun) -> tuple[str, str] | None:
        try:
            return run.model_with_role("teacher"), run.model_with_role("student")
        except UserError:
            return None

    def _step_fits(self, run: EmbedRun, t_key: str) -> bool:
        """The run's teacher steps are the loaded teacher's (same count: step k is the same sigma)."""
        return run.num_steps(t_key) == self.pair[0].num_steps()

    def stores_hold(self, layers: Sequence[str], teacher_step: int) -> bool:
        """Whether the run's pooled stores hold every layer for the teacher at `teacher_step` and the student."""
        run = self.run()
        keys = run and self._run_keys(run)
        if not keys or not self._step_fits(run, keys[0]):
            return False
        return all(run.has(keys[0], n, teacher_step) and run.has(keys[1], n, 0) for n in layers)

    def alignment_run(self, layers: Sequence[str]) -> EmbedRun | None:
        """A run holding every teacher step for `layers`: the run itself, or one made from it in `runs_dir`
        (same checkpoints and seeds, e.g. by `compare --sigma-alignment`); None when there is none."""
        run = self.run()
        keys = run and self._run_keys(run)
        if not keys:
            return None
        steps = run.steps(keys[0])
        if self._step_fits(run, keys[0]) and len(steps) == run.num_steps(keys[0]) and len(steps) > 1 and all(
                run.has(keys[0], n, k) for n in layers for k in steps) and all(run.has(keys[1], n, 0) for n in layers):
            return run
        if tuple(layers) in self._all_steps:
            return self._all_steps[tuple(layers)]
        if not self.runs_dir.is_dir():
            return None
        for folder in sorted(self.runs_dir.iterdir()):
            found = _all_steps_run(folder, run, layers) if folder.is_dir() else None
            if found is not None and self._step_fits(found, found.model_with_role("teacher")):
                self._all_steps[tuple(layers)] = found        # found once (a run made later is found then)
                return found
        return None

    # -- the matrix ---------------------------------------------------------------------------------
    def matrix(self, q: MatrixQuery, progress: Progress | None = None,
               should_stop: Callable[[], None] | None = None) -> CKAMatrix:
        """The teacher x student debiased CKA matrix of `q` (cached)."""
        teacher, student = self.pair
        self._check_layers(q.layers)
        if q.source not in SOURCES:
            raise UserError(f"source {q.source!r}: expected one of {', '.join(SOURCES)}")
        steps = teacher.num_steps()
        if not 0 <= q.teacher_step < steps:
            raise UserError(f"teacher step {q.teacher_step + 1}: the teacher has steps 1..{steps}")
        if not 0 <= q.resamples <= MAX_RESAMPLES:
            raise UserError(f"resamples: 0 to {MAX_RESAMPLES}")
        if q.class_label is not None and teacher.adapter.num_classes and \
                not 0 <= q.class_label < teacher.adapter.num_classes:
            raise UserError(f"class {q.class_label} is out of range (0..{teacher.adapter.num_classes - 1})")
        stores = self.stores_hold(q.layers, q.teacher_step)
        if q.source == "stores" and not stores:
            raise UserError("the embed run shown has no pooled stores for these layers at this teacher step "
                            "(the shipped demo's hold only encoder_bottleneck at the first step); pick "
                            "'fresh trace', or record them with `python -m visualizer compare --layers ... "
                            "--make-stores`")
        use_stores = stores and q.source != "trace"
        if not use_stores:
            _check_seeds(q.seeds, MAX_MATRIX_SEEDS)
            shapes = teacher.adapter.layer_shapes()
            need = 2 * 2 * len(q.seeds) * sum(int(np.prod(shapes[n][1:])) for n in q.layers)   # float16, 2 models
            if need > MAX_TRACE_BYTES:
                raise UserError(f"{len(q.seeds)} seeds x {len(q.layers)} full-resolution layers take "
                                f"{need / 2**30:.1f} GiB for both models (at most {MAX_TRACE_BYTES / 2**30:.0f}); "
                                "use fewer seeds or layers, or the run's pooled stores")
        key = ("cmp-matrix", teacher.identity, student.identity, str(self.run_path) if use_stores else None,
               use_stores, q if not use_stores else (q.layers, q.teacher_step, q.class_label, q.resamples))
        compute = (lambda: self._matrix_from_stores(q)) if use_stores else \
            (lambda: self._matrix_from_trace(q, progress or _never, should_stop or _never))
        return self.cache_compute(key, compute, _matrix_bytes)

    def cache_compute(self, key, compute, size):
        return self.inspector.cache.get_or_compute(key, compute, size)

    def _matrix_from_stores(self, q: MatrixQuery) -> CKAMatrix:
        start = time.perf_counter()
        run = self.run()
        t_key, s_key = self._run_keys(run)
        seeds = None
        if q.class_label is not None:
            rows = run.table[(t_key, q.teacher_step)]
            seeds = rows.seeds[rows.labels == q.class_label].tolist()
            if not seeds:
                raise UserError(f"the embed run holds no sample of class {q.class_label}")
        out = compare_run(run, list(q.layers), q.teacher_step, teacher=t_key, student=s_key, seeds=seeds,
                          resamples=q.resamples, null=NULL_DRAWS)
        out.context["class_label"] = q.class_label
        out.context["seconds"] = round(time.perf_counter() - start, 3)
        return out

    def _matrix_from_trace(self, q: MatrixQuery, progress: Progress, should_stop: Callable[[], None]) -> CKAMatrix:
        start = time.perf_counter()
        teacher, student = self.pair
        seeds = list(q.seeds)
        labels = self._labels(len(seeds), q.class_label)
        total = 2 * len(seeds)
        xs, t_sigma = self._rows(teacher, seeds, labels, q.layers, q.teacher_step, progress, should_stop, 0, total)
        ys, s_sigma = self._rows(student, seeds, labels, q.layers, 0, progress, should_stop, len(seeds), total)
        should_stop()
        progress(total, total, f"CKA of {len(q.layers)} x {len(q.layers)} layer pairs over {len(seeds)} samples")
        out = cka_matrix(xs, ys, resamples=q.resamples, null=NULL_DRAWS)
        shapes = teacher.adapter.layer_shapes()
        out.context = {
            "source": {"kind": "trace", "resolution": "full", "samples": len(seeds), "seeds": _ranges(seeds),
                       "pooled": False,
                       "layers": {n: {"shape": list(shapes[n][1:]), "pool": "none", "features": int(xs[n].shape[1])}
                                  for n in q.layers},
                       "note": "rows are full-resolution activations traced now (float16); pooled stores score "
                               "differently"},
            "teacher": {"model": teacher.key, "step": q.teacher_step, "sigma": t_sigma,
                        "step_asked": str(q.teacher_step), **teacher.adapter.describe()},
            "student": {"model": student.key, "step": 0, "sigma": s_sigma, **student.adapter.describe()},
            "class_label": q.class_label, "classes": "balanced" if q.class_label is None else "one class",
            "seconds": round(time.perf_counter() - start, 3),
        }
        return out

    def _labels(self, n: int, class_label: int | None) -> list[int] | None:
        classes = self.pair[0].adapter.num_classes
        if not classes:
            return None
        return [int(class_label)] * n if class_label is not None else [i % classes for i in range(n)]

    def _rows(self, slot: ModelSlot, seeds: list[int], labels: list[int] | None, layers: Sequence[str], step: int,
              progress: Progress, should_stop: Callable[[], None], done: int, total: int):
        """Full-resolution rows of one model in batches, its lock held per batch (a click goes in between)."""
        out: dict[str, np.ndarray] = {}
        sigma = float("nan")
        settings = slot.settings() if slot.multi_step else None
        for start in range(0, len(seeds), BATCH):
            should_stop()
            batch = seeds[start:start + BATCH]
            cls = None if labels is None else labels[start:start + BATCH]
            with slot.lock.background():
                rows, sigma = trace_rows(slot.adapter, batch, cls, list(layers), step, batch_size=BATCH,
                                         settings=settings)
            for name, value in rows.items():
                if name not in out:
                    out[name] = np.empty((len(seeds), value.shape[1]), dtype=value.dtype)
                out[name][start:start + len(batch)] = value
            progress(done + start + len(batch), total, f"tracing {slot.key}: {start + len(batch)} / {len(seeds)} "
                                                        f"seeds (step {step + 1})")
        return out, sigma

    # -- sigma alignment ----------------------------------------------------------------------------
    def alignment(self, q: AlignmentQuery, progress: Progress | None = None,
                  should_stop: Callable[[], None] | None = None) -> SigmaAlignment:
        """Each student layer against the teacher's same layer at every step (cached)."""
        teacher, student = self.pair
        self._check_layers(q.layers)
        if q.source not in SOURCES:
            raise UserError(f"source {q.source!r}: expected one of {', '.join(SOURCES)}")
        if not 0 <= q.resamples <= MAX_RESAMPLES:
            raise UserError(f"resamples: 0 to {MAX_RESAMPLES}")
        if not teacher.multi_step:
            raise UserError(f"sigma alignment needs a multi-step teacher; {teacher.key} runs one step")
        run = self.alignment_run(q.layers) if q.source != "trace" else None
        if q.source == "stores" and run is None:
            raise UserError("no run with every teacher step for these layers (the shipped demo's run holds only "
                            "the first); pick 'fresh trace', or record one with `python -m visualizer compare "
                            "--layers all --sigma-alignment` (about half an hour on 2 CPU cores for the demo)")
        if run is None:
            _check_seeds(q.seeds, MAX_ALIGNMENT_SEEDS)
            shapes = teacher.adapter.layer_shapes()
            per_seed = sum(pooled_features(resolve_pool("auto", shapes[n][1:], n), shapes[n][1:]) for n in q.layers)
            need = 2 * len(q.seeds) * per_seed * (teacher.num_steps() + 1)
            if need > MAX_ALIGNMENT_BYTES:
                raise UserError(f"{len(q.seeds)} seeds x {len(q.layers)} layers x {teacher.num_steps()} teacher steps "
                                f"take {need / 2**30:.1f} GiB (at most {MAX_ALIGNMENT_BYTES / 2**30:.0f}); use fewer "
                                "seeds or layers, or record all-step stores with `embed --steps all`")
        key = ("cmp-alignment", teacher.identity, student.identity, str(run.root) if run else None,
               q if run is None else (q.layers, q.resamples))
        compute = (lambda: self._alignment_from_stores(run, q)) if run is not None else \
            (lambda: self._alignment_from_trace(q, progress or _never, should_stop or _never))
        return self.cache_compute(key, compute, _alignment_bytes)

    def _alignment_from_stores(self, run: EmbedRun, q: AlignmentQuery) -> SigmaAlignment:
        from visualizer.metrics.teacher_student import sigma_alignment_run

        start = time.perf_counter()
        out = sigma_alignment_run(run, list(q.layers), resamples=q.resamples, null=NULL_DRAWS)
        out.context["seconds"] = round(time.perf_counter() - start, 3)
        return out

    def _alignment_from_trace(self, q: AlignmentQuery, progress: Progress,
                              should_stop: Callable[[], None]) -> SigmaAlignment:
        start = time.perf_counter()
        teacher, student = self.pair
        seeds = list(q.seeds)
        labels = self._labels(len(seeds), None)
        shapes = teacher.adapter.layer_shapes()
        pools = {n: resolve_pool("auto", shapes[n][1:], n) for n in q.layers}
        reduce = {n: (lambda p: (lambda a: pool_rows(a, p).half()))(pools[n]) for n in q.layers}
        settings = teacher.settings()
        evaluations = len(teacher.adapter.evaluations(settings))
        total = len(seeds) * (evaluations + 1)
        t_rows: dict[tuple[str, int], list] = {}
        s_rows: dict[str, list] = {n: [] for n in q.layers}
        sigmas: dict[int, float] = {}
        done = [0]

        def tick(info: dict) -> None:
            should_stop()
            done[0] += len(batch)
            if done[0] % (len(batch) * 5) == 0:
                progress(done[0], total, f"tracing {teacher.key}'s every step: {start_seed + len(batch)} / "
                                         f"{len(seeds)} seeds, evaluation {info.get('step', 0) + 1}")

        for start_seed in range(0, len(seeds), BATCH):
            should_stop()
            batch = seeds[start_seed:start_seed + BATCH]
            cls = None if labels is None else labels[start_seed:start_seed + BATCH]
            with teacher.lock.background():
                tr = teacher.adapter.trace(batch, cls, list(q.layers), steps="all", reduce=reduce, settings=settings,
                                           callback=tick)
            for (name, k), value in ((key, tr[key]) for key in ((n, k) for n in q.layers for k in tr.steps)):
                t_rows.setdefault((name, k), []).append(value.numpy())
                sigmas[k] = float(tr.sigmas[k])
            with student.lock.background():
                st = student.adapter.trace(batch, cls, list(q.layers), reduce=reduce, forward_only=student.multi_step)
            for name in q.layers:
                s_rows[name].append(st[(name, 0)].numpy())
            done[0] += len(batch)
            progress(done[0], total, f"traced {start_seed + len(batch)} / {len(seeds)} seeds")
        should_stop()
        progress(total, total, f"CKA of {len(q.layers)} layers x {len(sigmas)} steps over {len(seeds)} samples")
        out = sigma_alignment({k: np.concatenate(v) for k, v in t_rows.items()},
                              {n: np.concatenate(v) for n, v in s_rows.items()}, sigmas, resamples=q.resamples,
                              null=NULL_DRAWS)
        out.context = {
            "source": {"kind": "trace", "resolution": "pooled", "samples": len(seeds), "seeds": _ranges(seeds),
                       "pooled": any(p != "none" for p in pools.values()),
                       "layers": {n: {"shape": list(shapes[n][1:]), "pool": pools[n]} for n in q.layers},
                       "note": "rows traced now at every teacher step, average-pooled as `embed --pool auto` "
                               "stores them (<= 4,096 values per sample)"},
            "teacher": {"model": teacher.key, **teacher.adapter.describe()},
            "student": {"model": student.key, "step": 0, **student.adapter.describe()},
            "seconds": round(time.perf_counter() - start, 3),
        }
        return out

    # -- one sample ---------------------------------------------------------------------------------
    def reference_means(self, slot: ModelSlot, layers: Sequence[str]) -> dict:
        """Each model's mean activation per layer over the reference seeds: computed once per model."""
        key = ("ref-means", slot.identity, tuple(layers))

        def compute():
            with slot.lock:
                return reference_means(slot.adapter, list(layers), settings=slot.settings() if slot.multi_step
                                       else None)
        return self.cache_compute(key, compute, lambda m: sum(t.numel() * t.element_size() for t in m.values()))

    def sample_report(self, seed: int, class_label: int | None, layers: Sequence[str] | None = None) -> dict:
        """`metrics.teacher_student.sample_report` for the pair (every module once, native names, by default):
        per layer centred cosine and spatial CKA with the noise and other-seed baselines; cached."""
        teacher, student = self.pair
        layers = tuple(layers or self.inspector.native_layers() or self.inspector.layers())
        self._check_layers(layers)
        seed = int(seed)
        other = seed - 1 if seed >= 2**32 - 1 else seed + 1
        key = ("sample-report", teacher.identity, student.identity, seed, class_label, layers)

        def compute():
            means = (self.reference_means(teacher, layers), self.reference_means(student, layers))
            with teacher.lock, student.lock:       # both models' hooks; always in this order
                return sample_report(teacher.adapter, student.adapter, seed, class_label, list(layers),
                                     other_seed=other, means=means, settings=teacher.settings())
        return self.cache_compute(key, compute, lambda r: 4096 + 1024 * len(r["layers"]))

    def _check_layers(self, layers: Sequence[str]) -> None:
        if not layers:
            raise UserError("pick at least one layer")
        known = set(self.inspector.layers())
        bad = [n for n in layers if n not in known]
        if bad:
            raise UserError(f"unknown layer(s) {', '.join(bad)}")


def _all_steps_run(folder: Path, run: EmbedRun, layers: Sequence[str]) -> EmbedRun | None:
    """The run in `folder` if it was made from `run` (same checkpoints, same seeds) and holds `layers` at every
    teacher step (as `python -m visualizer compare --sigma-alignment` records them)."""
    try:
        other = EmbedRun.open(folder)
        teacher, student = other.model_with_role("teacher"), other.model_with_role("student")
    except UserError:
        return None
    same = all(other.models.get(k, {}).get("sha256") == m.get("sha256") for k, m in run.models.items()) \
        and other.sidecar.get("seeds") == run.sidecar.get("seeds")
    steps = other.steps(teacher)
    if not same or len(steps) < max(2, other.num_steps(teacher)):
        return None
    holds = all(other.has(teacher, n, k) for n in layers for k in steps) and all(other.has(student, n, 0)
                                                                                for n in layers)
    return other if holds else None


def _check_seeds(seeds: Sequence[int], limit: int) -> None:
    if not 8 <= len(seeds) <= limit:
        raise UserError(f"a fresh trace takes 8 to {limit} seeds, got {len(seeds)}")
    if any(not 0 <= int(s) < 2**32 for s in seeds):
        raise UserError("seeds lie in 0 .. 4294967295")


def _ranges(seeds: Sequence[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in sorted(set(int(x) for x in seeds)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def _matrix_bytes(m: CKAMatrix) -> int:
    return 4096 + sum(a.nbytes for a in (m.estimate, m.lo, m.hi, m.se, m.null_mean, m.null_lo, m.null_hi, m.p_null,
                                         m.resampled, m.null))


def _alignment_bytes(a: SigmaAlignment) -> int:
    return 4096 + sum(x.nbytes for x in (a.estimate, a.lo, a.hi, a.null_lo, a.null_hi))
