"""`python -m visualizer embed`: sample with each model, record layers, write the UMAP embeddings CSV.

Examples:

    python -m visualizer embed --teacher edm-imagenet-64x64-cond-adm.pkl \\
        --student checkpoint_model_548000/ --seeds 0-999 --out runs/bottleneck
    python -m visualizer embed --model teacher=edm-imagenet-64:edm.pkl \\
        --model student=dmd2-imagenet-64:ckpt/ --layers enc.8x8_block2,dec.16x16_block1 \\
        --steps first,last --preset deterministic --num-steps 40 --out runs/two-layers
    torchrun --nproc_per_node 8 -m visualizer embed ...   # batches spread over 8 GPUs

Rerunning the same command in the same --out folder resumes an interrupted run. Without --out the
run goes to data/runs/<checkpoint names>-<8 hex digits of the arguments> under the current folder, so
the same command finds its folder again (and resumes it) while any other gets its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

from visualizer.cli_args import add_speed_arguments
from visualizer.embeddings.spec import (
    MAX_FEATURES,
    EmbedConfig,
    model_specs,
    parse_classes,
    parse_names,
    parse_pool,
    parse_steps,
    seeds_from_args,
)
from visualizer.metrics.diversity_cli import PROBE_HELP

D = EmbedConfig.defaults()        # every default comes from the config the pipeline runs with
RUNS_DIR = Path("data", "runs")   # relative to the current folder, like `download`'s checkpoints/
# Where the run goes and how fast it runs do not change what it holds, so they do not change its default name.
# Extra maps are made from the same rows, so asking for them later resumes the same run and adds them.
_NOT_IN_NAME = ("out", "progress", "compile", "umap_backend", "maps")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    g = parser.add_argument_group("models")
    g.add_argument("--model", action="append", metavar="KEY=ADAPTER:CHECKPOINT",
                   help="a model to run, e.g. teacher=edm-imagenet-64:edm.pkl (repeatable)")
    g.add_argument("--teacher", metavar="PATH", help="shorthand for --model teacher=<detected adapter>:PATH")
    g.add_argument("--student", metavar="PATH", help="shorthand for --model student=<detected adapter>:PATH")
    g = parser.add_argument_group("samples")
    g.add_argument("--seeds", metavar="RANGES", help="e.g. 0-999 or 0-9,100-109 (inclusive ranges)")
    g.add_argument("--num-samples", type=int, metavar="N", help="N seeds from --seed-start (default 1000)")
    g.add_argument("--seed-start", type=int, metavar="S", help="first seed with --num-samples (default 0)")
    g.add_argument("--classes", default=str(D["classes"]), metavar="MODE",
                   help=f"{D['classes']} (default; balanced: seed i gets class i mod classes, the same for every "
                        "model), "
                        "drawn (the generator's own draw) or a list such as 3,7 (cycled over the seeds)")
    g = parser.add_argument_group("recording")
    g.add_argument("--layers", default=",".join(D["layers"]), metavar="NAMES",
                   help=f"comma-separated layer names, native (enc.8x8_block2) or legacy ({','.join(D['layers'])}, "
                        "the default)")
    g.add_argument("--steps", default=",".join(map(str, D["steps"])), metavar="STEPS",
                   help="steps of multi-step models to record: first (the default; the call at sigma 80 that the "
                        "one-step student shares), last, all, indices, or a mix such as first,last. One-step "
                        "models always record their only step, 0")
    g.add_argument("--pool", default=D["pool"], metavar="POOL",
                   help=f"spatial pooling before flattening: {D['pool']} (default; auto: flatten layers of at most "
                        f"{MAX_FEATURES} values, else the smallest avgK that gets there), none, mean, avg2, avg4, ...")
    g = parser.add_argument_group("sampler and hardware")
    g.add_argument("--preset", metavar="NAME",
                   help="teacher sampler preset (default: the teacher adapter's own; an unknown name lists the "
                        "valid ones)")
    g.add_argument("--num-steps", type=int, metavar="N", help="teacher sampler steps (default: the preset's)")
    g.add_argument("--batch-size", type=int, default=D["batch_size"], metavar="B",
                   help=f"seeds per batch and shard (default {D['batch_size']})")
    add_speed_arguments(g)
    g.add_argument("--device", metavar="DEVICE", help="cuda, cpu, mps (default: the best available); under "
                   "torchrun each rank takes cuda:LOCAL_RANK")
    g = parser.add_argument_group("reduction")
    g.add_argument("--pca-dims", type=int, default=D["pca_dims"], metavar="K",
                   help=f"PCA components per layer (default {D['pca_dims']})")
    g.add_argument("--pca-fit-rows", type=int, default=D["pca_fit_rows"], metavar="N",
                   help=f"rows of the random subsample the PCA is fitted on (default {D['pca_fit_rows']})")
    g.add_argument("--n-neighbors", type=int, default=D["n_neighbors"], metavar="N",
                   help=f"UMAP n_neighbors (default {D['n_neighbors']})")
    g.add_argument("--umap-backend", default=D["umap_backend"], choices=["auto", "umap-learn", "cuml"],
                   help="auto (default): RAPIDS cuML on the GPU when installed, else umap-learn on the CPU")
    g.add_argument("--min-dist", type=float, default=D["min_dist"], metavar="D",
                   help=f"UMAP min_dist (default {D['min_dist']})")
    g.add_argument("--maps", default=D["maps"], choices=["main", "per-layer"],
                   help="main (default): one UMAP of all recorded layers; per-layer: also one map per layer and "
                        "step (that layer's PCA features of the rows at that step), in maps/ and listed in the "
                        "sidecar. Rerunning a finished run with it adds the maps without recomputing activations")
    g.add_argument("--probe", metavar="PROBE",
                   help="also make a probe map of the final images (teacher finals, student outputs, and real images "
                        "with --real) through one probe: " + PROBE_HELP + "; stored as map 'probe' in maps/ and "
                        "the sidecar, its features in probe/")
    g.add_argument("--real", metavar="PATH", help="with --probe: real images on the probe map, an .npz (images, "
                   "labels) or a folder of class folders; 'digits': the demo's held-out digits")
    g.add_argument("--real-count", type=int, metavar="N", help="with --real: at most N real images (a seeded random "
                   "draw; for 'digits', N renderings; default all)")
    g.add_argument("--probe-only", action="store_true", help="with --probe: add the probe map to the finished run in "
                   "--out without sampling or reducing anything else")
    g.add_argument("--random-state", type=int, default=D["random_state"], metavar="S",
                   help=f"seed of the PCA subsample, the randomized SVD and UMAP (default {D['random_state']})")
    g = parser.add_argument_group("output")
    g.add_argument("--out", type=Path, metavar="DIR",
                   help=f"run folder (created; reused to resume). Default: {RUNS_DIR}/<checkpoint names>-<hash of "
                        "the arguments>, printed at the start")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace):
    from visualizer.errors import UserError

    for option in ("pca_dims", "pca_fit_rows", "n_neighbors", "num_steps", "batch_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.n_neighbors < 2:
        raise UserError(f"--n-neighbors must be >= 2, got {args.n_neighbors}")
    if not 0 <= args.min_dist <= 1:
        raise UserError(f"--min-dist must lie in [0, 1], got {args.min_dist}")
    cfg = EmbedConfig(
        models=model_specs(args.model, args.teacher, args.student),
        seeds=seeds_from_args(args.seeds, args.num_samples, args.seed_start),
        out=args.out or RUNS_DIR, classes=parse_classes(args.classes), layers=parse_names(args.layers, "--layers"),
        steps=parse_steps(args.steps), preset=args.preset, num_steps=args.num_steps, batch_size=args.batch_size,
        device=args.device, precision=args.precision, compile=args.compile, pool=parse_pool(args.pool),
        pca_dims=args.pca_dims, pca_fit_rows=args.pca_fit_rows,
        n_neighbors=args.n_neighbors, min_dist=args.min_dist, umap_backend=args.umap_backend, maps=args.maps,
        random_state=args.random_state,
        progress=not args.no_progress,
    )
    return cfg if args.out is not None else dataclasses.replace(cfg, out=default_out(cfg))


def default_out(cfg) -> Path:
    """data/runs/<checkpoint names>-<digest>: the digest covers every argument that shapes the results.

    Deterministic (no clock), so a rerun of the same command resumes its run and every torchrun rank
    agrees on the folder; checkpoint paths count as absolute paths (`./edm.pkl` and `edm.pkl` agree).
    """
    chosen = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _NOT_IN_NAME}
    chosen["models"] = [[m.key, m.adapter, _absolute(m.checkpoint)] for m in cfg.models]
    digest = hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:8]
    names = [_short_name(m.checkpoint) for m in cfg.models]
    label = "_vs_".join(names[:3]) + (f"_and_{len(names) - 3}_more" if len(names) > 3 else "")
    return RUNS_DIR / f"{label}-{digest}"


def _absolute(checkpoint: str) -> str:
    return checkpoint if "://" in checkpoint else os.path.abspath(checkpoint)


def _short_name(checkpoint: str) -> str:
    """The file's stem (`edm-imagenet-64x64-cond-adm`), or its folder's name for DMD2's pytorch_model.bin."""
    path = Path(checkpoint.split("?")[0].rstrip("/"))
    name = path.parent.name if path.stem in ("pytorch_model", "model") and path.parent.name else path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40] or "model"


