"""The trace API: recording by sampler step and editing layers, eager and through the fast body, on tiny nets."""

import numpy as np
import pytest
import torch
from nets import tiny_net

from visualizer.adapters import get_adapter
from visualizer.errors import UserError
from visualizer.models.acceleration import FastBody
from visualizer.trace import Edit, SigmaRange, capture, select_steps

LAYER = "enc.8x8_block0"
SEEDS, CLASSES = [0, 1], [3, 7]
SETTINGS = dict(preset="fid", num_steps=4)


@pytest.fixture()
def teacher():
    return get_adapter("edm-imagenet-64")(tiny_net(0), device="cpu")


@pytest.fixture()
def student():
    return get_adapter("dmd2-imagenet-64")(tiny_net(1), device="cpu")


def fast(adapter):
    """The fast body's hook-free path (compile and graphs are CUDA-only; the direct call runs anywhere)."""
    adapter.net.body = FastBody(adapter.net.model, graphs=False)
    return adapter


def test_steps_all_matches_recording_each_step_by_hand(teacher):
    t = teacher.trace(SEEDS, CLASSES, [LAYER, "midblock"], steps="all", keep_denoised=True, **SETTINGS)
    plan = teacher.evaluations(teacher.sampler_settings(**SETTINGS))
    firsts = [i for i, ev in enumerate(plan) if ev.stage != "heun"]
    with capture(teacher.net, [LAYER, "midblock"], steps=set(firsts)) as cap:
        ref = teacher.sample(seeds=SEEDS, class_label=CLASSES, **SETTINGS)
    assert t.steps == [0, 1, 2, 3] and len(t.sigmas) == 4 and len(t.evaluations) == 7
    assert t.sigmas == [plan[i].sigma for i in firsts] and t.sigmas[0] == 80.0
    for k, i in enumerate(firsts):
        for name in (LAYER, "midblock"):
            assert torch.equal(t[(name, k)], cap.tensor(name, i))
    assert np.array_equal(t.images, ref.images) and torch.equal(t.final, ref.denoised)
    assert t.layer(LAYER).shape == (4, 2, 64, 8, 8) and set(t.denoised) == {0, 1, 2, 3}


def test_step_selection():
    sigmas = [80.0, 10.0, 1.0, 0.1]
    assert select_steps("first", sigmas) == [0] and select_steps("last", sigmas) == [3]
    assert select_steps(["first", -1, 2], sigmas) == [0, 2, 3] and select_steps("all", sigmas) == [0, 1, 2, 3]
    assert select_steps(SigmaRange(0.5, 20), sigmas) == [1, 2]
    with pytest.raises(UserError, match="4 step"):
        select_steps([7], sigmas)
    with pytest.raises(UserError, match="empty"):
        SigmaRange(2, 1)


@pytest.mark.parametrize("path", ["eager", "fast"])
def test_replacing_an_output_with_itself_is_bit_identical(teacher, path):
    adapter = fast(teacher) if path == "fast" else teacher
    ref = adapter.trace(SEEDS, CLASSES, [LAYER], steps="all", **SETTINGS)
    patched = adapter.trace(SEEDS, CLASSES, [LAYER], steps="all", **SETTINGS,
                            edits=[Edit.replace(LAYER, {s: ref[(LAYER, s)] for s in ref.steps})])
    assert patched.edited_calls == 4
    assert torch.equal(patched.final, ref.final) and np.array_equal(patched.images, ref.images)
    if path == "fast":
        counts = adapter.net.body.counts
        assert counts["eager"] == 0 and counts["direct"] + counts["direct_edit"] == 14 and counts["direct_edit"] == 4


def test_patching_the_teachers_first_activation_into_the_student(teacher, student):
    """Same architecture and the same first input: a student whose layer takes the teacher's value differs."""
    t = teacher.trace(SEEDS, CLASSES, [LAYER], forward_only=True)
    s = student.trace(SEEDS, CLASSES, [LAYER, "dec.16x16_block1"])
    patched = student.trace(SEEDS, CLASSES, [LAYER, "dec.16x16_block1"], edits=[Edit.replace(LAYER, t[(LAYER, 0)])])
    assert torch.equal(patched[(LAYER, 0)], t[(LAYER, 0)])
    assert not torch.equal(patched[("dec.16x16_block1", 0)], s[("dec.16x16_block1", 0)])


@pytest.mark.parametrize("path", ["eager", "fast"])
def test_zeroing_every_channel_equals_a_manual_zeroed_output(teacher, path):
    adapter = fast(teacher) if path == "fast" else teacher
    edited = adapter.trace(SEEDS, CLASSES, edits=[Edit.zero(LAYER)], **SETTINGS)
    handles = teacher.register_activation_hooks([LAYER], lambda m, i, o: torch.zeros_like(o))
    teacher.net.body = None          # a hook that replaces the output needs the eager path
    try:
        manual = teacher.sample(seeds=SEEDS, class_label=CLASSES, **SETTINGS)
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(edited.final, manual.denoised)


