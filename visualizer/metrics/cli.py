"""`python -m visualizer compare [RUN]`: teacher vs student over many samples, as JSON and CSV.

Examples:

    python -m visualizer compare                              # the shipped demo run, its bottleneck
    python -m visualizer compare --layers all                 # the demo's 22 x 22 matrix (stores made once)
    python -m visualizer compare data/runs/imagenet --layers all --teacher-step last --per-class 1,207
    python -m visualizer compare data/runs/imagenet --sigma-alignment      # needs embed --steps all
    python -m visualizer compare data/runs/imagenet --trace --seeds 0-255  # full resolution, traced now

Writes <out>/matrix-step<k>.json and .csv (and sigma-alignment.json and .csv), and prints the
matched layers with their intervals and nulls. The JSON says where the rows came from (the run's
pooled stores, or a fresh trace at full resolution) and which teacher step and sigma were compared.
Stores a run lacks are recorded by `embed` into data/runs/ (same models, seeds and settings, more
layers or steps): on the shipped demo automatically, elsewhere with --make-stores.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path

OUT_DIR = Path("data", "compare")
RUNS_DIR = Path("data", "runs")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument("run", nargs="?", metavar="RUN",
                        help="an `embed` run folder or its embeddings.csv (default: the shipped demo run)")
    g = parser.add_argument_group("what to compare")
    g.add_argument("--layers", metavar="NAMES", help="comma-separated layers, or 'all' (every legacy layer name); "
                   "default: the run's layers")
    g.add_argument("--teacher-step", default="first", metavar="STEP",
                   help="teacher sampler step to compare with the student: first (default; sigma 80, the input "
                        "both share), last, or an index (negative from the end)")
    g.add_argument("--sigma-alignment", action="store_true",
                   help="also: each student layer against the teacher's same layer at every recorded step")
    g.add_argument("--per-class", metavar="CLASSES", help="also one matrix per class: 'all' or indices like 1,207")
    g.add_argument("--seeds", metavar="RANGES", help="only these seeds of the run, e.g. 0-99,200-299")
    g.add_argument("--teacher-model", metavar="KEY", help="the teacher's model key (default: role 'teacher')")
    g.add_argument("--student-model", metavar="KEY", help="the student's model key (default: role 'student')")
    g.add_argument("--trace", action="store_true",
                   help="rows from a fresh trace at full resolution (the run's models, its seeds or --seeds) "
                        "instead of the run's pooled stores")
    g = parser.add_argument_group("statistics")
    g.add_argument("--resamples", type=int, default=200, metavar="B", help="half-sample resamples (default 200)")
    g.add_argument("--null", type=int, default=1000, metavar="P",
                   help="shuffled-pair null draws, at most samples - 1 (default 1000)")
    g.add_argument("--blocks", type=int, default=100, metavar="G",
                   help="blocks the halves are made of (default 100)")
    g.add_argument("--confidence", type=float, default=0.95, metavar="C", help="interval level (default 0.95)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the resamples and shuffles (default 0)")
    g = parser.add_argument_group("running")
    g.add_argument("--device", metavar="DEVICE", help="where the Gram matrices live: cpu (default), cuda")
    g.add_argument("--make-stores", action="store_true",
                   help="record missing layers or steps with `embed` into data/runs/ (automatic for the demo)")
    g.add_argument("--out", type=Path, metavar="DIR", help=f"output folder (default {OUT_DIR}/<run name>)")


def run(args: argparse.Namespace) -> int:
    from visualizer.adapters.demo import DEMO_EMBEDDINGS
    from visualizer.errors import UserError
    from visualizer.metrics.runs import EmbedRun
    from visualizer.metrics.teacher_student import MissingStores, compare_run, sigma_alignment_run

    for name in ("resamples", "null"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be >= 0")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must lie in (0, 1), got {args.confidence}")
    source = EmbedRun.open(args.run or DEMO_EMBEDDINGS)
    is_demo = Path(source.csv_path).resolve() == DEMO_EMBEDDINGS.resolve()
    label = "demo" if is_demo else source.name
    layers = _layers(args.layers, source)
    seeds = _seeds(args.seeds)
    options = dict(resamples=args.resamples, null=args.null, blocks=args.blocks, seed=args.seed,
                   confidence=args.confidence, device=args.device or "cpu")
    models = dict(teacher=args.teacher_model, student=args.student_model)
    out_dir = args.out or OUT_DIR / label
    written = []

    # Stores the run lacks are recorded once, with every step when the sigma alignment needs them anyway.
    steps = ["all"] if args.sigma_alignment else \
        ["first"] if str(args.teacher_step) in ("first", "0") else ["first", str(args.teacher_step)]
    allowed = is_demo or args.make_stores

    start = time.perf_counter()
    if args.trace:
        matrix = _traced(source, layers, args, seeds, options)
    else:
        try:
            matrix = compare_run(source, layers, args.teacher_step, seeds=seeds, classes=_classes(args.per_class),
                                 **models, **options)
        except MissingStores as e:
            derived = _derived(source, e.layers, steps, label, allowed, e)
            start = time.perf_counter()
            matrix = compare_run(derived, layers, args.teacher_step, seeds=seeds,
                                 classes=_classes(args.per_class), **models, **options)
            matrix.context["source"]["derived_from"] = str(source.root)
    seconds = time.perf_counter() - start
    matrix.context["seconds"] = round(seconds, 3)
    step = matrix.context["teacher"]["step"]
    written += _write_matrix(matrix, out_dir / f"matrix-step{step}{'-trace' if args.trace else ''}")
    print(_matrix_table(matrix, seconds))

    if args.sigma_alignment:
        try:
            aligned = sigma_alignment_run(source, layers, seeds=seeds, **models, **options)
        except MissingStores as e:
            derived = _derived(source, e.layers, ["all"], label, allowed, e)
            aligned = sigma_alignment_run(derived, layers, seeds=seeds, **models, **options)
            aligned.context["source"]["derived_from"] = str(source.root)
        written += _write_alignment(aligned, out_dir / "sigma-alignment")
        print(_alignment_table(aligned))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


# -- arguments -------------------------------------------------------------------------------------

def _layers(text: str | None, run) -> list[str] | None:
    if text is None:
        return None
    if text.strip() == "all":
        from visualizer.models.layer_names import LEGACY_NAMES

        return LEGACY_NAMES(run.open_adapter(run.model_with_role("teacher"), device="cpu").net)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        from visualizer.errors import UserError
        raise UserError("--layers: no names given")
    return names


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    from visualizer.errors import UserError
    out = []
    for part in text.split(","):
        try:
            a, _, b = part.strip().partition("-")
            out += list(range(int(a), int(b or a) + 1))
        except ValueError:
            raise UserError(f"--seeds {text!r}: expected ranges like 0-99,200-299") from None
    return out


def _classes(text: str | None):
    if text is None:
        return None
    if text.strip() == "all":
        return "all"
    from visualizer.errors import UserError
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise UserError(f"--per-class {text!r}: expected 'all' or indices like 1,207") from None


# -- stores made on first use ---------------------------------------------------------------------

def embed_arguments(run, layers: list[str], steps: list[str], out: Path) -> list[str]:
    """The `embed` command line that records `layers` at `steps` with everything else as the run had it."""
    side = run.sidecar
    argv = []
    for key, info in run.models.items():
        argv += ["--model", f"{key}={info['adapter']}:{run.checkpoint(key)}"]
    ranges = side.get("seeds", {}).get("ranges") or [[int(s), int(s)] for s in
                                                      sorted({int(x) for r in run.table.values() for x in r.seeds})]
    argv += ["--seeds", ",".join(f"{a}-{b}" for a, b in ranges)]
    argv += ["--classes", str(side.get("classes", {}).get("mode", "balanced"))]
    argv += ["--layers", ",".join(layers), "--steps", ",".join(steps)]
    teacher = side.get("sampler", {}).get(run.model_with_role("teacher"), {})
    if teacher.get("preset"):
        argv += ["--preset", str(teacher["preset"])]
    if teacher.get("num_steps"):
        argv += ["--num-steps", str(teacher["num_steps"])]
    reduction = side.get("reduction", {})
    argv += ["--pool", str(reduction.get("pool", "auto"))]
    umap = reduction.get("umap", {})
    for option, value in (("--pca-dims", reduction.get("pca", {}).get("dims")),
                          ("--n-neighbors", umap.get("n_neighbors")), ("--min-dist", umap.get("min_dist")),
                          ("--random-state", umap.get("random_state")),
                          ("--batch-size", side.get("run", {}).get("batch_size"))):
        if value is not None:
            argv += [option, str(value)]
    return argv + ["--out", str(out)]


def _derived(run, layers: list[str], steps: list[str], label: str, allowed: bool, error: Exception):
    """A run with the same models, seeds and settings as `run` that holds `layers` at `steps`: one made
    before (any that covers them), or recorded now with `embed` into data/runs/<label>-<steps>-<digest>."""
    import argparse as _argparse

    from visualizer.embeddings import cli as embed_cli
    from visualizer.metrics.runs import EmbedRun

    for folder in sorted(RUNS_DIR.glob(f"{label}-*-*")):
        candidate = _covering(folder, run, layers, steps)
        if candidate is not None:
            return candidate
    if not allowed:
        raise error
    digest = hashlib.sha256(json.dumps([str(run.csv_path.resolve()), layers, steps]).encode()).hexdigest()[:8]
    out = RUNS_DIR / f"{label}-{'all-steps' if steps == ['all'] else 'steps-' + '-'.join(steps)}-{digest}"
    argv = embed_arguments(run, layers, steps, out)
    print(f"compare: recording {len(layers)} layer(s) at steps {','.join(steps)} into {out} (once):\n"
          f"  python -m visualizer embed {' '.join(argv)}", flush=True)
    parser = _argparse.ArgumentParser(prog="python -m visualizer embed")
    embed_cli.configure(parser)
    embed_cli.run(parser.parse_args(argv))
    return EmbedRun.open(out)


def _covering(folder: Path, run, layers: list[str], steps: list[str]):
    """The run in `folder` if it was made from `run` (same checkpoints and seeds) and holds the layers and steps."""
    from visualizer.errors import UserError
    from visualizer.metrics.runs import EmbedRun

    try:
        other = EmbedRun.open(folder)
    except UserError:
        return None
    same = all(other.models.get(k, {}).get("sha256") == m.get("sha256") for k, m in run.models.items()) \
        and other.sidecar.get("seeds") == run.sidecar.get("seeds")
    if not same:
        return None
    teacher = other.model_with_role("teacher")
    wanted = other.steps(teacher) if steps == ["all"] else [other.resolve_step(teacher, s) for s in steps]
    if steps == ["all"] and len(wanted) < other.num_steps(teacher):
        return None
    keys = [(k, s) for k in other.models for s in (wanted if k == teacher else [0])]
    return other if all(other.has(k, name, s) for k, s in keys for name in layers) else None


def _traced(run, layers, args, seeds, options):
    from visualizer.metrics.teacher_student import compare_traced

    t_key = args.teacher_model or run.model_with_role("teacher")
    s_key = args.student_model or run.model_with_role("student")
    adapters = {k: run.open_adapter(k, args.device) for k in (t_key, s_key)}
    t_rows, _ = run.paired((t_key, run.steps(t_key)[0]), (s_key, 0), seeds)
    settings = run.sampler_settings(t_key, adapters[t_key])
    matrix = compare_traced(adapters[t_key], adapters[s_key], t_rows.seeds.tolist(), layers or run.layers,
                            t_rows.labels.tolist(), args.teacher_step, per_class=_classes(args.per_class),
                            settings=settings, **options)
    matrix.context["source"]["run"] = str(run.root)
    return matrix


# -- output ----------------------------------------------------------------------------------------

MATRIX_COLUMNS = ("scope", "teacher_layer", "student_layer", "teacher_step", "teacher_sigma", "n", "cka", "lo", "hi",
                  "se", "null_mean", "null_lo", "null_hi", "p_null", "source", "pooled")


def _write_matrix(matrix, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = stem.with_suffix(".json"), stem.with_suffix(".csv")
    json_path.write_text(json.dumps(matrix.to_dict(), indent=1))
    ctx = matrix.context
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MATRIX_COLUMNS)
        for scope, m in [("all", matrix), *((f"class {c}", m) for c, m in matrix.per_class.items())]:
            for cell in m.cells():
                w.writerow([scope, cell["row"], cell["col"], ctx["teacher"]["step"], ctx["teacher"]["sigma"],
                            cell["n"], *(_fmt(cell[k]) for k in ("cka", "lo", "hi", "se", "null_mean", "null_lo",
                                                                  "null_hi", "p_null")),
                            ctx["source"]["kind"], ctx["source"]["pooled"]])
    return [json_path, csv_path]


def _write_alignment(aligned, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = stem.with_suffix(".json"), stem.with_suffix(".csv")
    json_path.write_text(json.dumps(aligned.to_dict(), indent=1))
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("student_layer", "teacher_step", "teacher_sigma", "n", "cka", "lo", "hi", "null_lo", "null_hi",
                    "ridge"))
        for i, name in enumerate(aligned.layers):
            for j, step in enumerate(aligned.steps):
                w.writerow([name, step, aligned.sigmas[j], aligned.n,
                            *(_fmt(getattr(aligned, k)[i, j]) for k in ("estimate", "lo", "hi", "null_lo", "null_hi")),
                            int(aligned.ridge_step[i] == step)])
    return [json_path, csv_path]


def _fmt(v) -> str:
    return "" if v is None or v != v else f"{float(v):.6g}"


def _matrix_table(matrix, seconds: float) -> str:
    ctx = matrix.context
    t, s, src = ctx["teacher"], ctx["student"], ctx["source"]
    where = f"the pooled stores of {src['run']}" if src["kind"] == "stores" else "a fresh trace at full resolution"
    head = (f"debiased CKA over {matrix.n} samples, rows from {where}; teacher step {t['step']} (sigma {t['sigma']:g}) "
            f"vs student step {s['step']} (sigma {s['sigma']:g}); {len(matrix.rows)} x {len(matrix.cols)} matrix, "
            f"{matrix.method['resamples']} half-sample resamples, {matrix.method['null_draws']} shuffles, "
            f"{seconds:.2f} s")
    lines = [head, f"{'layer':<22}{'CKA':>8}  {'interval':<18}{'null (shuffled)':<20}{'p':>7}"]
    for c in matrix.diagonal():
        lines.append(f"{c['row']:<22}{_f(c['cka']):>8}  [{_f(c['lo'])}, {_f(c['hi'])}]".ljust(50)
                     + f"[{_f(c['null_lo'])}, {_f(c['null_hi'])}]".ljust(20) + f"{_f(c['p_null']):>7}")
    return "\n".join(lines)


def _alignment_table(aligned) -> str:
    lines = [f"sigma alignment over {aligned.n} samples: the teacher step each student layer resembles most",
             f"{'layer':<22}{'peak sigma':>11}  {'interval':<20}{'CKA':>7}{'share':>7}"]
    for r in aligned.ridge():
        lines.append(f"{r['layer']:<22}{_f(r['sigma'], 4):>11}  "
                     f"[{_f(r['sigma_lo'], 4)}, {_f(r['sigma_hi'], 4)}]".ljust(35) + f"{_f(r['cka']):>7}"
                     f"{_f(r['share'], 2):>7}")
    return "\n".join(lines)


def _f(v, digits: int = 3) -> str:
    return "nan" if v is None else f"{v:.{digits}g}" if digits != 3 else f"{v:.3f}"
