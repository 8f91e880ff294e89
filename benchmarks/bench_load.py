"""Load time and peak memory of `load_edm_pickle` on a full-size EDM ImageNet-64 pickle (random weights).

Writes an official-layout pickle of the 296 M-parameter network (about 1.2 GB) with our writer, then
loads it in fresh processes, so the writer's memory does not count: wall time of `load_edm_pickle`
and the growth of peak RSS (VmHWM, reset just before the load) over the RSS before it. With
`--safetensors` it also converts the network and times `load_network` on the .safetensors file.
The files are deleted afterwards.

    python benchmarks/bench_load.py                 # full size (the numbers that matter)
    python benchmarks/bench_load.py --tiny          # small net: checks that the script runs

Goal (2-core CPU machine): load < 10 s and peak RSS growth < 2x the file size. The file is read
right after it was written, so it comes from the page cache (a warm read).
Prints a table and writes benchmarks/out/bench_load.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_SECONDS, GOAL_RATIO = 10.0, 2.0


def _status_bytes(field: str) -> int:
    """VmRSS / VmHWM of this process from /proc (kB there)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). A child's ru_maxrss would include its parent's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(path: Path) -> dict:
    """Runs in a fresh process: import everything first, then measure only the load."""
    import torch

    from visualizer.checkpoints.edm_pickle import load_edm_pickle
    from visualizer.checkpoints.loading import load_network

    loader = load_edm_pickle if path.suffix == ".pkl" else load_network
    gc.collect()
    before = _status_bytes("VmRSS")
    if not _reset_peak():
        raise SystemExit("cannot reset the peak RSS through /proc/self/clear_refs")
    start = time.perf_counter()
    net = loader(path)
    seconds = time.perf_counter() - start
    peak = _status_bytes("VmHWM")
    held = _status_bytes("VmRSS")
    params = sum(p.numel() for p in net.parameters())
    assert all(not p.is_meta for p in net.parameters())
    return dict(file=str(path), seconds=seconds, rss_before=before, rss_peak=peak, rss_after=held,
                peak_growth=peak - before, held_growth=held - before, parameters=params, torch=torch.__version__,
                use_fp16=net.use_fp16)


def _measure(path: Path) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="small network (checks that the script runs)")
    p.add_argument("--repeats", type=int, default=2, help="fresh-process loads of the same file")
    p.add_argument("--safetensors", action="store_true", help="also convert to .safetensors and time that load")
    p.add_argument("--keep", action="store_true", help="keep the written checkpoint files")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "bench_load.json")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0

    import torch

    from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
    from visualizer.checkpoints.safetensors_io import save_network_safetensors
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from nets import TINY_KWARGS  # the test-only tiny network, for --tiny

    from visualizer.models import IMAGENET64_KWARGS, EDMPrecond

    args.out.parent.mkdir(parents=True, exist_ok=True)
    kwargs = TINY_KWARGS if args.tiny else IMAGENET64_KWARGS
    pkl = args.out.parent / ("bench_load_tiny.pkl" if args.tiny else "bench_load_imagenet64.pkl")
    files = [pkl]
    rows = []
    try:
        torch.manual_seed(0)
        start = time.perf_counter()
        net = EDMPrecond(**kwargs, use_fp16=True)  # random init, like a checkpoint's weights for loading purposes
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        write_edm_pickle(net, pkl)
        write_s = time.perf_counter() - start
        if args.safetensors:
            files.append(save_network_safetensors(net, pkl.with_suffix(".safetensors")))
        del net
        gc.collect()
        for path in files:
            size = path.stat().st_size
            for repeat in range(args.repeats):
                r = _measure(path)
                rows.append(dict(r, format=path.suffix.lstrip("."), repeat=repeat, file_bytes=size,
                                 peak_ratio=r["peak_growth"] / size))
    finally:
        if not args.keep:
            for path in files:
                path.unlink(missing_ok=True)

    print(f"built the network in {build_s:.1f} s, wrote the pickle in {write_s:.1f} s "
          f"({rows[0]['file_bytes'] / 2**30:.2f} GiB, {rows[0]['parameters']:,} parameters)")
    header = f"{'format':<12}{'run':>4}{'load s':>9}{'peak growth GiB':>17}{'x file':>8}{'held GiB':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['format']:<12}{r['repeat']:>4}{r['seconds']:>9.2f}{r['peak_growth'] / 2**30:>17.2f}"
              f"{r['peak_ratio']:>8.2f}{r['held_growth'] / 2**30:>10.2f}")
    pickle_rows = [r for r in rows if r["format"] == "pkl"]
    worst_s = max(r["seconds"] for r in pickle_rows)
    worst_ratio = max(r["peak_ratio"] for r in pickle_rows)
    ok = worst_s < GOAL_SECONDS and worst_ratio < GOAL_RATIO
    print(f"goal load < {GOAL_SECONDS:.0f} s and peak < {GOAL_RATIO:.0f}x file: "
          f"{'met' if ok else 'NOT met'} (worst {worst_s:.2f} s, {worst_ratio:.2f}x)")
    args.out.write_text(json.dumps({
        "benchmark": "bench_load", "tiny": args.tiny, "build_seconds": build_s, "write_seconds": write_s,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "goal": {"seconds": GOAL_SECONDS, "peak_ratio": GOAL_RATIO, "met": ok}, "runs": rows,
    }, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