def test_an_edit_in_a_sigma_range_leaves_earlier_steps_bit_identical(teacher):
    ref = teacher.trace(SEEDS, CLASSES, [LAYER, "midblock"], steps="all", keep_denoised=True, **SETTINGS)
    low = SigmaRange(0, 1.0)            # steps 2 and 3 start below 1 (and step 1's correction lands there)
    edited = teacher.trace(SEEDS, CLASSES, [LAYER, "midblock"], steps="all", keep_denoised=True, **SETTINGS,
                           edits=[Edit.scale("midblock", 3.0, steps=low)])
    assert edited.edited_calls == 4
    for s in (0, 1):
        assert torch.equal(edited.denoised[s], ref.denoised[s]) and torch.equal(edited[(LAYER, s)], ref[(LAYER, s)])
    assert torch.equal(edited[("midblock", 2)], 3 * ref[("midblock", 2)]) is False   # inputs changed at step 1's end
    assert not torch.equal(edited.final, ref.final)


@pytest.mark.parametrize("make", [
    lambda: Edit.zero(LAYER, channels=[0, 5]),
    lambda: Edit.zero(LAYER, region=torch.eye(8)),
    lambda: Edit.scale(LAYER, 0.5, steps=[1, 2]),
    lambda: Edit.add(LAYER, torch.linspace(-1, 1, 64), alpha=2.0),
    lambda: Edit.mean_ablate(LAYER, torch.ones(64, 8, 8), channels=[3]),
])
def test_fast_body_edits_match_eager(teacher, make):
    eager = teacher.trace(SEEDS, CLASSES, [LAYER], steps="all", edits=[make()], **SETTINGS)
    quick = fast(teacher).trace(SEEDS, CLASSES, [LAYER], steps="all", edits=[make()], **SETTINGS)
    assert teacher.net.body.counts["eager"] == 0
    torch.testing.assert_close(quick.final, eager.final, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(quick.layer(LAYER), eager.layer(LAYER), rtol=1e-5, atol=1e-5)


def test_masked_edits_touch_only_their_channels_and_region(student):
    ref = student.trace(SEEDS, CLASSES, [LAYER])[(LAYER, 0)]
    zeroed = student.trace(SEEDS, CLASSES, [LAYER], edits=[Edit.zero(LAYER, channels=[2, 4])])[(LAYER, 0)]
    assert (zeroed[:, [2, 4]] == 0).all() and torch.equal(zeroed[:, :2], ref[:, :2])
    region = torch.zeros(8, 8)
    region[:4, :4] = 1
    painted = student.trace(SEEDS, CLASSES, [LAYER], edits=[Edit.replace(LAYER, 7.0, region=region)])[(LAYER, 0)]
    assert (painted[:, :, :4, :4] == 7).all() and torch.equal(painted[:, :, 4:], ref[:, :, 4:])
    added = student.trace(SEEDS, CLASSES, [LAYER], edits=[Edit.add(LAYER, torch.ones(64), alpha=0.5)])[(LAYER, 0)]
    torch.testing.assert_close(added, ref + 0.5)


def test_a_function_edit_runs_eagerly_and_is_counted(teacher):
    eager = teacher.trace(SEEDS, CLASSES, [LAYER], edits=[Edit.function(LAYER, torch.tanh)], **SETTINGS)
    quick = fast(teacher).trace(SEEDS, CLASSES, [LAYER], edits=[Edit.function(LAYER, torch.tanh)], **SETTINGS)
    assert teacher.net.body.counts["eager_edit"] == 7 and teacher.net.body.counts["eager"] == 7
    assert torch.equal(quick.final, eager.final)


def test_mean_ablation_from_seeds(student):
    mean = student.trace([10, 11, 12], None, [LAYER])[(LAYER, 0)].mean(0, keepdim=True)
    given = student.trace(SEEDS, CLASSES, [LAYER], edits=[Edit.mean_ablate(LAYER, mean)])
    from_seeds = student.trace(SEEDS, CLASSES, [LAYER], edits=[Edit.mean_ablate(LAYER, seeds=[10, 11, 12])])
    assert torch.equal(given[(LAYER, 0)], from_seeds[(LAYER, 0)]) and torch.equal(given.final, from_seeds.final)
    assert torch.allclose(given[(LAYER, 0)], mean.expand(2, -1, -1, -1))


def test_bad_edits_are_user_errors(student):
    with pytest.raises(UserError, match="channel"):
        student.trace(SEEDS, CLASSES, edits=[Edit.zero(LAYER, channels=[64])])
    with pytest.raises(UserError, match="does not fit"):
        student.trace(SEEDS, CLASSES, edits=[Edit.replace(LAYER, torch.zeros(3, 8, 8))])
    with pytest.raises(UserError, match="unknown layer"):
        student.trace(SEEDS, CLASSES, edits=[Edit.zero("nope")])
    with pytest.raises(UserError, match="needs a mean"):
        Edit.mean_ablate(LAYER)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in student.net.modules())
