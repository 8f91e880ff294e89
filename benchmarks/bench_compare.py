"""Speed of the teacher-vs-student CKA matrix (issue 15's goals): debiased CKA, half-sample intervals, null.

- `--device cuda`: random-weight ImageNet-64 nets written in the official formats (an EDM pickle
  and a DMD2 `checkpoint_model_*/pytorch_model.bin`, loaded through the adapters), 10,000 seeds,
  all 37 legacy layers recorded at the shared first input and pooled as `embed --pool auto` stores
  them (float16, kept on the GPU); timed: the 37 x 37 matrix with 1,000 resamples and the null.
  Goal: under 10 s.
- `--tiny`: the embedded demo on the CPU: its 22 x 22 matrix over its 600 seeds with 200
  resamples and the null, read from the demo's multi-layer stores (`compare --layers all` makes them
  in data/runs/ on first use; making them is not timed). Goal: under 5 s.

Each case runs `--repeats` times after one warm-up; the table gives the median and the spread.

    python benchmarks/bench_compare.py --tiny                 # the CPU demo figure
    python benchmarks/bench_compare.py --device cuda          # the GPU figure
    python benchmarks/bench_compare.py --device cuda --samples 2000 --resamples 200   # smaller

Prints a table and writes benchmarks/out/compare.json (or --out).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from visualizer.metrics.cka import cka_matrix  # noqa: E402

GOALS = {"tiny": 5.0, "cuda": 10.0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def imagenet_rows(device: torch.device, samples: int, batch: int) -> tuple[dict, dict, list[str]]:
    """Pooled rows of both random-weight nets (official formats) for `samples` seeds, on `device`."""
    from visualizer.adapters import get_adapter
    from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
    from visualizer.embeddings.pooling import pool_rows, resolve_pool
    from visualizer.models import EDMPrecond
    from visualizer.models.config import IMAGENET64_KWARGS
    from visualizer.models.layer_names import LEGACY_NAMES

    torch.manual_seed(0)
    net = EDMPrecond(**dict(IMAGENET64_KWARGS, dropout=0.0)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():                 # fill the zero-initialised outputs; the student is a nudged copy
        for p in net.parameters():
            if not p.any():
                p.uniform_(-1, 1, generator=g).mul_((p[0].numel() if p.ndim > 1 else p.numel()) ** -0.5)
    folder = Path(tempfile.mkdtemp(prefix="bench_compare_"))
    write_edm_pickle(net, folder / "edm.pkl")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02 * p.std().nan_to_num(0))
    (folder / "checkpoint_model_000000").mkdir()
    torch.save(net.state_dict(), folder / "checkpoint_model_000000" / "pytorch_model.bin")
    teacher = get_adapter("edm-imagenet-64").from_checkpoint(folder / "edm.pkl", device=device, precision="fp32")
    student = get_adapter("dmd2-imagenet-64").from_checkpoint(folder / "checkpoint_model_000000", device=device,
                                                              precision="fp32")
    layers = LEGACY_NAMES(teacher.net)
    shapes = teacher.layer_shapes()
    pools = {n: resolve_pool("auto", shapes[n][1:], n) for n in layers}       # what `embed --pool auto` stores
    reduce = {n: functools.partial(lambda a, pool: pool_rows(a, pool).half(), pool=pools[n]) for n in layers}
    rows = {}
    for key, adapter in (("teacher", teacher), ("student", student)):
        parts: dict[str, list] = {n: [] for n in layers}
        for start in range(0, samples, batch):
            seeds = list(range(start, min(samples, start + batch)))
            tr = adapter.trace(seeds, [s % 1000 for s in seeds], layers, reduce=reduce, forward_only=True,
                               to_cpu=False)
            for n in layers:
                parts[n].append(tr[(n, 0)])
        rows[key] = {n: torch.cat(v) for n, v in parts.items()}
    return rows["teacher"], rows["student"], layers


def demo_rows() -> tuple[object, list[str]]:
    """The embedded demo's multi-layer run (made once into data/runs/ by the compare command's rule)."""
    from visualizer.adapters.demo import DEMO_EMBEDDINGS
    from visualizer.metrics import cli
    from visualizer.metrics.runs import EmbedRun

    source = EmbedRun.open(DEMO_EMBEDDINGS)
    layers = cli._layers("all", source)
    derived = cli._derived(source, layers, ["first"], "demo", True, RuntimeError("unreachable"))
    return derived, layers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="the embedded demo's 22 x 22 matrix on the CPU")
    p.add_argument("--device", default=None, help="cuda for the full-size case")
    p.add_argument("--samples", type=int, default=10_000, help="seeds of the full-size case (default 10,000)")
    p.add_argument("--resamples", type=int, default=None, help="default 1,000 (GPU) or 200 (--tiny)")
    p.add_argument("--null", type=int, default=1000, help="null draws, at most samples - 1 (default 1000)")
    p.add_argument("--batch", type=int, default=250, help="trace batch of the full-size case")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's top operations of one run")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "compare.json")
    args = p.parse_args(argv)

    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if not args.tiny and device.type != "cuda":
        p.error("the full-size case is meant for a GPU (--device cuda); --tiny runs the CPU demo case")
    resamples = args.resamples or (200 if args.tiny else 1000)
    case = "tiny" if args.tiny else "cuda"
    t0 = time.perf_counter()
    if args.tiny:
        from visualizer.metrics.teacher_student import compare_run

        run, layers = demo_rows()
        prepared = time.perf_counter() - t0

        def work():
            return compare_run(run, layers, "first", resamples=resamples, null=args.null, device=device)
        samples = None
    else:
        xs, ys, layers = imagenet_rows(device, args.samples, args.batch)
        prepared = time.perf_counter() - t0

        def work():
            return cka_matrix(xs, ys, resamples=resamples, null=args.null, device=device)
        samples = args.samples
    print(f"{case}: rows ready in {prepared:.1f} s (not timed); {len(layers)} layers, device {device}", flush=True)

    times = []
    for k in range(args.repeats + 1):                     # run 0 warms up
        sync(device)
        start = time.perf_counter()
        matrix = work()
        sync(device)
        if k:
            times.append(time.perf_counter() - start)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            work()
            sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=40))
    median = statistics.median(times)
    diagonal = matrix.diagonal()
    print(f"{'case':<8}{'matrix':>9}{'samples':>9}{'resamples':>11}{'null':>6}{'median s':>10}{'min s':>8}"
          f"{'max s':>8}{'goal s':>8}  met")
    print(f"{case:<8}{len(layers):>4} x {len(layers):<3}{matrix.n:>8}{resamples:>11}{args.null:>6}{median:>10.2f}"
          f"{min(times):>8.2f}{max(times):>8.2f}{GOALS[case]:>8.1f}  {'yes' if median <= GOALS[case] else 'NO'}")
    cka = [c["cka"] for c in diagonal if c["cka"] is not None]
    print(f"matched layers: CKA {min(cka):.3f} .. {max(cka):.3f}; widest interval "
          f"{max(c['hi'] - c['lo'] for c in diagonal if c['cka'] is not None):.3f}")
    result = {
        "case": case, "layers": len(layers), "samples": matrix.n, "requested_samples": samples,
        "resamples": resamples, "null": args.null, "seconds": times, "median_s": median, "goal_s": GOALS[case],
        "met": median <= GOALS[case], "prepare_s": prepared, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "platform": platform.platform(), "method": matrix.method,
        "command": " ".join(["python", "benchmarks/bench_compare.py", *(argv if argv is not None else sys.argv[1:])]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
