"""Teacher vs student over many samples in the app (issue 15): what the comparison view's engine costs on the demo.

    python benchmarks/bench_comparison_app.py

Times `visualizer.inspection.comparison.Comparisons` on the shipped demo pair, on the CPU: the bottleneck matrix
from the run's pooled store (600 seeds), the 22 x 22 matrix from a fresh trace of seeds 0-199 at full
resolution, the sigma alignment from a fresh trace of seeds 0-31 (every teacher step), a repeat (the cache),
and the per-sample chart's report (the first with each model's reference means, then one click each).
Prints one line per case with the load average it ran under; results go to benchmarks/RESULTS.md.
"""

import os
import statistics
import time

from visualizer.app.config import demo_config, load
from visualizer.app.context import build_context
from visualizer.inspection.comparison import AlignmentQuery, Comparisons, MatrixQuery


def main() -> None:
    ctx = build_context(load(demo_config()))
    eng = Comparisons.of(ctx.inspector, ctx.root)
    layers = tuple(ctx.inspector.legacy_layers())
    cases = (("bottleneck from the store, 600 seeds", lambda: eng.matrix(MatrixQuery(("encoder_bottleneck",), 0))),
             ("22 x 22 fresh trace 0-199", lambda: eng.matrix(MatrixQuery(layers, 0))),
             ("alignment fresh trace 0-31", lambda: eng.alignment(AlignmentQuery(layers, seeds=tuple(range(32))))),
             ("repeat (cache)", lambda: eng.matrix(MatrixQuery(layers, 0))),
             ("per-sample report, first (reference means)", lambda: eng.sample_report(0, 0)))
    for name, fn in cases:
        a = time.perf_counter()
        fn()
        print(f"{name}: {time.perf_counter() - a:.2f} s (load {os.getloadavg()[0]:.1f})")
    times = []
    for s in range(1, 8):
        a = time.perf_counter()
        eng.sample_report(s, s % 10)
        times.append(time.perf_counter() - a)
    print(f"per-sample report, one click: median {statistics.median(times):.3f} s [{min(times):.3f}, {max(times):.3f}]"
          f" (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
