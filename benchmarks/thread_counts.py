"""Does an `embed` run's CSV depend on the thread counts? The same command in fresh processes, each at a
thread count (torch's OpenMP and the BLAS's, through OMP_NUM_THREADS and OPENBLAS_NUM_THREADS).

Uses the test suite's tiny real-format checkpoints and arguments (tests/test_embed_pipeline.py), so it
runs in about a minute on the CPU. Prints which runs' embeddings.csv equal the first and writes
benchmarks/out/thread_counts.json.

    python benchmarks/thread_counts.py [--threads 2 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from test_embed_pipeline import _checkpoints, embed_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1, 2], help="one fresh run per count")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "thread_counts.json")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="thread-counts-"))
    (root / "ckpt").mkdir()
    ckpts = _checkpoints(root / "ckpt")
    runs = []
    for k, n in enumerate(args.threads):
        out = root / f"run{k}"
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n)}
        subprocess.run([sys.executable, "-m", "visualizer", *embed_args(ckpts, out)], check=True, env=env,
                       capture_output=True, cwd=ROOT)
        csv = (out / "embeddings.csv").read_text()
        runs.append({"threads": n, "same_csv_as_first": csv == (root / "run0" / "embeddings.csv").read_text()})
        print(f"run {k}: {n} thread(s), embeddings.csv equal to run 0's: {runs[-1]['same_csv_as_first']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "cpus": os.cpu_count(), "created": time.strftime("%Y-%m-%d %H:%M"),
                                    "command": " ".join(["python", "benchmarks/thread_counts.py",
                                                         *(argv or sys.argv[1:])])}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
