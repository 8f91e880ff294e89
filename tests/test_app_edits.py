"""The page's edits and the patch sweep (visualizer.app.edits, issue 17), called without a browser on tiny
real-format models: the form becomes checked EditSpecs, the edited first look shows original and edited
images and how every layer moved, undo is a cache hit, the sweep draws its interval and baseline."""

import numpy as np
import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings
from dash import no_update

from visualizer.app import edits, panels, scatter
from visualizer.app.config import AppConfig, load
from visualizer.app.context import build_context
from visualizer.app.ids import ID
from visualizer.inspection import Request
from visualizer.inspection.edits import EditSpec

LAYER = "encoder_bottleneck"


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edits")
    pkl, student = write_pair(folder / "ckpt")
    models = pair_models(pkl, student)
    csv = write_synthetic_embeddings(folder / "emb", 12, models=models)
    return load(AppConfig(embeddings=csv, device="cpu", num_steps=3))


@pytest.fixture()
def ctx(state):
    return build_context(state)


def _first(ctx, seed=3, label=3):
    clicked = scatter.choose(ctx, ID.generate, None, 1, seed, label)[0]
    return panels.first_look(ctx, clicked, ["midblock"], "l2", None)[0]


def _apply(ctx, edits_so_far, **form):
    fields = dict(model="student", layer=LAYER, op="zero", channels=None, painted=None, sigma_low=None,
                  sigma_high=None, factor=1, source="other", source_seed=None, class_a=None, class_b=None,
                  selection=[])
    fields.update(form)
    return edits.edit_list(ctx, ID.edit_apply, 1, 0, 0, edits_so_far, *fields.values())


