"""Large maps in a real headless Chromium (issue 21): load to interactive, click, selection, memory at 100k, 300k, 1M.

Runs tests/browser/test_large_map_browser.py once per size (synthetic tables in the real CSV and sidecar
layout, written through the schema's writer; the tiny real-format test checkpoints as teacher and student),
each in its own pytest process: the CSV written and loaded, the server started (datashader compiled), then a
fresh page load timed until the overview image is drawn and the plot takes input; hover, click (to the
panels), a box selection resolved on the server, find's zoom and ring, a closer zoom to exact markers,
reset. The sizes above 200k set VISUALIZER_BENCH_1M=1 (the test skips them otherwise, so CI stays lean).
Prints a table and writes benchmarks/out/bench_large_map.json.

    python benchmarks/bench_large_map.py [--points 100000,300000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/browser/test_large_map_browser.py"
COLUMNS = [("csv_load_s", "CSV load s"), ("create_app_s", "server start s"),
           ("load_to_interactive_s", "load to interactive s"), ("click_to_panels_s", "click to panels s"),
           ("box_select_to_gallery_s", "box select s"), ("zoom_to_markers_s", "zoom to markers s"),
           ("server_rss_mib", "server RSS MiB"), ("browser_rss_mib", "browser RSS MiB"),
           ("browser_js_heap_mib", "JS heap MiB")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="100000,300000,1000000")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_large_map.json")
    args = parser.parse_args(argv)
    results = []
    for points in [int(p) for p in args.points.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            env = {**os.environ, "VISUALIZER_LARGE_POINTS": str(points), "VISUALIZER_LARGE_JSON": str(out),
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            if points > 200_000:
                env["VISUALIZER_BENCH_1M"] = "1"
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:warnings", TEST], cwd=ROOT,
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if done.returncode != 0 or not out.exists():
                failed = [ln for ln in done.stdout.splitlines() if ln.startswith(("E ", "FAILED")) or ".py:" in ln]
                print("\n".join(failed[-40:]), file=sys.stderr)
                results.append({"points": points, "failed": True, "wall_s": wall})
                continue
            results.append({**json.loads(out.read_text()), "wall_s": wall})
    print(f"{'points':>10} " + " ".join(f"{label:>22}" for _, label in COLUMNS))
    for r in results:
        cells = ["FAILED".rjust(22) if r.get("failed") else
                 (f"{r[k]:22.2f}" if isinstance(r.get(k), (int, float)) else "-".rjust(22)) for k, _ in COLUMNS]
        print(f"{r['points']:>10,} " + " ".join(cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "date": time.strftime("%Y-%m-%d"),
                                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                "processor": platform.processor() or platform.machine()}}, indent=2))
    return 0 if not any(r.get("failed") for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
