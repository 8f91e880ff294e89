"""Server time of a click in the embedded demo, on this machine's CPU (embedded-demo issue, goal 5).

A click first computes the shared first input for both models (the student's image, the teacher's
first step, heatmaps of every legacy layer and the per-layer similarity), then the teacher's demo
trajectory (deterministic Heun, 18 steps) with heatmaps at every step. Each click uses a new seed,
so nothing comes from the app's cache.

    python benchmarks/bench_demo_cpu.py [--clicks 10] [--out benchmarks/out/bench_demo_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from visualizer.app.config import demo_config, load
from visualizer.inspection import Inspector, LRUCache, Request

GOALS = {"student click (first look)": 0.300, "teacher demo trajectory": 3.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_demo_cpu.json"))
    args = parser.parse_args(argv)

    state = load(demo_config())
    inspector = Inspector(state.slots, cache=LRUCache())
    layers = inspector.legacy_layers()
    times: dict[str, list[float]] = {name: [] for name in GOALS}
    for click in range(args.clicks + 1):                 # click 0 warms up
        req = Request.make(seed=10_000 + click, class_label=click % 10, layers=layers, reduction="l2")
        t0 = time.perf_counter()
        inspector.first_look(req)
        t1 = time.perf_counter()
        inspector.trajectory("teacher", req)
        t2 = time.perf_counter()
        if click:
            times["student click (first look)"].append(t1 - t0)
            times["teacher demo trajectory"].append(t2 - t1)

    rows = []
    print(f"{'case':32} {'median s':>9} {'max s':>8} {'goal s':>7}  met   ({len(layers)} layers, {args.clicks} clicks)")
    for name, values in times.items():
        median, worst = statistics.median(values), max(values)
        met = median <= GOALS[name]
        rows.append({"case": name, "median_s": median, "max_s": worst, "goal_s": GOALS[name], "met": met})
        print(f"{name:32} {median:9.3f} {worst:8.3f} {GOALS[name]:7.2f}  {'yes' if met else 'NO'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "layers": layers, "rows": rows,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
