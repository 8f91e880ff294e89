"""Adapters load real-format checkpoints, share the first input, expose named layers and plug in by entry point."""

import sys
import textwrap

import numpy as np
import pytest
import torch
from nets import tiny_net

from visualizer.adapters import get_adapter, list_adapters
from visualizer.adapters import registry as registry_module
from visualizer.adapters.dmd2 import DMD2Adapter
from visualizer.adapters.edm import EDMAdapter
from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
from visualizer.errors import UserError
from visualizer.models.device import pick_device


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same weights as an EDM pickle (teacher) and as a DMD2 checkpoint folder (student)."""
    root = tmp_path_factory.mktemp("ckpt")
    net = tiny_net()
    write_edm_pickle(net, root / "teacher.pkl")
    folder = root / "checkpoint_model_000100"
    folder.mkdir()
    torch.save(net.state_dict(), folder / "pytorch_model.bin")
    torch.save({"guidance": torch.zeros(1)}, folder / "pytorch_model_1.bin")
    return root / "teacher.pkl", folder, net


def test_registry_lists_builtins_and_refuses_unknown():
    assert {"edm-imagenet-64", "dmd2-imagenet-64"} <= set(list_adapters())
    assert get_adapter("edm-imagenet-64") is EDMAdapter and get_adapter("dmd2-imagenet-64") is DMD2Adapter
    with pytest.raises(UserError, match="unknown adapter 'nope'; available: .*dmd2-imagenet-64"):
        get_adapter("nope")


def test_third_party_adapter_found_through_entry_point(tmp_path, monkeypatch):
    """A real installed distribution (dist-info on sys.path) registering an adapter in our group."""
    (tmp_path / "my_adapter.py").write_text(textwrap.dedent("""
        from visualizer.adapters.dmd2 import DMD2Adapter

        class MyAdapter(DMD2Adapter):
            name = "my-model"
    """))
    info = tmp_path / "my_adapter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-adapter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[visualizer.adapters]\nmy-model = my_adapter:MyAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry_module._plugins.cache_clear()
    try:
        assert "my-model" in list_adapters()
        assert get_adapter("my-model").__name__ == "MyAdapter"
    finally:
        registry_module._plugins.cache_clear()
        sys.modules.pop("my_adapter", None)


def test_formats_load_and_describe(pair, tmp_path):
    pkl, folder, net = pair
    teacher = EDMAdapter.from_checkpoint(pkl, device="cpu")
    student = DMD2Adapter.from_checkpoint(folder, device="cpu")
    bin_student = DMD2Adapter.from_checkpoint(folder / "pytorch_model.bin", device="cpu")
    for adapter in (teacher, student, bin_student):
        assert adapter.resolution == 16 and adapter.num_classes == 10
        for k, v in net.state_dict().items():
            assert torch.equal(adapter.net.state_dict()[k], v), k
    assert teacher.describe()["role"] == "teacher" and student.describe()["role"] == "student"
    assert EDMAdapter.from_pickle(str(pkl), device="cpu").checkpoint == str(pkl)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="missing.pkl"):
        EDMAdapter.from_checkpoint(tmp_path / "missing.pkl", device="cpu")


def test_layer_names_native_and_legacy(pair):
    teacher = EDMAdapter.from_checkpoint(pair[0], device="cpu")
    names = teacher.hookable_layers
    assert "enc.16x16_block0" in names and "dec.8x8_in0" in names
    assert {"encoder_block_0", "encoder_bottleneck", "midblock", "decoder_block_1"} <= set(names)
    shapes = teacher.layer_shapes()
    assert shapes["enc.8x8_block0"][-3:] == (64, 8, 8) and shapes["dec.16x16_block1"][-3:] == (32, 16, 16)
    with pytest.raises(UserError, match="valid names.*enc.16x16_conv"):
        teacher.register_activation_hooks(["enc.99x99_block0"], lambda m, i, o: None)


def test_teacher_and_student_share_the_first_input_and_activations(pair):
    """Same weights, same seed and class: the teacher's first step is the student's only step."""
    pkl, folder, _ = pair
    teacher = EDMAdapter.from_checkpoint(pkl, device="cpu")
    student = DMD2Adapter.from_checkpoint(folder, device="cpu")
    layer = "encoder_bottleneck"
    seen: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}
    handles = [
        *teacher.register_activation_hooks([layer], lambda m, i, o: seen["teacher"].append(o.detach().clone())),
        *student.register_activation_hooks([layer], lambda m, i, o: seen["student"].append(o.detach().clone())),
    ]
    try:
        sigmas = []
        teacher.sample(seeds=[3, 11], class_label=[2, 7], num_steps=4, preset="fid",
                       callback=lambda d: sigmas.append(d["sigma"]))
        student.sample(seeds=[3, 11], class_label=[2, 7])
    finally:
        for h in handles:
            h.remove()
    assert sigmas[0] == pytest.approx(80.0)
    assert len(seen["teacher"]) == 2 * 4 - 1 and len(seen["student"]) == 1
    torch.testing.assert_close(seen["teacher"][0], seen["student"][0], rtol=0, atol=0)
    x_t, s_t, y_t, c_t = teacher.first_input([3, 11], [2, 7])
    x_s, s_s, y_s, c_s = student.first_input([3, 11], [2, 7])
    assert torch.equal(x_t, x_s) and s_t == s_s == 80.0 and torch.equal(y_t, y_s) and c_t.tolist() == [2, 7]
    assert all(not m._forward_hooks for m in teacher.net.modules())


def test_sample_is_per_seed_and_returns_uint8(pair):
    student = DMD2Adapter.from_checkpoint(pair[1], device="cpu")
    both = student.sample(seeds=[5, 9])
    alone = student.sample(seeds=[9])
    assert both.images.dtype == np.uint8 and both.images.shape == (2, 16, 16, 3)
    # CPU convolutions differ in the last bits between batch sizes; the random streams are per seed.
    assert np.abs(both.images[1].astype(int) - alone.images[0].astype(int)).max() <= 1
    assert both.class_labels[1] == alone.class_labels[0] and both.seeds == [5, 9]
    few = student.sample(seeds=[5], num_steps=3)
    assert few.images.shape == (1, 16, 16, 3)


def test_forward_is_one_denoising_step(pair):
    teacher = EDMAdapter.from_checkpoint(pair[0], device="cpu")
    x = torch.randn(2, 3, 16, 16)
    out = teacher.forward(x, 2.5, [1, 4])
    torch.testing.assert_close(out, pair[2](x, torch.tensor(2.5), torch.eye(10)[[1, 4]]))


def test_device_choice():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == expected and pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_detect_adapter_by_file(pair, tmp_path):
    from visualizer.adapters import detect_adapter
    from visualizer.checkpoints.convert import convert

    pkl, folder, net = pair
    converted = convert(pkl, tmp_path / "teacher.safetensors")
    from visualizer.checkpoints.safetensors_io import save_network_safetensors

    plain = save_network_safetensors(net, tmp_path / "student.safetensors")
    assert detect_adapter(pkl) == detect_adapter(converted) == "edm-imagenet-64"
    students = {detect_adapter(folder), detect_adapter(folder / "pytorch_model.bin"), detect_adapter(plain)}
    assert students == {"dmd2-imagenet-64"}


def test_precision_switch_falls_back_to_fp32_off_cuda(pair):
    fp32 = EDMAdapter.from_checkpoint(pair[0], device="cpu")
    bf16 = EDMAdapter.from_checkpoint(pair[0], device="cpu", precision="bf16")
    assert bf16.net.precision == "bf16" and bf16.precision == "fp32" and bf16.describe()["precision"] == "fp32"
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(fp32.forward(x, 3.0, [1, 2]), bf16.forward(x, 3.0, [1, 2]))
    with pytest.raises(ValueError, match="precision 'fp8' is not one of fp32, fp16, bf16"):
        EDMAdapter.from_checkpoint(pair[0], device="cpu", precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("precision", "bound"), [("fp32", 1e-5), ("fp16", 1e-2), ("bf16", 3e-2)])
def test_reduced_precision_adapters_match_fp32_on_cuda(pair, precision, bound):
    """The fast paths compute the same function: relative error near 1e-5 (fp32) or 1e-2 (fp16/bf16)."""
    ref = EDMAdapter.from_checkpoint(pair[0], device="cpu")
    fast = EDMAdapter.from_checkpoint(pair[0], device="cuda", precision=precision)
    assert fast.precision == precision
    x = torch.randn(4, 3, 16, 16) * 10
    a = ref.forward(x, 10.0, [0, 1, 2, 3])
    # cuDNN runs float32 convolutions in TF32 unless told not to; the fp32 path is checked without it.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=precision != "fp32"):
        b = fast.forward(x.cuda(), 10.0, [0, 1, 2, 3]).cpu()
    assert ((b - a).norm() / a.norm()).item() < bound


def test_settings_are_described_by_the_preset_they_come_from():
    """A record names the preset its settings come from (any step count), or 'custom'; never the default by guess."""
    import dataclasses

    from nets import tiny_net

    from visualizer.adapters.edm import EDMAdapter

    teacher = EDMAdapter(tiny_net(), device="cpu")
    for name in teacher.presets:
        assert teacher.describe_settings(teacher.sampler_settings(name, 7))["preset"] == name
    other = dataclasses.replace(teacher.sampler_settings("fid"), rho=3.0)
    assert teacher.describe_settings(other)["preset"] == "custom"
    assert teacher.describe_settings(teacher.sampler_settings("fid"), "mine")["preset"] == "mine"
