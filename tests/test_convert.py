"""Format detection, load_network dispatch, .safetensors with settings, and the `convert` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nets import tiny_kwargs, tiny_net
from safetensors import safe_open
from safetensors.torch import save_file

from visualizer.checkpoints.edm_pickle import load_edm_pickle
from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
from visualizer.checkpoints.loading import detect_format, load_network
from visualizer.checkpoints.safetensors_io import (
    KWARGS_KEY,
    load_network_safetensors,
    save_network_safetensors,
)
from visualizer.cli import main
from visualizer.errors import CheckpointError
from visualizer.models import EDMPrecond

ROOT = Path(__file__).resolve().parents[1]


def _outputs(net: EDMPrecond) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        return net(torch.randn(2, 3, 16, 16, generator=g), torch.tensor([0.1, 60.0]), torch.eye(10)[:2])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    net = tiny_net(seed=11)
    state = net.state_dict()
    folder = root / "checkpoint_model_000001"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "plain.safetensors"))
    torch.save(state, root / "legacy.pth", _use_new_zipfile_serialization=False)
    return {
        "edm-pickle": write_edm_pickle(net, root / "teacher.pkl"),
        "safetensors": save_network_safetensors(net, root / "converted.safetensors"),
        "torch": folder / "pytorch_model.bin",
        "dmd2-folder": folder,
        "plain-safetensors": root / "plain.safetensors",
        "legacy-torch": root / "legacy.pth",
    }


def test_detect_format_by_content(files, tmp_path):
    for fmt in ("edm-pickle", "safetensors", "torch", "dmd2-folder"):
        assert detect_format(files[fmt]) == fmt
    assert detect_format(files["plain-safetensors"]) == "safetensors"
    assert detect_format(files["legacy-torch"]) == "torch"
    renamed = tmp_path / "teacher.bin"
    renamed.write_bytes(files["edm-pickle"].read_bytes())
    assert detect_format(renamed) == "edm-pickle"  # content wins over the name
    with pytest.raises(CheckpointError, match=r"gone\.pkl: no such file"):
        detect_format(tmp_path / "gone.pkl")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors: empty file"):
        detect_format(tmp_path / "empty.safetensors")
    (tmp_path / "text.pkl").write_text("hello")
    with pytest.raises(CheckpointError, match=r"text\.pkl: named like an EDM pickle, but its first bytes"):
        detect_format(tmp_path / "text.pkl")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt: unrecognised checkpoint format"):
        detect_format(tmp_path / "notes.txt")


def test_load_network_gives_the_same_network_from_every_format(files):
    reference = tiny_net(seed=11)
    for name, path in files.items():
        net = load_network(path, device="cpu")
        assert isinstance(net, EDMPrecond) and not net.training, name
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in reference.state_dict().items()), name


def test_safetensors_keeps_the_settings_and_precision(tmp_path):
    net = EDMPrecond(**tiny_kwargs(num_blocks=2), use_fp16=True)
    path = save_network_safetensors(net, tmp_path / "fp16.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "edm-precond"
    assert json.loads(meta[KWARGS_KEY])["num_blocks"] == 2 and json.loads(meta[KWARGS_KEY])["use_fp16"] is True
    loaded = load_network_safetensors(path)
    assert loaded.use_fp16 and loaded.init_kwargs == net.init_kwargs
    assert [p.name for p in tmp_path.iterdir()] == ["fp16.safetensors"]  # no temporary file left


def test_damaged_safetensors_are_checkpoint_errors(tmp_path, files):
    data = files["safetensors"].read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable \.safetensors file"):
        load_network(tmp_path / "cut.safetensors")
    net = tiny_net()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "bad.safetensors"),
              metadata={KWARGS_KEY: "{not json"})
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: its 'visualizer_edm_kwargs' metadata is not valid"):
        load_network(tmp_path / "bad.safetensors")


def test_convert_command_gives_identical_outputs(files, tmp_path, capsys):
    out = tmp_path / "teacher.safetensors"
    assert main(["convert", str(files["edm-pickle"]), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert torch.equal(_outputs(load_network(out)), _outputs(load_edm_pickle(files["edm-pickle"])))
    assert main(["convert", str(files["edm-pickle"]), str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["convert", "--force", str(files["edm-pickle"]), str(out)]) == 0
    assert main(["convert", str(files["edm-pickle"]), str(tmp_path / "teacher.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


def test_convert_missing_input_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "visualizer", "convert", "missing.pkl", "x.safetensors"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: missing.pkl: no such file"]
    assert "Traceback" not in result.stderr and not (tmp_path / "x.safetensors").exists()
