"""capture(): per-step records with sigma, reductions before the transfer, hooks that never outlive the block."""

import functools

import pytest
import torch
from nets import tiny_kwargs

from visualizer.errors import UserError
from visualizer.models import EDMPrecond
from visualizer.trace import Capture, capture, register_forward_hooks
from visualizer.trace.reductions import channel_l2, single_channel


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EDMPrecond(**tiny_kwargs()).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def no_hooks_left(net):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def reference(net, name, x, sigma):
    """The layer output of one call, recorded by hand."""
    out = []
    handles = register_forward_hooks(net, [name], lambda m, i, o: out.append(o.detach().clone()))
    try:
        with torch.no_grad():
            net(x, sigma, torch.eye(10)[:2])
    finally:
        for h in handles:
            h.remove()
    return out[0]


def test_each_network_call_is_a_step_with_its_sigma(net, x):
    labels = torch.eye(10)[:2]
    with torch.no_grad(), capture(net, ["midblock", "enc.16x16_block0"]) as cap:
        net(x, 80.0, labels)
        net(x, sigma=torch.tensor(2.5), class_labels=labels)        # sigma as keyword
        net(x, torch.tensor([0.5, 0.5]), labels)                    # uniform per-sample sigma
        net(x, torch.tensor([1.0, 3.0]), labels)                    # differing per-sample sigma
    assert isinstance(cap, Capture) and cap.names == ["midblock", "enc.16x16_block0"]
    assert cap.sigmas == [80.0, 2.5, 0.5, (1.0, 3.0)] and cap.num_steps == 4
    assert [r.step for r in cap["midblock"]] == [0, 1, 2, 3]
    assert [r.sigma for r in cap["enc.16x16_block0"]] == cap.sigmas
    assert cap["midblock"][0].tensor.shape == (2, 64, 8, 8)
    torch.testing.assert_close(cap.tensor("midblock", step=1), reference(net, "midblock", x, 2.5), rtol=0, atol=0)
    torch.testing.assert_close(cap.tensor("midblock"), cap["midblock"][3].tensor)
    assert cap.stacked("enc.16x16_block0").shape == (4, 2, 32, 16, 16)
    assert no_hooks_left(net)


def test_hooks_are_removed_when_the_block_raises(net, x):
    with pytest.raises(RuntimeError, match="sampler failed"), capture(net, ["midblock", "decoder_block_6"]) as cap:
        assert len(net.model.dec["8x8_in0"]._forward_hooks) == 1 and len(net._forward_pre_hooks) == 1
        with torch.no_grad():
            net(x, 1.0, torch.eye(10)[:2])
        raise RuntimeError("sampler failed")
    assert len(cap["midblock"]) == 1
    assert no_hooks_left(net)


def test_unknown_layers_fail_before_anything_is_hooked(net):
    with pytest.raises(UserError, match="valid names"), capture(net, ["midblock", "nope"]):
        pass
    assert no_hooks_left(net)


def test_reduced_keep_stores_the_reduction(net, x):
    with torch.no_grad(), capture(net, ["enc.8x8_block0"], reduce="l2") as cap:
        net(x, 1.0, torch.eye(10)[:2])
    assert cap.keep == "reduced"
    full = reference(net, "enc.8x8_block0", x, 1.0)
    torch.testing.assert_close(cap.tensor("enc.8x8_block0", 0), channel_l2(full))
    pick = functools.partial(single_channel, index=3)
    with torch.no_grad(), capture(net, "midblock", reduce=pick, keep="reduced") as cap:
        net(x, 1.0, torch.eye(10)[:2])
    torch.testing.assert_close(cap.tensor("midblock"), reference(net, "midblock", x, 1.0)[:, 3])


def test_bad_keep_settings_are_refused(net):
    for kw in (dict(keep="reduced"), dict(keep="full", reduce="l2"), dict(keep="half")):
        with pytest.raises(ValueError), capture(net, ["midblock"], **kw):
            pass
    with pytest.raises(UserError, match="unknown reduction"), capture(net, ["midblock"], reduce="max"):
        pass
    assert no_hooks_left(net)


def test_steps_filter_records_only_the_steps_asked_for(net, x):
    with torch.no_grad(), capture(net, ["midblock"], steps={0, 2}) as cap:
        for sigma in (80.0, 10.0, 1.0):
            net(x, sigma, torch.eye(10)[:2])
    assert [(r.step, r.sigma) for r in cap["midblock"]] == [(0, 80.0), (2, 1.0)]
    assert cap.sigmas == [80.0, 10.0, 1.0]
    with pytest.raises(KeyError, match="recorded steps"):
        cap.tensor("midblock", 1)


def test_records_are_detached_even_when_grad_is_on(net, x):
    with capture(net, ["midblock"]) as cap:
        net(x.clone().requires_grad_(), 1.0, torch.eye(10)[:2])
    assert not cap.tensor("midblock").requires_grad


def test_custom_sigma_fn_and_tuple_outputs(net, x):
    with capture(net, ["midblock"], sigma_fn=lambda args, kwargs: 7.0) as cap:
        with torch.no_grad():
            net(x, 1.0, torch.eye(10)[:2])
        # A layer that returns (tensor, extra) is recorded by its first tensor.
        module = net.model.dec["8x8_in0"]
        (hook,) = module._forward_hooks.values()
        hook(module, (), (torch.ones(2, 4, 8, 8), None))
    assert [r.sigma for r in cap["midblock"]] == [7.0, 7.0]
    assert torch.equal(cap.tensor("midblock"), torch.ones(2, 4, 8, 8))


def test_register_forward_hooks_uses_the_pytorch_signature(net, x):
    calls = []
    handles = register_forward_hooks(net, ["encoder_bottleneck", "dec.8x8_in1"],
                                     lambda m, i, o: calls.append((type(m).__name__, tuple(o.shape))))
    try:
        with torch.no_grad():
            net(x, 1.0, torch.eye(10)[:2])
    finally:
        for h in handles:
            h.remove()
    assert calls == [("UNetBlock", (2, 64, 8, 8)), ("UNetBlock", (2, 64, 8, 8))]
    assert no_hooks_left(net)
