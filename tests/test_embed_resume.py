"""An interrupted `embed` run continues where it stopped and ends identical to an uninterrupted one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib.format import open_memmap
from test_embed_pipeline import BATCH, assert_same_run, ckpts, embed_args, reference  # noqa: F401

from visualizer.cli import main
from visualizer.embeddings.pipeline import FAIL_AFTER_ENV, FAIL_EXIT_CODE


@pytest.mark.slow
def test_crash_then_resume_matches_uninterrupted_run(ckpts, reference, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    # The process dies (os._exit) right after committing its second shard: teacher batches 0 and 1.
    crashed = subprocess.run([sys.executable, "-m", "visualizer", *embed_args(ckpts, out)], capture_output=True,
                             text=True, timeout=300, env={**os.environ, FAIL_AFTER_ENV: "2"})
    assert crashed.returncode == FAIL_EXIT_CODE, crashed.stderr
    assert sorted(p.name for p in (out / "shards").rglob("*.json")) == ["batch000000.json", "batch000001.json"]
    assert not (out / "embeddings.csv").exists()
    # Rows of the uncommitted batch may hold anything (a torn write); the rerun must overwrite them.
    store = open_memmap(out / "activations/teacher/encoder_bottleneck/step0.npy", mode="r+")
    store[2 * BATCH:] = np.nan
    store.flush()
    del store

    assert main(embed_args(ckpts, out)) == 0
    assert len(list((out / "shards").rglob("*.json"))) == 6
    assert_same_run(out, reference)
    # Rerunning a finished run is harmless: nothing is recomputed, the result is the same.
    assert main(embed_args(ckpts, out)) == 0
    assert_same_run(out, reference)


def test_rerun_with_other_arguments_is_refused(ckpts, reference, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    before = (out / "embeddings.csv").read_text()
    assert main(embed_args(ckpts, out, **{"--batch-size": "4", "--layers": "encoder_bottleneck"})) == 2
    err = capsys.readouterr().err
    assert "holds a run with different arguments" in err and "batch_size: 8 then, 4 now" in err
    assert "layers:" in err and err.count("\n") == 1
    assert (out / "embeddings.csv").read_text() == before


def test_folder_without_run_json_is_refused(ckpts, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(embed_args(ckpts, out)) == 2
    assert "not empty and has no run.json" in capsys.readouterr().err
