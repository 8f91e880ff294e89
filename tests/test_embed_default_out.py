"""`embed` without --out: the run goes to data/runs/<checkpoint names>-<digest> under the current folder."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from nets import tiny_net

from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
from visualizer.cli import main
from visualizer.embeddings.cli import RUNS_DIR, config_from_args, configure
from visualizer.embeddings.schema import load_embeddings


@pytest.fixture()
def here(tmp_path, monkeypatch) -> Path:
    """A current folder holding a tiny teacher pickle and student checkpoint folder."""
    net = tiny_net()
    write_edm_pickle(net, tmp_path / "teacher.pkl")
    folder = tmp_path / "checkpoint_model_000100"
    folder.mkdir()
    torch.save(net.state_dict(), folder / "pytorch_model.bin")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _out(*argv: str) -> Path:
    parser = argparse.ArgumentParser()
    configure(parser)
    return config_from_args(parser.parse_args(list(argv))).out


BASE = ("--teacher", "teacher.pkl", "--student", "checkpoint_model_000100/", "--seeds", "0-5")


def test_the_default_name_follows_the_models_and_the_arguments(here):
    out = _out(*BASE)
    assert out.parent == RUNS_DIR == Path("data/runs") and not out.is_absolute()
    assert re.fullmatch(r"teacher_vs_checkpoint_model_000100-[0-9a-f]{8}", out.name), out.name
    # The same command finds the same folder (so it resumes); the same files spelled otherwise too.
    assert _out(*BASE) == out
    spelled = ("--teacher", "./teacher.pkl", "--student", str(here / "checkpoint_model_000100"), "--seeds", "0-5")
    assert _out(*spelled) == out
    # Speed switches and progress bars do not change what the run holds, so not its folder either.
    assert _out(*BASE, "--no-progress", "--compile", "graphs", "--umap-backend", "umap-learn") == out
    # Anything that shapes the results gets another folder.
    for extra in (("--layers", "dec.16x16_block1"), ("--pca-dims", "5"), ("--classes", "drawn"),
                  ("--batch-size", "2"), ("--num-steps", "3")):
        assert _out(*BASE, *extra) != out, extra
    assert _out(*BASE[:5], "0-6") != out
    # DMD2's pytorch_model.bin is named by its folder; --out wins when given.
    assert _out("--model", "s=dmd2-imagenet-64:ckpt/checkpoint_model_000100/pytorch_model.bin",
                "--seeds", "0-5").name.startswith("checkpoint_model_000100-")
    assert _out(*BASE, "--out", "elsewhere") == Path("elsewhere")


def test_a_run_without_out_writes_there_says_so_and_resumes(here, capsys):
    argv = ["embed", *BASE, "--batch-size", "4", "--num-steps", "2", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    folder = _out(*argv[1:])
    assert f"writing to {folder}" in out and f"wrote {folder / 'embeddings.csv'}" in out
    emb = load_embeddings(here / folder / "embeddings.csv")
    assert set(emb.frame["model"]) == {"teacher", "student"} and len(emb.frame) == 12
    assert [p.name for p in (here / RUNS_DIR).iterdir()] == [folder.name]
    assert main(argv) == 0
    assert "resumed run" in capsys.readouterr().out
    assert [p.name for p in (here / RUNS_DIR).iterdir()] == [folder.name]