def run(args: argparse.Namespace) -> int:
    from visualizer.embeddings.pipeline import run_embed
    from visualizer.errors import UserError

    if (args.real is not None or args.real_count is not None or args.probe_only) and args.probe is None:
        raise UserError("--real, --real-count and --probe-only go with --probe")
    if args.real_count is not None and args.real_count < 1:
        raise UserError(f"--real-count must be >= 1, got {args.real_count}")
    if args.probe_only:
        if args.out is None:
            raise UserError("--probe-only needs --out: the finished run folder to add the probe map to")
        return add_probe(args, args.out)
    cfg = config_from_args(args)
    if args.out is None and os.environ.get("RANK", "0") == "0":
        print(f"embed: no --out given; writing to {cfg.out} (the same command resumes it there)", flush=True)
    summary = run_embed(cfg)
    if summary is not None:
        print(summary.table())
        if args.probe is not None:
            add_probe(args, Path(cfg.out))
    return 0


def add_probe(args: argparse.Namespace, out: Path) -> int:
    """The probe map (`visualizer.metrics.probe_map`) of the run in `out`, with the run's reduction settings."""
    from visualizer.metrics.probe_map import add_probe_map

    entry = add_probe_map(out, args.probe, real=args.real, real_count=args.real_count, device=args.device,
                          pca_dims=args.pca_dims, n_neighbors=args.n_neighbors, min_dist=args.min_dist,
                          random_state=args.random_state, umap_backend=args.umap_backend,
                          progress=not args.no_progress)
    real = entry.get("real")
    print(f"probe map: {entry['rows']:,} final images" + (f" and {real['count']:,} real images" if real else "")
          + f" through {entry['probe']['describe']} -> {out / entry['file']} "
          f"({entry['seconds']['total']:.1f} s, of which the probe {entry['seconds']['probe']:.1f} s)")
    return 0
