"""Two torchrun processes (gloo, CPU) produce exactly the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_embed_pipeline import assert_same_run, ckpts, embed_args  # noqa: F401


@pytest.mark.slow
def test_two_processes_equal_one(ckpts, tmp_path):  # noqa: F811
    """A 2-process torchrun run equals a 1-process run, both in fresh processes with one thread count: the
    shared in-process reference is made after other tests have run in the same process, and in the full CI
    suite (never alone) its UMAP coordinates differed from a fresh process's. Thread counts change the CSV
    (benchmarks/thread_counts.py); the browser tests' app had left BLAS on one thread (concurrent sklearn
    neighbour searches, now serialised: test_placement.py), and fresh processes stay clear of any such state."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}   # torchrun defaults every worker to 1; bit-identity needs one count
    one = tmp_path / "one"
    done = subprocess.run([sys.executable, "-m", "visualizer", *embed_args(ckpts, one)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "visualizer", *embed_args(ckpts, out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    # Batches 0 and 2 on rank 0, batch 1 on rank 1, for each model; rank 0 merged and reduced.
    assert "2 process(es)" in done.stdout
    assert json.loads((out / "embeddings.json").read_text())["run"]["world_size"] == 2
    assert_same_run(out, one)
