"""Causal tools through the engine (edits stated as a page states them) and the patch sweep / weight drift."""

import copy

import numpy as np
import pytest
import torch
from nets import tiny_net

from visualizer.adapters import get_adapter
from visualizer.errors import UserError
from visualizer.inspection import Inspector, ModelSlot, Request
from visualizer.inspection.edits import EditSpec
from visualizer.metrics.causal import patch_sweep, weight_drift

LAYER, LAYERS = "enc.8x8_block0", ["enc.16x16_conv", "enc.8x8_block0", "dec.8x8_in0", "dec.16x16_block1"]


@pytest.fixture()
def pair():
    return (get_adapter("edm-imagenet-64")(tiny_net(0), device="cpu"),
            get_adapter("dmd2-imagenet-64")(tiny_net(1), device="cpu"))


def inspector(pair, steps=4):
    teacher, student = pair
    return Inspector(ModelSlot("teacher", teacher, {"preset": "fid", "num_steps": steps}),
                     ModelSlot("student", student))


def req(*edits, layers=(LAYER,)):
    return Request.make(3, 2, layers, edits=edits)


def test_a_no_op_edit_from_the_page_is_bit_identical(pair):
    ins = inspector(pair)
    plain = ins.first_look(req())
    same = ins.first_look(req(EditSpec("student", LAYER, "scale", factor=1.0)))
    assert np.array_equal(same.finals["student"], plain.finals["student"])
    assert np.array_equal(same.originals["student"].image, same.views["student"].image)
    assert same.changes["student"] and all(v == 0 for v in same.changes["student"].values())


def test_patching_the_teacher_into_itself_changes_nothing(pair):
    ins = inspector(pair)
    plain = ins.trajectory("teacher", req())
    patched = ins.trajectory("teacher", req(EditSpec("teacher", LAYER, "replace", source="seed:3")))
    assert np.array_equal(patched.final, plain.final)
    for a, b in zip(patched.steps, plain.steps, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.maps[LAYER], b.maps[LAYER])


def test_ablating_every_channel_equals_the_manual_computation(pair):
    teacher, student = pair
    look = inspector(pair).first_look(req(EditSpec("student", LAYER, "zero")))
    handles = student.register_activation_hooks([LAYER], lambda m, i, o: torch.zeros_like(o))
    try:
        manual = student.sample(seeds=[3], class_label=2)
    finally:
        for h in handles:
            h.remove()
    assert np.array_equal(look.finals["student"], manual.images[0])
    assert look.changes["student"][LAYER] == pytest.approx(1.0) and look.changes["student"]["enc.16x16_conv"] == 0


def test_a_teacher_edit_in_a_sigma_range_leaves_earlier_steps_bit_identical(pair):
    ins = inspector(pair)
    plain = ins.trajectory("teacher", req())
    edited = ins.trajectory("teacher", req(EditSpec("teacher", LAYER, "scale", factor=3.0, sigma=(0.0, 1.0))))
    early = [k for k, s in enumerate(plain.steps) if s.sigma > 20]
    assert early and not np.array_equal(edited.final, plain.final)
    for k in early:
        assert np.array_equal(edited.steps[k].maps[LAYER], plain.steps[k].maps[LAYER])


def test_teacher_into_student_at_the_shared_input(pair):
    teacher, _ = pair
    look = inspector(pair).first_look(req(EditSpec("student", LAYER, "replace", source="other"), layers=LAYERS))
    t = teacher.trace([3], 2, [LAYER], forward_only=True)
    ref = inspector(pair).first_look(req(layers=LAYERS))
    np.testing.assert_allclose(look.views["student"].maps[LAYER].astype(np.float32),
                               ref.views["teacher"].maps[LAYER].astype(np.float32), rtol=1e-3)
    assert t[(LAYER, 0)].shape[1:] == (64, 8, 8)
    assert look.changes["student"]["enc.16x16_conv"] == 0 and look.changes["student"]["dec.16x16_block1"] > 0
    # cached like a click: the same edited request is a lookup
    ins = inspector(pair)
    r = req(EditSpec("student", LAYER, "add", factor=2.0, source="classes:1-2"))
    ins.first_look(r)
    hits = ins.cache.hits
    ins.first_look(r)
    assert ins.cache.hits == hits + 1


@pytest.mark.parametrize(("data", "message"), [
    ({"model": "student", "layer": LAYER, "op": "zap"}, "op 'zap'"),
    ({"model": "student", "layer": LAYER, "op": "zero", "channels": ["a"]}, "whole numbers"),
    ({"model": "student", "layer": LAYER, "op": "scale", "factor": float("nan")}, "out of range"),
    ({"model": "student", "layer": LAYER, "op": "replace", "source": "/etc/passwd"}, "source"),
    ({"model": "student", "layer": LAYER, "op": "mean"}, "seeds"),
    ({"model": "student", "layer": LAYER, "op": "zero", "region": [4, 0, 2, 2]}, "r0 < r1"),
    ({"model": "student", "layer": LAYER, "op": "zero", "bogus": 1}, "unknown field"),
    ({"layer": LAYER, "op": "zero"}, "missing field"),
    ([1, 2], "expected an object"),
])
def test_edit_specs_from_a_browser_are_checked(data, message):
    with pytest.raises(UserError, match=message):
        EditSpec.from_dict(data)


def test_edits_the_engine_refuses(pair):
    ins = inspector(pair)
    for spec, message in [(EditSpec("nobody", LAYER, "zero"), "no model"),
                          (EditSpec("student", "nope", "zero"), "unknown layer"),
                          (EditSpec("student", LAYER, "add", source="classes:1-99"), "out of range"),
                          (EditSpec("student", LAYER, "zero", region=(0, 0, 9, 9)), "outside")]:
        with pytest.raises(UserError, match=message):
            ins.first_look(req(spec))
    spec = EditSpec("student", LAYER, "zero", channels=(1, 2), region=(0, 0, 2, 2))
    assert EditSpec.from_dict(spec.to_dict()) == spec and "channels 1,2" in spec.label()


def test_the_sweep_finds_a_planted_difference():
    """Two nets that differ in one block only: patching that block moves the student the most."""
    teacher = get_adapter("edm-imagenet-64")(tiny_net(0), device="cpu")
    net = copy.deepcopy(teacher.net)
    with torch.no_grad():
        for p in net.model.dec["8x8_in1"].parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.3)
    student = get_adapter("dmd2-imagenet-64")(net, device="cpu")
    layers = teacher.net.model.block_names()
    rows = patch_sweep(teacher, student, range(8), [0, 0, 1, 1, 2, 2, 3, 3], layers, batch_size=4)
    by_layer = {r.layer: r for r in rows}
    assert max(rows, key=lambda r: r.rmse).layer == "dec.8x8_in1"
    assert all(by_layer[n].rmse == 0 for n in layers[:layers.index("dec.8x8_in1")])   # upstream: nothing to patch
    top = by_layer["dec.8x8_in1"]
    assert top.low <= top.rmse <= top.high and top.other_seed > 0 and len(top.per_seed) == 8
    drift = weight_drift(teacher, student)
    assert drift["dec.8x8_in1"] > 0 and all(v == 0 for k, v in drift.items() if k != "dec.8x8_in1")
