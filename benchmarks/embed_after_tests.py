"""Does running some tests first change an `embed` run made later in the same process?

Runs the given test files through `pytest.main`, then the test suite's tiny `embed` command in this
process, and compares its embeddings.csv and activation stores with the same command in a fresh
process. Prints the BLAS thread counts after the tests and the comparison; writes
benchmarks/out/embed_after_tests.json. `--log-limits` also lists every BLAS thread limit that
threadpoolctl set and put back during the tests (thread, the count it found), which is how the
app's interleaved neighbour searches were seen (RESULTS.md, "An embed CSV at other thread counts").

    python benchmarks/embed_after_tests.py tests/browser/test_explore_browser.py --log-limits
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from test_embed_pipeline import _checkpoints, embed_args  # noqa: E402

from visualizer.cli import main as visualizer_main  # noqa: E402


def blas_threads() -> list[int]:
    return sorted({i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"})


def log_limits(lines: list[str]) -> None:
    """Diagnostic only: wraps threadpoolctl's limiter (a private class) to note each limit and its restore."""
    limiter = threadpoolctl._ThreadpoolLimiter
    init, restore = limiter.__init__, limiter.restore_original_limits

    def found(self) -> list[int]:
        return [i["num_threads"] for i in self._original_info if i["user_api"] == "blas"]

    def logged_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        lines.append(f"enter {threading.current_thread().name} found {found(self)}")

    def logged_restore(self):
        restore(self)
        lines.append(f"exit  {threading.current_thread().name} restored {found(self)}")

    limiter.__init__, limiter.restore_original_limits = logged_init, logged_restore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tests", nargs="*", help="test files or folders to run first (none: embed only)")
    p.add_argument("--log-limits", action="store_true", help="list threadpoolctl's BLAS limits during the tests")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "embed_after_tests.json")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="embed-after-tests-"))
    (root / "ckpt").mkdir()
    ckpts = _checkpoints(root / "ckpt")
    fresh, here = root / "fresh", root / "in-process"
    subprocess.run([sys.executable, "-m", "visualizer", *embed_args(ckpts, fresh)], check=True, cwd=ROOT,
                   capture_output=True)
    limits: list[str] = []
    if args.log_limits:
        log_limits(limits)
    before = blas_threads()
    tests_rc = int(pytest.main(["-q", "-p", "no:cacheprovider", *args.tests])) if args.tests else None
    after = blas_threads()
    time.sleep(5)      # a request thread still inside a limit would have put its count back by now
    later = blas_threads()
    assert visualizer_main(embed_args(ckpts, here)) == 0
    same_csv = (here / "embeddings.csv").read_text() == (fresh / "embeddings.csv").read_text()
    stores = sorted(q.relative_to(fresh) for q in (fresh / "activations").rglob("*.npy"))
    differ = [str(q) for q in stores if not np.array_equal(np.load(fresh / q), np.load(here / q))]
    result = {"tests": args.tests, "tests_rc": tests_rc, "blas_threads_before": before, "blas_threads_after": after,
              "blas_threads_5s_later": later, "same_csv_as_fresh_process": same_csv,
              "stores_differing": differ, "stores": len(stores), "limits": limits,
              "created": time.strftime("%Y-%m-%d %H:%M"),
              "command": " ".join(["python", "benchmarks/embed_after_tests.py", *(argv or sys.argv[1:])])}
    print("\n".join(limits))
    print(f"BLAS threads before the tests {before}, after {after}, 5 s later {later}; in-process embed: CSV "
          f"{'the same as' if same_csv else 'differs from'} a fresh process's, {len(differ)} of {len(stores)} "
          f"activation stores differ")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
