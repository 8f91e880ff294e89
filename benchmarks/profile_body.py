"""Where a network evaluation's time goes: the U-Net body alone under each fast-path setting, and a profile.

    python benchmarks/profile_body.py --configs graphs:bf16:1 full:bf16:1 full-cl:bf16:256
    python benchmarks/profile_body.py --configs eager:fp32:1 --profile full:bf16 --tiny --device cpu

A config is MODE:PRECISION:BATCH with MODE one of eager (no FastBody), direct (FastBody without
graphs), graphs, full (torch.compile + graphs), each with an optional '-cl' for channels-last.
For each it prints the first-call time (compilation, capture), the median GPU time per forward
(CUDA events, 20 calls) and, on a GPU, where 5 profiled forwards' GPU time goes by kernel kind
(`KINDS`). `--profile MODE:PRECISION` runs an 8-step teacher click (37 heatmaps) under
torch.profiler and prints the kernels that take the GPU's time, their kinds and the CPU time per
evaluation. Writes benchmarks/out/profile_body.json (and profile_<config>.txt with the profiler
table); `goals.py` shows these kinds beside a missed goal.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_performance import randomize_zero_init  # noqa: E402

from visualizer.adapters.edm import EDMAdapter  # noqa: E402
from visualizer.inspection import Inspector, ModelSlot, Request  # noqa: E402
from visualizer.models import EDMPrecond  # noqa: E402
from visualizer.models.acceleration import FastBody  # noqa: E402
from visualizer.models.config import IMAGENET64_KWARGS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nets import TINY_KWARGS  # noqa: E402  (the test-only tiny network, for --tiny)

from visualizer.models.device import pick_device  # noqa: E402
from visualizer.models.networks import PRECISIONS  # noqa: E402

# Kernel kinds by name, first match wins: the compiler's fused kernels, attention, cuDNN/CUTLASS convolutions
# ("fprop"; "dgrad" for the transposed ones), matrix products, copies and layout changes, reductions.
KINDS = (
    ("fused by the compiler (Triton)", r"^triton_"),   # its names list the fused ops ("..._convolution_0"): first
    ("attention", r"flash|fmha|attention|sdpa"),
    ("convolution", r"conv|fprop|dgrad|implicit_gemm|winograd"),
    ("matrix product (gemm)", r"gemm|gemv|cublas|cutlass|sm\d+_xmma|matmul"),
    ("layout changes and copies", r"nchw|nhwc|memcpy|memset|copy|transpose|cat"),
    ("reductions", r"reduce|norm|softmax"),
    ("other elementwise", r"elementwise|vectorized|unrolled"),
)


def kernel_kinds(events) -> dict[str, float]:
    """Seconds of GPU time per kernel kind from `prof.key_averages()` (events without GPU time are skipped)."""
    out: dict[str, float] = {}
    for e in events:
        if e.self_device_time_total <= 0 or e.key.startswith(("aten::", "cuda", "Torch-Compiled", "## ")):
            continue
        kind = next((k for k, pattern in KINDS if re.search(pattern, e.key, re.IGNORECASE)), "other")
        out[kind] = out.get(kind, 0.0) + e.self_device_time_total / 1e6
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def print_kinds(kinds: dict[str, float]) -> None:
    total = sum(kinds.values()) or 1.0
    for kind, seconds in kinds.items():
        print(f"    {kind:<34} {seconds * 1e3:9.2f} ms  {seconds / total:6.1%}", flush=True)


def build(base: EDMPrecond, mode: str, precision: str, device: torch.device) -> EDMPrecond:
    """The adapter's own set-up (device, precision, weights cast once), then this script's FastBody."""
    net = EDMAdapter(copy.deepcopy(base), device=device, precision=precision).net
    install(net, mode)
    return net


def install(net: EDMPrecond, mode: str) -> None:
    kind, _, cl = mode.partition("-")
    if kind != "eager":
        net.body = FastBody(net.model, compile=kind == "full", graphs=kind in ("graphs", "full"),
                            graph_max_batch=1024, channels_last=cl == "cl")


def time_body(net: EDMPrecond, batch: int, device: torch.device, calls: int = 20) -> dict:
    x = torch.randn(batch, net.img_channels, net.img_resolution, net.img_resolution, device=device)
    labels = torch.eye(net.label_dim, device=device)[torch.arange(batch, device=device) % net.label_dim]
    sigma = torch.tensor(2.0)
    with torch.no_grad():
        t = time.perf_counter()
        net(x, sigma, labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        first = time.perf_counter() - t
        times = []
        for _ in range(calls):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                net(x, sigma, labels)
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t = time.perf_counter()
                net(x, sigma, labels)
                times.append(time.perf_counter() - t)
        kinds = None
        if device.type == "cuda":
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                    torch.profiler.ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    net(x, sigma, labels)
                torch.cuda.synchronize()
            kinds = {k: v / 5 for k, v in kernel_kinds(prof.key_averages()).items()}
    return {"first_call_s": first, "seconds": statistics.median(times), "gpu_kinds_per_forward_s": kinds}


def profile_click(base: EDMPrecond, mode: str, precision: str, device: torch.device, out: Path) -> dict:
    adapter = EDMAdapter(copy.deepcopy(base), device=device, precision=precision)
    net = adapter.net
    install(net, mode)
    layers = net.model.block_names()
    inspector = Inspector([ModelSlot("teacher", adapter, {"preset": "fid", "num_steps": 8})])
    inspector.trajectory("teacher", Request.make(99, 1, layers))          # compile, capture
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    t = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        inspector.trajectory("teacher", Request.make(5, 3, layers))
    wall = time.perf_counter() - t
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=30)
    out.write_text(table)
    events = prof.key_averages()
    gpu = sum(e.self_device_time_total for e in events) / 1e6 if device.type == "cuda" else None
    return {"mode": mode, "precision": precision, "nfe": 15, "wall_s": wall, "gpu_kernel_s": gpu,
            "gpu_kinds_s": kernel_kinds(events) if device.type == "cuda" else None,
            "wall_per_nfe_ms": wall / 15 * 1e3, "gpu_per_nfe_ms": None if gpu is None else gpu / 15 * 1e3,
            "table": str(out), "calls": dict(net.body.counts) if net.body is not None else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="*", default=[])
    p.add_argument("--profile", nargs="*", default=[], help="MODE:PRECISION of teacher clicks to profile")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    base = randomize_zero_init(EDMPrecond(**(TINY_KWARGS if args.tiny else dict(IMAGENET64_KWARGS, dropout=0.0))))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "body": [], "profiles": []}

    def save() -> None:
        (args.out / "profile_body.json").write_text(json.dumps(results, indent=2))

    for config in args.configs:
        mode, precision, batch = config.split(":")
        assert precision in PRECISIONS
        net = build(base, mode, precision, device)
        r = {"config": config, **time_body(net, int(batch), device)}
        r["images_per_s"] = int(batch) / r["seconds"]
        r["calls"] = dict(net.body.counts) if net.body is not None else {"eager": 21}
        results["body"].append(r)
        print(f"{config:<22} first call {r['first_call_s']:8.2f} s   per forward {r['seconds'] * 1e3:8.2f} ms"
              f"   {r['images_per_s']:9.1f} img/s", flush=True)
        if r["gpu_kinds_per_forward_s"]:
            print_kinds(r["gpu_kinds_per_forward_s"])
        del net
        save()
    for spec in args.profile:
        mode, precision = spec.split(":")
        r = profile_click(base, mode, precision, device, args.out / f"profile_{mode}_{precision}.txt")
        results["profiles"].append(r)
        print(json.dumps(r), flush=True)
        print(Path(r["table"]).read_text(), flush=True)
        if r["gpu_kinds_s"]:
            print("GPU time of the click by kernel kind:")
            print_kinds(r["gpu_kinds_s"])
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