def test_a_painted_region_becomes_rows_and_columns(ctx):
    first = _first(ctx)
    fig = edits.region(ctx, first, "student", LAYER)
    heat, cells = fig.data
    assert heat.type == "heatmap" and fig.layout.dragmode == "select"
    h, w = np.asarray(heat.z).shape
    assert len(cells.x) == h * w                       # one selectable point per cell
    box, text = edits.pick_region(ctx, ID.edit_region_graph, {"points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]})
    assert box == [2, 1, 5, 4] and text.startswith("region: rows 2-5, cols 1-4")
    assert edits.region(ctx, first, "student", LAYER, None, box).layout.shapes[0].x0 == 0.5
    assert edits.pick_region(ctx, ID.edit_region_clear, None, 1) == (None, "region: the whole map")
    assert edits.pick_region(ctx, ID.edit_region_graph, None) == (None, "region: the whole map")  # double click
    assert edits.pick_region(ctx, ID.edit_region_graph, {"points": []}) == (no_update, no_update)  # a redraw
    assert edits.region(ctx, None, "student", LAYER).layout.annotations[0].text.startswith("click a sample")


def test_the_form_becomes_checked_edits_and_says_what_is_wrong(ctx):
    store, message = _apply(ctx, [], channels="0-3, 7", painted=[2, 1, 5, 4])
    assert message == "" and EditSpec.from_dict(store[0]) == EditSpec("student", LAYER, "zero", (0, 1, 2, 3, 7),
                                                                     (2, 1, 5, 4))
    native = ctx.inspector.aliases()[LAYER]                       # a native name is stored canonically
    assert _apply(ctx, [], layer=native)[0][0]["layer"] == LAYER
    made = {
        "replace": _apply(ctx, [], op="replace", source="seed", source_seed="17")[0][-1]["source"],
        "mean": _apply(ctx, [], op="mean", source="selection", selection=[0, 1, 13, 5])[0][-1]["source"],
        "add": _apply(ctx, [], op="add", source="classes", class_a=1, class_b=2, factor=2)[0][-1]["source"],
        "scale": _apply(ctx, [], op="scale", factor=0.5, sigma_low=0, sigma_high=1)[0][-1]["sigma"],
    }
    # a selection of both models' points of a seed averages that seed once
    assert made == {"replace": "seed:17", "mean": "seeds:0,1,5", "add": "classes:1-2", "scale": [0.0, 1.0]}
    for form, why in ((dict(channels="99"), "has 64 channels"), (dict(channels="a-b"), "is not a channel"),
                      (dict(painted=[0, 0, 99, 99]), "region: encoder_bottleneck is"),
                      (dict(op="add", source="classes"), "pick classes A and B"),
                      (dict(op="mean", source="selection"), "the selection is empty"),
                      (dict(op="replace", source="seed", source_seed="-2"), "seeds are not negative"),
                      (dict(op="mean", source="classes", class_a=1, class_b=2), "use it with op 'add'")):
        store, message = _apply(ctx, [], **form)
        assert store is no_update and why in message, (form, message)
    full = [EditSpec("student", LAYER, "zero").to_dict()] * edits.MAX_EDITS
    assert "at most" in _apply(ctx, full)[1]
    # undo and clear
    two = [EditSpec("student", LAYER, "zero").to_dict(), EditSpec("student", "midblock", "scale", factor=2).to_dict()]
    assert edits.edit_list(ctx, ID.edit_undo, 0, 1, 0, two, *[None] * 13)[0] == two[:1]
    assert edits.edit_list(ctx, ID.edit_clear, 0, 0, 1, two, *[None] * 13)[0] == []
    assert edits.edit_list(ctx, ID.edit_undo, 0, 1, 0, [], *[None] * 13)[1] == "nothing to undo"


def test_an_edit_shows_original_and_edited_images_and_how_every_layer_moved(ctx):
    first = _first(ctx)
    store = _apply(ctx, [], painted=[0, 0, 4, 4])[0]
    images, changes, items, status = edits.edited(ctx, store, first, "legacy", [])
    assert [t.type for t in images.data] == ["image", "image", "heatmap"]
    assert [a.text for a in images.layout.annotations][:2] == ["student (sample): original", "student (sample): edited"]
    look = ctx.inspector.first_look(Request.make(3, 3, ["midblock"], "l2", edits=[EditSpec.from_dict(store[0])]))
    np.testing.assert_array_equal(np.asarray(images.data[2].z),
                                  np.abs(look.views["student"].image.astype(np.float32)
                                         - look.originals["student"].image.astype(np.float32)).mean(-1))
    assert np.asarray(images.data[2].z).max() > 0                  # zeroing the bottleneck changes the sample
    bars = changes.data[0]
    names = list(bars.x)
    assert names == [panels.shown_name(n, "legacy", ctx.inspector.aliases()) for n in look.changes["student"]]
    at = names.index(LAYER)
    assert all(v == 0 for v in bars.y[:at]) and bars.y[at] > 0    # nothing before the edited layer moves
    assert bars.marker.line.width[at] > 0 and "descriptive" in changes.layout.title.text
    assert items[0].children.startswith("student encoder_bottleneck: zero") and "applied" in status
    hits = ctx.inspector.cache.hits
    edits.edited(ctx, store, first, "legacy", [])                   # undo/redo: the engine's cache
    assert ctx.inspector.cache.hits > hits
    empty = edits.edited(ctx, [], first, "legacy", [])
    assert empty[0].layout.annotations[0].text == "no edit applied" and empty[2] == []


def test_a_teacher_edit_can_run_the_whole_sampler_and_a_hidden_model_is_left_out(ctx):
    first = _first(ctx, 4, 4)
    store = _apply(ctx, [], model="teacher", layer="midblock", op="replace", source="other")[0]
    images, _, _, _ = edits.edited(ctx, store, first, "native", ["full"])
    labels = [t.name for t in images.data]
    assert labels[0] == "teacher (first step) original" and "teacher (final, 3 steps) edited" in labels
    hidden = panels.first_look(ctx, scatter.choose(ctx, ID.generate, None, 1, 4, 4)[0], ["midblock"], "l2", None,
                               ["student"])[0]
    _, _, _, status = edits.edited(ctx, store, hidden, "native", [])
    assert "1 edit(s) of a hidden model left out" in status


def test_the_sweep_draws_its_interval_and_baseline_beside_the_weight_drift(ctx):
    first = _first(ctx)
    fig, status = edits.sweep(ctx, 1, "0-3", first, "native")
    bars, baseline, drift = fig.data
    rows = ctx.inspector.patch_sweep([0, 1, 2, 3], 3)
    assert list(bars.y) == [r.layer for r in rows] == ctx.inspector.native_layers()
    np.testing.assert_allclose(bars.x, [r.rmse for r in rows])
    np.testing.assert_allclose(np.asarray(bars.error_x.array), [r.high - r.rmse for r in rows])
    np.testing.assert_allclose(baseline.x, [r.other_seed for r in rows])
    assert "another seed" in baseline.name and "95% bootstrap interval" in bars.name
    assert list(drift.y) == list(ctx.inspector.weight_drift()) and "exact" in fig.layout.annotations[1].text
    assert "4 seeds" in status and "against" in status
    assert ctx.inspector.patch_sweep([0, 1, 2, 3], 3) is rows      # cached
    for bad, why in (("5", "2 to 64 seeds"), ("0-99", "at most 64"), ("x", "is not a seed")):
        assert why in edits.sweep(ctx, 1, bad, first, "native")[1].children


def test_the_edit_figures_serve_a_notebook(ctx):
    """What the README's notebook example does: the teacher's bottleneck into the student, one seed."""
    spec = EditSpec("student", LAYER, "replace", source="other")
    look = ctx.inspector.first_look(Request.make(0, 2, [LAYER], edits=[spec]))
    images = edits.edit_images_figure([("student", look.originals["student"].image, look.views["student"].image)])
    changes = edits.changes_figure(look.changes, edited={"student": [ctx.inspector.aliases()[LAYER]]})
    assert len(images.data) == 3 and len(changes.data[0].x) == len(ctx.inspector.native_layers())
