"""Layer names: native and legacy, resolution to modules, shapes without a forward pass."""

import pytest
import torch
from nets import tiny_kwargs

from visualizer.errors import UserError
from visualizer.models import IMAGENET64_KWARGS, EDMPrecond
from visualizer.models.layer_names import LEGACY_NAMES, layer_shapes, layer_table, legacy_names, resolve_layers


def tiny_net() -> EDMPrecond:
    torch.manual_seed(0)
    return EDMPrecond(**tiny_kwargs()).eval()


@pytest.fixture(scope="module")
def net():
    return tiny_net()


@pytest.fixture(scope="module")
def imagenet_meta():
    """The 296M-parameter ImageNet-64 network without weights: names and shapes need none."""
    with torch.device("meta"):
        return EDMPrecond(**IMAGENET64_KWARGS)


def test_native_names_cover_every_encoder_and_decoder_module_in_order(net):
    table = layer_table(net)
    native = [n for n in table if n.startswith(("enc.", "dec."))]
    assert native == [f"enc.{k}" for k in net.model.enc] + [f"dec.{k}" for k in net.model.dec]
    assert table["enc.16x16_conv"] == "model.enc.16x16_conv"
    assert table["dec.8x8_in0"] == "model.dec.8x8_in0"
    assert list(table)[: len(native)] == native  # native names first, then the legacy ones


def test_legacy_names_of_a_small_net_follow_the_general_rule(net):
    assert LEGACY_NAMES(net) == [
        "encoder_block_0", "encoder_block_1", "encoder_block_2", "encoder_bottleneck", "midblock",
        *(f"decoder_block_{j}" for j in range(1, 7)),
    ]
    table = legacy_names(net)
    assert table["encoder_block_0"] == "model.enc.16x16_conv"
    assert table["encoder_block_2"] == "model.enc.8x8_down"
    assert table["encoder_bottleneck"] == "model.enc.8x8_block0"
    assert table["midblock"] == "model.dec.8x8_in0"
    assert table["decoder_block_1"] == "model.dec.8x8_in1"
    assert table["decoder_block_6"] == "model.dec.16x16_block1"


def test_imagenet64_has_the_37_legacy_names_of_the_earlier_tool(imagenet_meta):
    names = LEGACY_NAMES(imagenet_meta)
    assert len(names) == 37 and "decoder_block_0" not in names
    assert names == [*(f"encoder_block_{i}" for i in range(15)), "encoder_bottleneck", "midblock",
                     *(f"decoder_block_{j}" for j in range(1, 21))]
    table = layer_table(imagenet_meta)
    assert len(table) == 16 + 21 + 37
    expected = {
        "encoder_block_0": "model.enc.64x64_conv", "encoder_block_3": "model.enc.64x64_block2",
        "encoder_block_4": "model.enc.32x32_down", "encoder_block_12": "model.enc.8x8_down",
        "encoder_block_14": "model.enc.8x8_block1", "encoder_bottleneck": "model.enc.8x8_block2",
        "midblock": "model.dec.8x8_in0", "decoder_block_1": "model.dec.8x8_in1",
        "decoder_block_2": "model.dec.8x8_block0", "decoder_block_6": "model.dec.16x16_up",
        "decoder_block_20": "model.dec.64x64_block3",
    }
    assert {k: table[k] for k in expected} == expected


def test_imagenet64_shapes_match_the_published_table(imagenet_meta):
    shapes = layer_shapes(imagenet_meta, batch=2)
    assert shapes["enc.64x64_conv"] == (2, 192, 64, 64)
    assert shapes["enc.32x32_down"] == (2, 192, 32, 32) and shapes["enc.32x32_block0"] == (2, 384, 32, 32)
    assert shapes["enc.16x16_down"] == (2, 384, 16, 16) and shapes["enc.16x16_block2"] == (2, 576, 16, 16)
    assert shapes["encoder_bottleneck"] == (2, 768, 8, 8) and shapes["midblock"] == (2, 768, 8, 8)
    assert shapes["dec.16x16_up"] == (2, 768, 16, 16) and shapes["dec.16x16_block3"] == (2, 576, 16, 16)
    assert shapes["dec.32x32_up"] == (2, 576, 32, 32) and shapes["dec.64x64_up"] == (2, 384, 64, 64)
    assert shapes["decoder_block_20"] == (2, 192, 64, 64)


def test_shapes_match_a_real_forward(net):
    seen = {}
    modules = resolve_layers(net, list(layer_table(net)))
    handles = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape)))
               for n, m in modules.items()]
    try:
        with torch.no_grad():
            net(torch.randn(3, 3, 16, 16), torch.tensor(2.0), torch.eye(10)[:3])
    finally:
        for h in handles:
            h.remove()
    assert seen == layer_shapes(net, batch=3)


def test_resolve_layers_gives_the_same_module_for_both_names(net):
    mods = resolve_layers(net, ["midblock", "dec.8x8_in0", "encoder_bottleneck"])
    assert list(mods) == ["midblock", "dec.8x8_in0", "encoder_bottleneck"]
    assert mods["midblock"] is mods["dec.8x8_in0"] is net.model.dec["8x8_in0"]
    assert mods["encoder_bottleneck"] is net.model.enc["8x8_block0"]
    assert resolve_layers(net, "enc.16x16_conv")["enc.16x16_conv"] is net.model.enc["16x16_conv"]


def test_unknown_names_are_a_user_error_listing_the_valid_ones(net):
    with pytest.raises(UserError, match=r"'enc.99x99_block0'.*valid names: enc.16x16_conv, .*midblock"):
        resolve_layers(net, ["midblock", "enc.99x99_block0"])
