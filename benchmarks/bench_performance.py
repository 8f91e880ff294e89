"""The performance issue's GPU goals, fast path side by side with our own eager float32 path, in one run.

Full ImageNet-64 network (295.9 M parameters, random weights, dropout 0), the app's and the
pipeline's own code paths:

- teacher click: `Inspector.trajectory`, 256-step FID preset, one seed, l2 heatmaps of all 37
  blocks at every step, images and maps on the host at the end (wall time);
- student click: one-step image plus 37 heatmaps: GPU-side time (CUDA events around sampling
  with capture, maps still on the GPU) and the app's `Inspector.first_look` wall time;
- batch extraction: `record_batch` for DMD2 at batch 256 with and without the bottleneck, and the
  EDM FID preset at batch 64 recording the bottleneck at the first step;
- edited teacher click: the click's trace with a mean-ablation edit beside the same trace unedited;
- fidelity: relative error of the fast path against eager float32 (TF32 off) at batch 1 and 8.

The eager float32 teacher runs `--baseline-steps` steps and is scaled by NFE to 256 steps (the
script says so in its table); eager float32 uses PyTorch's defaults (TF32 convolutions allowed).

    python benchmarks/bench_performance.py                     # on an H200: every GPU goal
    python benchmarks/bench_performance.py --tiny              # small net, CPU: checks the script runs
    python benchmarks/goals.py                                 # the table of all five goals

Prints a table and writes benchmarks/out/performance.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_extract import LAYER as BOTTLENECK  # noqa: E402
from bench_extract import _sync as sync  # noqa: E402
from bench_extract import time_batch  # noqa: E402

from visualizer.adapters.dmd2 import DMD2Adapter  # noqa: E402
from visualizer.adapters.edm import EDMAdapter  # noqa: E402
from visualizer.embeddings.extract import layer_shape, record_batch  # noqa: E402
from visualizer.embeddings.pooling import resolve_pool  # noqa: E402
from visualizer.inspection import Inspector, ModelSlot, Request  # noqa: E402
from visualizer.models import EDMPrecond  # noqa: E402
from visualizer.models.config import IMAGENET64_KWARGS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nets import TINY_KWARGS  # noqa: E402  (the test-only tiny network, for --tiny)

from visualizer.models.device import pick_device  # noqa: E402
from visualizer.trace import Edit, capture  # noqa: E402


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def values_line(values: dict) -> str:
    """'k=v, ...' of a measured case for the console; every run's times (`all_s`, `*_all_s`) stay in the JSON."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
                     if k != "all_s" and not k.endswith("_all_s"))


