"""Extraction speed of the `embed` pipeline on the full ImageNet-64 network (random weights).

Measures, with the pipeline's own `record_batch` (hooks, pooling, float16 copy to the host):
- DMD2 one-step generation at batch 256, recording the bottleneck, and the same without recording
  (the difference is the recording overhead): images/s and peak GPU memory;
- the EDM teacher with the FID preset (256 Heun steps, 511 network calls) at batch 64, recording
  the bottleneck at the first step: seconds per image.

    python benchmarks/bench_extract.py            # GPU, full size (the numbers that matter)
    python benchmarks/bench_extract.py --tiny     # small net on the CPU: checks that the script runs

Prints a table and writes benchmarks/out/bench_extract.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visualizer.adapters.dmd2 import DMD2Adapter  # noqa: E402
from visualizer.adapters.edm import EDMAdapter  # noqa: E402
from visualizer.embeddings.extract import layer_shape, record_batch  # noqa: E402
from visualizer.embeddings.pooling import resolve_pool  # noqa: E402
from visualizer.models import EDMPrecond  # noqa: E402
from visualizer.models.config import IMAGENET64_KWARGS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nets import TINY_KWARGS  # noqa: E402  (the test-only tiny network, for --tiny)

from visualizer.models.device import pick_device  # noqa: E402

LAYER = "encoder_bottleneck"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_batch(adapter, batch: int, pools: dict, record: bool, repeats: int, warmup: int, **kw) -> dict:
    seeds = list(range(batch))
    labels = [s % max(adapter.num_classes, 1) for s in seeds]
    for _ in range(warmup):
        record_batch(adapter, seeds, labels, pools, [0], kw, record=record)
    _peak_reset(adapter.device)
    times = []
    for r in range(repeats):
        _sync(adapter.device)
        t = time.perf_counter()
        record_batch(adapter, [s + (r + 1) * batch for s in seeds], labels, pools, [0], kw, record=record)
        _sync(adapter.device)
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return {"batch": batch, "record": record, "seconds_per_batch": median, "images_per_s": batch / median,
            "seconds_per_image": median / batch, "peak_gib": _peak_gib(adapter.device), "repeats": repeats,
            "all_s": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="small network and batches, for a CPU check")
    p.add_argument("--device", default=None, help="default: the best available")
    p.add_argument("--repeats", type=int, default=None, help="timed DMD2 batches (default 5; tiny 2)")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default=None,
                   help="override both models' U-Net precision (default: DMD2 fp32, EDM fp16 as published)")
    p.add_argument("--edm-steps", type=int, default=None, help="teacher steps (default 256; tiny 4)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "bench_extract.json")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    if not args.tiny and device.type != "cuda":
        p.error("the full-size benchmark is meant for a GPU; use --tiny to check the script on the CPU")
    kwargs = TINY_KWARGS if args.tiny else dict(IMAGENET64_KWARGS, dropout=0.0)
    dmd2_batch, edm_batch = (16, 4) if args.tiny else (256, 64)
    edm_steps = args.edm_steps or (4 if args.tiny else 256)
    repeats = args.repeats or (2 if args.tiny else 5)
    torch.backends.cudnn.benchmark = True

    # DMD2 generators run in float32 as loaded; the official EDM pickle asks for the float16 U-Net body.
    student = DMD2Adapter(EDMPrecond(**kwargs), device=device, precision=args.precision)
    teacher = EDMAdapter(EDMPrecond(**kwargs, use_fp16=True), device=device, precision=args.precision)
    pools = {LAYER: resolve_pool("auto", layer_shape(student, LAYER), LAYER)}

    rows = []
    for record in (True, False):
        r = time_batch(student, dmd2_batch, pools, record, repeats, warmup=1)
        rows.append({"case": f"dmd2 1-step{' + ' + LAYER if record else ''}", **r})
        del r
    student.net.cpu()
    _peak_reset(device)
    teacher_kw = {"preset": "fid", "num_steps": edm_steps}
    record_batch(teacher, list(range(edm_batch)), None, pools, [0], {"preset": "fid", "num_steps": 2})  # warm-up
    r = time_batch(teacher, edm_batch, pools, True, repeats=1, warmup=0, **teacher_kw)
    rows.append({"case": f"edm fid {edm_steps} steps + {LAYER}", **r})

    with_rec, without = rows[0]["seconds_per_batch"], rows[1]["seconds_per_batch"]
    overhead = with_rec / without - 1
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}"
          f"{' (tiny network)' if args.tiny else ''}; pooling {pools[LAYER]}; "
          f"precision student {student.precision}, teacher {teacher.precision}")
    print(f"{'case':<44}{'batch':>6}{'s/batch':>10}{'img/s':>10}{'s/img':>10}{'peak GiB':>10}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"{r['case']:<44}{r['batch']:>6}{r['seconds_per_batch']:>10.3f}{r['images_per_s']:>10.1f}"
              f"{r['seconds_per_image']:>10.4f}{peak:>10}")
    print(f"recording overhead (dmd2): {overhead:+.1%}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "tiny": args.tiny, "torch": torch.__version__, "network": kwargs, "layer": LAYER, "pool": pools[LAYER],
        "results": rows, "recording_overhead": overhead,
        "precision": {"student": student.precision, "teacher": teacher.precision},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
