"""DMD2 generators: bare state dicts in every format DMD2 and its users save, and the errors when they don't fit."""

from __future__ import annotations

import os
import re

import pytest
import torch
from nets import tiny_kwargs, tiny_net
from safetensors.torch import save_file

from visualizer.checkpoints.dmd2 import dmd2_kwargs, load_dmd2_generator, load_dmd2_state_dict
from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
from visualizer.errors import CheckpointError
from visualizer.models import IMAGENET64_KWARGS, EDMPrecond


@pytest.fixture(scope="module")
def net() -> EDMPrecond:
    return tiny_net(seed=7)


def _outputs(net: EDMPrecond) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 3, 16, 16, generator=g) * 80
    with torch.no_grad():
        return net(z, 80.0, torch.eye(10)[[3]])


def _assert_same(expected: EDMPrecond, loaded: EDMPrecond) -> None:
    """Same architecture and the very same weights (so the same outputs, checked once below)."""
    assert not loaded.training and not loaded.use_fp16
    sd = loaded.state_dict()
    assert list(sd) == list(expected.state_dict())
    assert all(torch.equal(v, sd[k]) for k, v in expected.state_dict().items())


def test_zip_bin_and_pth_with_module_prefix(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "generator.bin")
    loaded = load_dmd2_generator(tmp_path / "generator.bin")
    _assert_same(net, loaded)
    assert torch.equal(_outputs(net), _outputs(loaded))
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, tmp_path / "ddp.pth")
    assert all(not k.startswith("module.") for k in load_dmd2_state_dict(tmp_path / "ddp.pth"))
    _assert_same(net, load_dmd2_generator(tmp_path / "ddp.pth"))


def test_legacy_torch_save_and_safetensors(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    _assert_same(net, load_dmd2_generator(tmp_path / "legacy.pth"))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "g.safetensors"))
    _assert_same(net, load_dmd2_generator(tmp_path / "g.safetensors"))


def test_checkpoint_folder_takes_the_generator_never_the_guidance_file(tmp_path, net):
    folder = tmp_path / "checkpoint_model_000500"
    folder.mkdir()
    torch.save({"guidance_model.fake_unet.weight": torch.zeros(2)}, folder / "pytorch_model_1.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model_1\.bin: DMD2's pytorch_model_1\.bin holds the guidance"
                                              r".*has no pytorch_model\.bin"):
        load_dmd2_generator(folder)
    with pytest.raises(CheckpointError, match="holds the guidance"):
        load_dmd2_state_dict(folder / "pytorch_model_1.bin")
    torch.save(net.state_dict(), folder / "pytorch_model.bin")
    _assert_same(net, load_dmd2_generator(folder))

    st_folder = tmp_path / "checkpoint_model_000600"
    st_folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st_folder / "model.safetensors"))
    _assert_same(net, load_dmd2_generator(st_folder))

    empty = tmp_path / "checkpoint_model_000700"
    empty.mkdir()
    (empty / "optimizer.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"no generator weights in this folder.*found optimizer\.bin"):
        load_dmd2_generator(empty)


def test_wrong_architecture_lists_the_differences(tmp_path, net):
    state = net.state_dict()
    extra = {**state, "model.extra.weight": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.bin")
    with pytest.raises(CheckpointError, match=r"extra\.bin: the weights do not fit .*1 unexpected: model\.extra\."):
        load_dmd2_generator(tmp_path / "extra.bin")

    torch.save(state, tmp_path / "tiny.bin")
    wide = tiny_kwargs(model_channels=64)
    with pytest.raises(CheckpointError, match=r"mis-shaped: model\.map_layer0\.weight \(128, 32\) in the file vs "
                                              r"\(256, 64\) in the network"):
        load_dmd2_generator(tmp_path / "tiny.bin", kwargs=wide)
    with pytest.raises(CheckpointError, match=r"missing: .*, \.\.\. and \d+ more"):
        load_dmd2_generator(tmp_path / "tiny.bin", kwargs=tiny_kwargs(num_blocks=3))

    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.bin")
    with pytest.raises(CheckpointError, match=r"other\.bin: not an ADM \(EDM/DMD2\) generator state dict"):
        load_dmd2_generator(tmp_path / "other.bin")
    torch.save({"model.map_layer0.weight": torch.zeros(2), "step": 5}, tmp_path / "mixed.bin")
    with pytest.raises(CheckpointError, match=r"mixed\.bin: 1 entries are not named tensors: step"):
        load_dmd2_generator(tmp_path / "mixed.bin")
    torch.save({k: v.long() if k.endswith("bias") else v for k, v in state.items()}, tmp_path / "int.bin")
    with pytest.raises(CheckpointError, match="not floating point"):
        load_dmd2_generator(tmp_path / "int.bin")


def test_imagenet64_layout_is_recognised_with_dropout_zero():
    with torch.device("meta"):
        weights = EDMPrecond(**IMAGENET64_KWARGS).state_dict()
    assert dmd2_kwargs(weights, "x") == {**IMAGENET64_KWARGS, "dropout": 0.0}
    weights.pop("model.map_label.weight")  # unconditional variant: no longer ImageNet-64, inferred instead
    inferred = dmd2_kwargs(weights, "x")
    assert inferred["label_dim"] == 0 and inferred["channel_mult"] == [1, 2, 3, 4]


def test_hostile_or_damaged_torch_files_are_checkpoint_errors(tmp_path, net):
    canary = tmp_path / "canary"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {canary}",)

    torch.save({"model.map_layer0.weight": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'evil.bin'}: not a readable torch checkpoint")):
        load_dmd2_generator(tmp_path / "evil.bin")
    assert not canary.exists()

    torch.save(net.state_dict(), tmp_path / "cut.bin")
    data = (tmp_path / "cut.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.bin: not a readable torch checkpoint"):
        load_dmd2_generator(tmp_path / "cut.bin")
    with pytest.raises(CheckpointError, match=r"nothing\.bin: no such file"):
        load_dmd2_generator(tmp_path / "nothing.bin")
    write_edm_pickle(net, tmp_path / "teacher.pkl")
    with pytest.raises(CheckpointError, match=r"teacher\.pkl: an EDM pickle, not a DMD2 generator"):
        load_dmd2_state_dict(tmp_path / "teacher.pkl")