def randomize_zero_init(net: EDMPrecond) -> EDMPrecond:
    """A fresh EDMPrecond zero-initialises its residual branches and output layer (so F(x) = 0);
    fill those with default-scale noise so that the fidelity check compares a real function."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                p.uniform_(-1, 1, generator=g).mul_(fan_in ** -0.5)
    return net.eval()


class Bench:
    def __init__(self, base: EDMPrecond, device: torch.device):
        self.base, self.device = base, device
        self.layers = base.model.block_names()

    def adapter(self, cls, precision: str, compile: str):
        return cls(copy.deepcopy(self.base), device=self.device, precision=precision, compile=compile)

    # -- goal 1 -------------------------------------------------------------------------------------
    def teacher_click(self, teacher: EDMAdapter, steps: int, clicks: int) -> dict:
        inspector = Inspector([ModelSlot("teacher", teacher, {"preset": "fid", "num_steps": steps})])
        warm, _ = timed(lambda: inspector.trajectory("teacher", Request.make(10_000, 1, self.layers)), self.device)
        times = []
        for k in range(clicks):
            req = Request.make(k, 7 * k % teacher.num_classes, self.layers)
            t, traj = timed(lambda r=req: inspector.trajectory("teacher", r), self.device)
            assert len(traj.steps) == steps and len(traj.steps[-1].maps) == len(self.layers)
            times.append(t)
        return {"steps": steps, "nfe": 2 * steps - 1, "first_click_s": warm, "seconds": statistics.median(times),
                "all_s": times}

    def edited_click(self, teacher: EDMAdapter, steps: int, clicks: int) -> dict:
        """The click's trace (37 l2 maps at every step) with and without an edit: a mean-ablation of half the
        bottleneck's channels at every evaluation, compiled into the graph on the fast path."""
        shape = teacher.layer_shapes()[BOTTLENECK][1:]
        edit = Edit.mean_ablate(BOTTLENECK, torch.zeros(shape), channels=range(shape[0] // 2))
        settings = teacher.sampler_settings("fid", steps)

        def click(k: int, edits: list) -> None:
            teacher.trace([k], 7 * k % teacher.num_classes, self.layers, steps="all", reduce="l2",
                          settings=settings, keep_denoised=True, edits=edits)

        out = {}
        for name, edits in (("unedited", []), ("edited", [edit])):
            timed(lambda e=edits: click(10_000, e), self.device)
            times = [timed(lambda k=k, e=edits: click(k, e), self.device)[0] for k in range(clicks)]
            out[f"{name}_s"], out[f"{name}_all_s"] = statistics.median(times), times
        body = teacher.net.body
        return {**out, "ratio": out["edited_s"] / out["unedited_s"], "steps": steps,
                "eager_edit_calls": 0 if body is None else body.counts["eager_edit"]}

    # -- goal 2 -------------------------------------------------------------------------------------
    def student_click(self, student: DMD2Adapter, clicks: int) -> dict:
        inspector = Inspector([ModelSlot("student", student, {})])
        warm, _ = timed(lambda: inspector.first_look(Request.make(10_000, 1, self.layers)), self.device)
        gpu, wall = [], []
        for k in range(clicks):
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2)) if self.device.type == "cuda" \
                else (None, None)
            sync(self.device)
            if start is not None:
                start.record()
            trace = student.trace([k], k % student.num_classes, self.layers, reduce="l2", to_cpu=False)
            image, maps = trace.final, [trace[(n, 0)] for n in self.layers]
            if end is not None:
                end.record()
            sync(self.device)
            if start is not None:
                gpu.append(start.elapsed_time(end) / 1e3)
            assert len(maps) == len(self.layers) and image.shape[0] == 1
            t, look = timed(lambda k=k: inspector.first_look(Request.make(k + 1_000, k % 10, self.layers)),
                            self.device)
            assert len(look.views["student"].maps) == len(self.layers)
            wall.append(t)
        return {"gpu_s": statistics.median(gpu) if gpu else None, "first_look_wall_s": statistics.median(wall),
                "first_click_s": warm, "gpu_all_s": gpu}

    # -- goal 3 -------------------------------------------------------------------------------------
    def extraction(self, adapter, batch: int, record: bool, repeats: int, **sample_kw) -> dict:
        """`bench_extract.time_batch` after one timed warm-up batch (2 teacher steps: compiles the same graph)."""
        pools = {BOTTLENECK: resolve_pool("auto", layer_shape(adapter, BOTTLENECK), BOTTLENECK)}
        seeds = list(range(batch))
        labels = [s % adapter.num_classes for s in seeds]
        warm_kw = {**sample_kw, "num_steps": 2} if sample_kw else {}
        first, _ = timed(lambda: record_batch(adapter, seeds, labels, pools, [0], warm_kw, record=record),
                         self.device)
        return {**time_batch(adapter, batch, pools, record, repeats, warmup=0, **sample_kw), "first_batch_s": first}

    # -- fidelity -----------------------------------------------------------------------------------
    def fidelity(self, fast, reference) -> dict:
        """Relative error of the denoised image and of every block's l2 heatmap at batch 1 (the clicks' graph)."""
        x, sigma, labels, _ = reference.first_input([0], [1])
        maps = {}
        for name, adapter in (("ref", reference), ("fast", fast)):
            with torch.backends.cudnn.flags(enabled=True, allow_tf32=False), torch.no_grad():
                for _ in range(3):
                    with capture(adapter.net, self.layers, reduce="l2", to_cpu=False) as cap:
                        out = adapter.net(x * 0.05, 4.0, labels)
            maps[name] = (out, [cap.tensor(n, 0) for n in self.layers])
        (a, ma), (b, mb) = maps["ref"], maps["fast"]
        return {"denoised": rel(b, a), "heatmaps_max": max(rel(q, p) for p, q in zip(ma, mb, strict=True))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="small network, few steps: checks that the script runs")
    p.add_argument("--device", default=None)
    p.add_argument("--compile", default="full", choices=["off", "graphs", "full"], help="the fast path's mode")
    p.add_argument("--precision", default="bf16", choices=["fp32", "fp16", "bf16"], help="the fast path's precision")
    p.add_argument("--steps", type=int, default=None, help="teacher steps of the fast path (default 256)")
    p.add_argument("--baseline-steps", type=int, default=None,
                   help="teacher steps of the eager float32 baseline, scaled by NFE (default 16)")
    p.add_argument("--clicks", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="timed DMD2 batches")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["teacher", "edited", "student", "dmd2", "edm", "baseline"],
                   help="cases to leave out")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "performance.json")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    if not args.tiny and device.type != "cuda":
        p.error("the full-size benchmark is meant for a GPU; use --tiny to check the script")
    steps = args.steps or (3 if args.tiny else 256)
    base_steps = args.baseline_steps or (2 if args.tiny else 16)
    dmd2_batch, edm_batch = (8, 2) if args.tiny else (256, 64)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    base = randomize_zero_init(EDMPrecond(**(TINY_KWARGS if args.tiny else dict(IMAGENET64_KWARGS, dropout=0.0))))
    bench = Bench(base, device)
    scale = (2 * 256 - 1) / (2 * base_steps - 1)
    fast_name = f"{args.compile} {args.precision}"
    results: dict = {"fast": {"compile": args.compile, "precision": args.precision}, "cases": []}

    results.update({
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or "cpu", "torch": torch.__version__, "tiny": args.tiny, "steps": steps,
        "baseline_steps": base_steps, "command": " ".join(["python", "benchmarks/bench_performance.py",
                                                          *(argv or sys.argv[1:])]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": False,
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def add(case: str, path: str, **values) -> None:
        """Records a case and rewrites the file, so a run cut short by a time limit keeps what it measured."""
        results["cases"].append({"case": case, "path": path, **values})
        args.out.write_text(json.dumps(results, indent=2))
        print(f"  {case:<34} {path:<16} " + values_line(values), flush=True)

    eager = {"teacher": bench.adapter(EDMAdapter, "fp32", "off"), "student": bench.adapter(DMD2Adapter, "fp32", "off")}
    fast = {"teacher": bench.adapter(EDMAdapter, args.precision, args.compile),
            "student": bench.adapter(DMD2Adapter, args.precision, args.compile)}
    results["fidelity"] = bench.fidelity(fast["student"], eager["student"])
    print(f"fidelity (relative error vs eager fp32, TF32 off): {results['fidelity']}", flush=True)

    if "teacher" not in args.skip:
        r = bench.teacher_click(fast["teacher"], steps, args.clicks)
        add("teacher click (256-step fid)", fast_name, **{**r, "seconds_256": r["seconds"] * 511 / r["nfe"]})
        if "baseline" not in args.skip:
            r = bench.teacher_click(eager["teacher"], base_steps, 1)
            add("teacher click (256-step fid)", "eager fp32", **{**r, "seconds_256": r["seconds"] * scale})
    if "edited" not in args.skip:
        add("teacher click, edited vs not", fast_name, **bench.edited_click(fast["teacher"], steps, args.clicks))
    if "student" not in args.skip:
        add("student click", fast_name, **bench.student_click(fast["student"], args.clicks * 3))
        if "baseline" not in args.skip:
            add("student click", "eager fp32", **bench.student_click(eager["student"], args.clicks))
    if "dmd2" not in args.skip:
        for path, adapter in ((fast_name, fast["student"]), ("eager fp32", eager["student"])):
            if path == "eager fp32" and "baseline" in args.skip:
                continue
            for record in (True, False):
                add(f"dmd2 batch{' + ' + BOTTLENECK if record else ''}", path,
                    **bench.extraction(adapter, dmd2_batch, record, args.repeats))
    if "edm" not in args.skip:
        r = bench.extraction(fast["teacher"], edm_batch, True, 1, preset="fid", num_steps=steps)
        add("edm fid batch + bottleneck", fast_name, **{**r, "seconds_per_image_256": r["seconds_per_image"] * 511
                                                          / (2 * steps - 1)})
        if "baseline" not in args.skip:
            r = bench.extraction(eager["teacher"], edm_batch, True, 1, preset="fid", num_steps=base_steps)
            add("edm fid batch + bottleneck", "eager fp32", **{**r, "seconds_per_image_256": r["seconds_per_image"]
                                                               * scale})

    results.update({"counts": {k: dict(a.net.body.counts) for k, a in fast.items() if a.net.body},
                    "complete": True})
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
