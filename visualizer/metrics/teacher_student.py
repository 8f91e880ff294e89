"""Teacher against student: the data behind every comparison the app draws, figure-free.

Three questions, three functions, each returning plain arrays and dicts (the app only plots):

- `compare_run` / `compare_traced`: where does the student differ from its teacher? The debiased
  CKA matrix (teacher layer x student layer) over many samples, with intervals, a shuffled-pair
  null and optionally one matrix per class. Rows come from an `embed` run's pooled stores (fast;
  the default) or from a fresh trace at full resolution for chosen seeds; `context` says which,
  with the teacher step and its sigma, because pooling and the step change the score.
- `sigma_alignment_run`: which teacher step does each student layer resemble? CKA of each student
  layer against the teacher's same layer at every recorded step (`embed --steps all`), and the ridge.
- `sample_report`: one sample's centred cosine and spatial CKA per layer, each beside its baselines
  (noise of the layer's shape; the same model on another seed of the class). Descriptive only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from visualizer.adapters.base import DiffusionAdapter
from visualizer.errors import UserError
from visualizer.metrics.cka import CKAMatrix, SigmaAlignment, cka_matrix, sigma_alignment
from visualizer.metrics.compare import sample_scores
from visualizer.metrics.runs import EmbedRun, Rows

# Seeds whose mean activation centres the per-sample cosine; far from the seeds people click.
REFERENCE_SEEDS = range(1_000_000, 1_000_032)
MAX_TRACE_BYTES = 8 << 30      # host memory the full-resolution rows of a fresh trace may take (float16)


def _options(kw: Mapping) -> dict:
    allowed = {"resamples", "null", "blocks", "seed", "confidence", "device", "dtype", "max_bytes"}
    bad = set(kw) - allowed
    if bad:
        raise TypeError(f"unexpected option(s) {', '.join(sorted(bad))}")
    return dict(kw)


# -- over many samples, from an embed run ----------------------------------------------------------

def compare_run(
    run: EmbedRun | str,
    layers: Sequence[str] | None = None,
    teacher_step: str | int = "first",
    *,
    teacher: str | None = None,
    student: str | None = None,
    student_layers: Sequence[str] | None = None,
    seeds: Iterable[int] | None = None,
    classes: Sequence[int] | str | None = None,
    **options,
) -> CKAMatrix:
    """Teacher layer x student layer debiased CKA over the run's samples (paired by seed).

    `layers` (default: the run's) are the teacher's rows and, unless `student_layers` says
    otherwise, the student's columns. `teacher_step`: 'first' (sigma 80, the input both models
    share), 'last' or a step index; it must be recorded in the run. `teacher`/`student`: model keys
    (default: the sidecar's roles). `classes`: 'all' or a list adds per-class matrices. `options`:
    `cka_matrix`'s (resamples, null, blocks, seed, confidence, device, dtype, max_bytes).
    """
    run = run if isinstance(run, EmbedRun) else EmbedRun.open(run)
    t_key, s_key = teacher or run.model_with_role("teacher"), student or run.model_with_role("student")
    t_step = run.resolve_step(t_key, teacher_step)
    s_step = 0
    rows_layers = list(layers or run.layers)
    cols_layers = list(student_layers or rows_layers)
    missing = [f"{m} / {name} / step {step}" for m, names, step in ((t_key, rows_layers, t_step),
                                                                     (s_key, cols_layers, s_step))
               for name in names if not run.has(m, name, step)]
    if missing:
        raise MissingStores(run, missing, sorted(set(rows_layers) | set(cols_layers)), [t_step])
    t_rows, s_rows = run.paired((t_key, t_step), (s_key, s_step), seeds)
    xs = {name: run.features(t_key, name, t_step, t_rows) for name in rows_layers}
    ys = {name: run.features(s_key, name, s_step, s_rows) for name in cols_layers}
    out = cka_matrix(xs, ys, labels=t_rows.labels, classes=classes, **_options(options))
    out.context = {
        "source": _store_source(run, sorted(set(rows_layers) | set(cols_layers)), t_rows),
        "teacher": {"model": t_key, "step": t_step, "sigma": t_rows.sigma, "step_asked": str(teacher_step),
                    **_model_info(run, t_key)},
        "student": {"model": s_key, "step": s_step, "sigma": s_rows.sigma, **_model_info(run, s_key)},
    }
    return out


def sigma_alignment_run(
    run: EmbedRun | str,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    *,
    teacher: str | None = None,
    student: str | None = None,
    seeds: Iterable[int] | None = None,
    **options,
) -> SigmaAlignment:
    """Each student layer against the teacher's same layer at every recorded teacher step (or `steps`).

    Needs a run recorded with `embed --steps all` (or several steps); `options` as in `compare_run`.
    """
    run = run if isinstance(run, EmbedRun) else EmbedRun.open(run)
    t_key, s_key = teacher or run.model_with_role("teacher"), student or run.model_with_role("student")
    names = list(layers or run.layers)
    wanted = list(steps) if steps is not None else run.steps(t_key)
    missing = [f"{m} / {name} / step {step}" for name in names
               for m, step in [(s_key, 0), *((t_key, k) for k in wanted)] if not run.has(m, name, step)]
    if missing or len(wanted) < 2:
        raise MissingStores(run, missing or [f"{t_key}: only step(s) {wanted}"], names, ["all"])
    s_rows = None
    teacher_rows, sigmas = {}, {}
    for k in wanted:
        t_rows, s_rows_k = run.paired((t_key, k), (s_key, 0), seeds)
        if s_rows is not None and not np.array_equal(s_rows.seeds, s_rows_k.seeds):
            raise UserError(f"{run.csv_path}: the teacher's steps hold different seeds; pass seeds=")
        s_rows, sigmas[k] = s_rows_k, t_rows.sigma
        for name in names:
            teacher_rows[(name, k)] = run.features(t_key, name, k, t_rows)
    student_rows = {name: run.features(s_key, name, 0, s_rows) for name in names}
    out = sigma_alignment(teacher_rows, student_rows, sigmas, **_options(options))
    out.context = {"source": _store_source(run, names, s_rows),
                   "teacher": {"model": t_key, **_model_info(run, t_key)},
                   "student": {"model": s_key, "step": 0, "sigma": s_rows.sigma, **_model_info(run, s_key)}}
    return out


class MissingStores(UserError):
    """The run lacks some (model, layer, step) stores; `embed_args` says what `embed` would need to record."""

    def __init__(self, run: EmbedRun, missing: list[str], layers: list[str], steps: list):
        self.run, self.missing, self.layers, self.steps = run, missing, layers, steps
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        super().__init__(f"{run.root}: no activation store for {', '.join(missing[:5])}{more}; record them with "
                         f"`python -m visualizer embed ... --layers {','.join(layers)} --steps "
                         f"{','.join(map(str, steps))}` (the `compare` command can do it: --make-stores)")


def _store_source(run: EmbedRun, layers: Sequence[str], rows: Rows) -> dict:
    pools = {name: {k: run.layer_info(name).get(k) for k in ("shape", "pool", "features")} for name in layers}
    return {"kind": "stores", "run": str(run.root), "csv": str(run.csv_path), "samples": int(len(rows.seeds)),
            "pooled": any(p.get("pool") not in (None, "none") for p in pools.values()), "layers": pools,
            "note": "rows are the run's stored activations (average-pooled where `pool` says so); pooling "
                    "changes the score, so compare only scores made the same way"}


def _model_info(run: EmbedRun, key: str) -> dict:
    m = run.models.get(key, {})
    return {k: m[k] for k in ("adapter", "checkpoint", "sha256", "role") if k in m}


# -- over many samples, from a fresh trace ----------------------------------------------------------

def trace_rows(adapter: DiffusionAdapter, seeds: Sequence[int], labels: Sequence[int] | None,
               layers: Sequence[str], step: str | int = "first", *, batch_size: int = 64,
               settings=None, progress: bool = False) -> tuple[dict[str, np.ndarray], float]:
    """Full-resolution activations of `layers` at one sampler step: ({layer: float16 [n, C*H*W]}, sigma).

    The first step of a multi-step model runs only its first network call (z*80 at sigma 80).
    """
    settings = settings if settings is not None else adapter.sampler_settings()
    count = int(settings.num_steps)
    k = {"first": 0, "last": count - 1}.get(step, step) if isinstance(step, str) else int(step)
    k = k + count if k < 0 else k
    if not 0 <= k < count:
        raise UserError(f"step {step}: {adapter.name} has steps 0..{count - 1}")
    shapes = {name: adapter.layer_shapes()[name][1:] if name in adapter.layer_shapes() else None for name in layers}
    unknown = [name for name in layers if name not in adapter.hookable_layers]
    if unknown:
        raise UserError(f"unknown layer(s) {', '.join(unknown)} for {adapter.name}")
    need = sum(len(seeds) * int(np.prod(s)) * 2 for s in shapes.values() if s is not None)
    if need > MAX_TRACE_BYTES:
        raise UserError(f"{len(seeds)} seeds x {len(layers)} full-resolution layers take {need / 2**30:.1f} GiB; "
                        f"use fewer seeds or layers, or the pooled stores of an embed run")
    out: dict[str, np.ndarray] = {}
    sigma = None
    for start in range(0, len(seeds), batch_size):
        batch = [int(s) for s in seeds[start:start + batch_size]]
        cls = None if labels is None else [int(c) for c in labels[start:start + batch_size]]
        tr = adapter.trace(batch, cls, list(layers), steps=[k], settings=settings,
                           reduce=lambda a: a.flatten(1).half(), forward_only=k == 0, progress=progress)
        sigma = float(tr.sigmas[k])
        for name in layers:
            rows = tr[(name, k)].numpy()
            if name not in out:
                out[name] = np.empty((len(seeds), rows.shape[1]), dtype=np.float16)
            out[name][start:start + len(batch)] = rows
    return out, float(sigma)


def compare_traced(
    teacher: DiffusionAdapter,
    student: DiffusionAdapter,
    seeds: Sequence[int],
    layers: Sequence[str],
    classes: Sequence[int] | str = "balanced",
    teacher_step: str | int = "first",
    *,
    per_class: Sequence[int] | str | None = None,
    batch_size: int = 64,
    settings=None,
    **options,
) -> CKAMatrix:
    """The matrix from a fresh trace at full resolution: `seeds` through both models, class per seed
    ('balanced': position mod classes, or a list cycled over the seeds)."""
    seeds = [int(s) for s in seeds]
    if isinstance(classes, str):
        if classes != "balanced":
            raise UserError(f"classes {classes!r}: expected 'balanced' or a list of class indices")
        labels = [i % max(teacher.num_classes, 1) for i in range(len(seeds))] if teacher.num_classes else None
    else:
        labels = list(np.resize(np.asarray(classes, dtype=np.int64), len(seeds)))
    xs, t_sigma = trace_rows(teacher, seeds, labels, layers, teacher_step, batch_size=batch_size, settings=settings)
    ys, s_sigma = trace_rows(student, seeds, labels, layers, 0, batch_size=batch_size)
    out = cka_matrix(xs, ys, labels=labels, classes=per_class if labels is not None else None, **_options(options))
    settings = settings if settings is not None else teacher.sampler_settings()
    t_step = 0 if teacher_step == "first" else (int(settings.num_steps) - 1 if teacher_step == "last"
                                                 else int(teacher_step) % int(settings.num_steps))
    out.context = {
        "source": {"kind": "trace", "resolution": "full", "samples": len(seeds), "seeds": _ranges(seeds),
                   "pooled": False,
                   "layers": {n: {"shape": list(teacher.layer_shapes()[n][1:]), "pool": "none",
                                  "features": int(xs[n].shape[1])} for n in layers},
                   "note": "rows are full-resolution activations traced now (float16); pooled stores score "
                           "differently"},
        "teacher": {"step": t_step, "sigma": t_sigma, "step_asked": str(teacher_step), **teacher.describe()},
        "student": {"step": 0, "sigma": s_sigma, **student.describe()},
    }
    return out


def _ranges(seeds: Sequence[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in sorted(set(seeds)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


# -- one sample --------------------------------------------------------------------------------------

def reference_means(adapter: DiffusionAdapter, layers: Sequence[str], seeds: Iterable[int] = REFERENCE_SEEDS,
                    settings=None) -> dict[str, torch.Tensor]:
    """Mean activation [C, H, W] per layer at the first network call over `seeds` (classes balanced)."""
    seeds = [int(s) for s in seeds]
    labels = [i % adapter.num_classes for i in range(len(seeds))] if adapter.num_classes else None
    tr = adapter.trace(seeds, labels, list(layers), settings=settings, forward_only=adapter.multi_step,
                       reduce=lambda a: a.float().mean(0, keepdim=True))
    return {name: tr[(name, 0)][0] for name in layers}


def sample_report(
    teacher: DiffusionAdapter,
    student: DiffusionAdapter,
    seed: int,
    class_label: int | None,
    layers: Sequence[str],
    *,
    other_seed: int | None = None,
    means: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
    noise_draws: int = 32,
    settings=None,
) -> dict:
    """Per layer, one sample: teacher vs student at the shared first input (sigma 80), centred cosine and
    spatial CKA, with baselines: noise of the layer's shape, and each model against itself on
    `other_seed` (default seed + 1) of the same class. `means`: (teacher's, student's) from
    `reference_means`, computed here when not given (the app should cache them)."""
    other = int(seed) + 1 if other_seed is None else int(other_seed)
    if other == int(seed):
        raise UserError("other_seed must differ from seed")
    pair = [int(seed), other]
    t = teacher.trace(pair, class_label, list(layers), settings=settings, forward_only=teacher.multi_step)
    s = student.trace(pair, class_label, list(layers), forward_only=student.multi_step)
    if means is None:
        means = (reference_means(teacher, layers, settings=settings), reference_means(student, layers))
    scores = sample_scores({n: t[(n, 0)][0] for n in layers}, {n: s[(n, 0)][0] for n in layers}, means[0],
                           means[1], {n: t[(n, 0)][1] for n in layers}, {n: s[(n, 0)][1] for n in layers},
                           noise_draws=noise_draws)
    return {"label": "one sample: descriptive", "seed": int(seed), "other_seed": other,
            "class_label": None if class_label is None else int(class_label),
            "step": {"teacher": 0, "student": 0, "sigma": float(t.sigmas[0])},
            "centring": f"each model's mean over {len(REFERENCE_SEEDS)} reference seeds, classes balanced",
            "baselines": {"noise": "two independent standard-normal tensors of the layer's shape",
                          "other_seed_a": "the teacher against itself on other_seed, same class",
                          "other_seed_b": "the student against itself on other_seed, same class"},
            "layers": scores}
