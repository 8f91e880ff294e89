"""The app's callbacks called directly, without a browser: real tiny models, real embeddings, real AppState.

Every feature's callbacks are module-level functions `fn(ctx, *inputs) -> outputs` (visualizer.app.scatter,
.panels, .selection); `register(app, ctx)` only wires them. Here they get what the browser would send
(hoverData, clickData, selectedData, store contents) and their outputs are checked as the page would
show them.
"""

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings
from dash import no_update
from dash.exceptions import PreventUpdate

from visualizer.app import panels, scatter, selection
from visualizer.app.config import AppConfig, AppState, load
from visualizer.app.context import AppContext, build_context
from visualizer.app.ids import ID
from visualizer.app.jobs import Cancelled
from visualizer.app.server import create_app
from visualizer.app.thumbs import thumb_url
from visualizer.embeddings.schema import load_embeddings

STEPS = 3
SEEDS = 30


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("callbacks")
    pkl, student = write_pair(folder / "ckpt")
    models = pair_models(pkl, student)
    return write_synthetic_embeddings(folder / "emb", SEEDS, models=models)


@pytest.fixture(scope="module")
def state(files):
    return load(AppConfig(embeddings=files, device="cpu", num_steps=STEPS))


@pytest.fixture()
def ctx(state) -> AppContext:
    return build_context(state)          # a fresh result cache per test


@pytest.fixture(scope="module")
def browse_ctx(files) -> AppContext:
    """The table alone, no models (browse only)."""
    return build_context(AppState(AppConfig(embeddings=files), load_embeddings(files), []))


def _point(ctx: AppContext, row: int) -> dict:
    r = ctx.frame.iloc[row]
    return {"curveNumber": 0, "pointNumber": 0, "x": float(r["umap_x"]), "y": float(r["umap_y"]), "customdata": row,
            "bbox": {"x0": 10, "x1": 14, "y0": 20, "y1": 24}}


# -- the scatter ----------------------------------------------------------------------------------------

def test_scatter_draw_colours_filters_and_links(ctx):
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [])
    assert isinstance(fig, go.Figure) and len(fig.data) == 10
    assert fig.data[0].name == "0 · class 0" and fig.layout.title.text == f"{2 * SEEDS} of {2 * SEEDS} points"
    rows = sorted(int(r) for t in fig.data for r in t.customdata)
    assert rows == list(range(2 * SEEDS))

    fig = scatter.draw(ctx, "model", [1, 2], ["student"], ["link"])
    assert [t.name for t in fig.data] == ["student"]          # one model shown: nothing to link
    assert set(ctx.frame.loc[list(fig.data[0].customdata), "class_label"]) == {1, 2}
    assert set(ctx.frame.loc[list(fig.data[0].customdata), "model"]) == {"student"}

    fig = scatter.draw(ctx, "sigma", None, ["teacher", "student"], ["link"])
    assert fig.data[0].mode == "lines" and len(fig.data[0].x) == SEEDS * 3   # a segment and a gap per seed
    assert fig.data[1].marker.showscale


def test_scatter_without_embeddings_says_so(state):
    c = build_context(AppState(state.config, None, state.slots))
    fig = scatter.draw(c, "class", None, [], [])
    assert fig.layout.annotations[0].text.startswith("no embeddings loaded")


def test_hover_shows_the_thumbnail_class_and_seed(ctx):
    show, bbox, card = scatter.hover(ctx, {"points": [_point(ctx, 33)]})
    r = ctx.frame.iloc[33]
    assert show and bbox == {"x0": 10, "x1": 14, "y0": 20, "y1": 24}
    image, title, line, point = card.children
    assert image.src == thumb_url(r["image_path"]) and image.src.startswith("/thumbs/thumbs/")
    assert title.children == f"{r['class_label']} · {r['class_name']}"
    # the thumbnail is the final image; the point is the activations at the recorded step (from 1, as the panels)
    assert line.children == f"seed {r['seed']} · student · final image"
    assert point.children == "point: activations at step 1 (σ 80)"
    assert scatter.hover(ctx, None) == (False, no_update, no_update)
    for bad in (999, -1, "3", None):
        assert scatter.hover(ctx, {"points": [{"customdata": bad}]}) == (False, no_update, no_update)


def test_choose_a_clicked_point_or_a_typed_seed(ctx):
    chosen, seed, label = scatter.choose(ctx, ID.scatter, {"points": [_point(ctx, 7)]}, 0, 0, 0)
    r = ctx.frame.iloc[7]
    assert (seed, label) == (int(r["seed"]), int(r["class_label"])) == (chosen["seed"], chosen["class_label"])
    assert chosen["sample_id"] == r["sample_id"] == "teacher-7-0" and chosen["row"] == 7 and chosen["clicked_at"] > 0

    chosen, seed, label = scatter.choose(ctx, ID.generate, None, 1, 123, 4)
    assert (seed, label) == (123, 4) and chosen["sample_id"] is None and "row" not in chosen
    assert scatter.choose(ctx, ID.generate, None, 1, " 4294967295 ", 4)[1] == 2**32 - 1   # the seed box is text

    with pytest.raises(PreventUpdate):
        scatter.choose(ctx, ID.scatter, {"points": [{"customdata": 10_000}]}, 0, 0, 0)
    for seed, label in ((None, 1), (1, None), (-1, 1), ("-3", 1), ("2.5", 1), ("4294967296", 1), ("x", 1)):
        with pytest.raises(PreventUpdate):
            scatter.choose(ctx, ID.generate, None, 1, seed, label)


def test_a_refused_seed_says_why():
    assert panels.seed_message("12") == "" and panels.seed_message(12) == ""
    assert "not negative" in panels.seed_message("-1")
    assert "not a whole number" in panels.seed_message("2.5")
    assert "stop at 4294967295" in panels.seed_message("4294967296")
    assert "not a number" in panels.seed_message("seven") and panels.seed_message("") == "type a seed"


def test_class_colours_highlight_and_palette(ctx):
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [], [7, 2], "colour-blind")
    assert [t.name for t in fig.data] == ["teacher · other classes", "student · other classes", "7 · class 7",
                                          "2 · class 2"]
    assert fig.data[0].marker.color == fig.data[1].marker.color == scatter.GREY
    assert [t.marker.color for t in fig.data[2:]] == list(scatter.OKABE_ITO[:2])     # picked order, distinct
    rows = sorted(int(r) for t in fig.data for r in t.customdata)
    assert rows == list(range(2 * SEEDS))
    # ten classes, eight colour-blind-safe colours, nothing picked: every class grey rather than repeated colours
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [], None, "colour-blind")
    assert [t.name for t in fig.data] == ["teacher", "student"] and fig.data[0].marker.color == scatter.GREY
    assert "pick classes to colour them" in fig.layout.title.text


# -- the inspector panels -------------------------------------------------------------------------------

def _clicked(ctx: AppContext, row: int) -> dict:
    return scatter.choose(ctx, ID.scatter, {"points": [_point(ctx, row)]}, 0, 0, 0)[0]


def test_first_look_fills_the_store_the_similarity_chart_and_the_status(ctx):
    layers = ["encoder_block_0", "encoder_bottleneck"]
    clicked = _clicked(ctx, 12)
    first, ready, sim, status = panels.first_look(ctx, clicked, layers, "l2", None)
    assert first == {"seed": 12, "class_label": 2, "layers": layers, "reduction": "l2"} and ready is None
    assert "computing" in sim.layout.annotations[0].text        # the chart follows the first look (issue 15):
    sim = panels.relabel_similarity(ctx, None, first)             # centred cosine and CKA per layer, each with
    # its baselines (noise, another seed of the class)
    assert [t.name for t in sim.data if t.name][-4:] == [
        "baseline: noise of the layer's shape (95% of 32 draws)", "baseline: teacher vs itself, another seed of the "
        "class", "baseline: student vs itself, another seed of the class", "teacher vs student, same seed"]
    assert list(sim.data[0].x) == ctx.inspector.native_layers()
    assert "teacher vs student per layer" in sim.layout.title.text
    assert "one sample: descriptive" in sim.layout.title.text
    assert status.startswith("sample teacher-12-0: seed 12, class 2 · class 2 — shared first input computed in")
    assert status.endswith("; the teacher's full run follows")

    first, *_ = panels.first_look(ctx, clicked, [], "topk", 3)          # no layers: the default ones
    assert first["layers"] == ctx.default_layers and first["reduction"] == "topk:3"

    out = panels.first_look(ctx, clicked, ["no_such_layer"], "l2", None)
    assert out[:3] == (no_update, no_update, no_update) and "unknown layer(s) no_such_layer" in out[3].children
    with pytest.raises(PreventUpdate):
        panels.first_look(ctx, None, layers, "l2", None)


def test_first_look_needs_models(browse_ctx):
    with pytest.raises(PreventUpdate):
        panels.first_look(browse_ctx, {"seed": 1, "class_label": 1}, ["midblock"], "l2", None)


def test_render_before_and_after_the_teacher_run_and_the_slider(ctx, monkeypatch):
    monkeypatch.setattr(panels, "PROGRESS_EVERY_S", 0.0)     # every step reported, so step 2 is seen mid-run
    layers = ["encoder_block_0", "midblock"]
    first = panels.first_look(ctx, _clicked(ctx, 3), layers, "l2", None)[0]

    fig, label = panels.render(ctx, first, None, 1)
    images = [t for t in fig.data if t.type == "image"]
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(images) == 2 and len(heat) == 1 + 3 * len(layers)      # |A-B| + (teacher, student, A-B) per layer
    assert fig.layout.title.text == "seed 3 · class 3 (class 3) · l2"
    assert [a.text for a in fig.layout.annotations[:2]] == ["teacher · step 1/3 · σ 80", "student · 1 step · σ 80"]
    assert label.endswith("the run is in progress or cancelled")
    # the slider counts steps from 1, like its label; a new run starts on step 1, disabled until steps arrive
    assert panels.slider(ctx, None, None) == (no_update, True, None, no_update, no_update)
    top, disabled, marks, value, auto = panels.slider(ctx, first, None)
    assert (disabled, value, auto["step"]) == (True, 1, 1)

    progress, streamed = [], []

    def watch(update):   # what the page sees while the run goes on: the slider covers the steps computed so far
        progress.append(update)
        if update[0] == "2":
            streamed.append((panels.slider(ctx, first, None, "2", 1, auto), panels.render(ctx, first, None, 2)))

    ready = panels.teacher_run(ctx, watch, first)
    assert progress[0][0] is None and progress[0][2] == f"step 0 / {STEPS}: the first step is running"
    assert progress[-1] == (str(STEPS), str(STEPS), f"step {STEPS} / {STEPS}")
    assert ready["num_steps"] == STEPS and ready["model"] == "teacher" and ready["seed"] == 3
    assert ready["sigmas"][0] == pytest.approx(80.0) and ready["layers"] == layers
    (top, disabled, marks, value, _), (fig, label) = streamed[0]
    assert (top, disabled, value) == (2, False, no_update) and sorted(marks) == [1, 2]
    assert fig.layout.annotations[0].text.startswith(f"teacher · step 2/{STEPS} · σ ")
    assert label.startswith(f"teacher: step 2 of {STEPS}, σ = ") and "the run is in progress" in label

    # the run ends: the slider goes to the final step, unless the user chose a step meanwhile
    top, disabled, marks, value, auto = panels.slider(ctx, first, ready, None, 1, auto)
    assert (top, disabled, value, auto["step"]) == (STEPS, False, STEPS, STEPS)
    assert sorted(marks) == list(range(1, STEPS + 1)) and marks[1] == "σ 80"
    assert panels.slider(ctx, first, ready, None, 2, {**auto, "step": 1})[3:] == (no_update, no_update)

    fig, label = panels.render(ctx, first, ready, 3)
    assert fig.layout.annotations[0].text.startswith(f"teacher · step 3/{STEPS} · σ ")
    assert label.startswith(f"teacher: step 3 of {STEPS}, σ = ")
    assert label.endswith("the first step is the student's input")
    fig, _ = panels.render(ctx, first, ready, 99)                      # clamped to the last step
    assert fig.layout.annotations[0].text.startswith(f"teacher · step 3/{STEPS}")
    other = {**ready, "seed": 4}                                        # another sample's run is not shown
    assert panels.render(ctx, first, other, 1)[1].endswith("in progress or cancelled")
    with pytest.raises(PreventUpdate):
        panels.render(ctx, None, ready, 1)


def test_teacher_run_stops_when_asked(ctx):
    first = panels.first_look(ctx, _clicked(ctx, 5), ["midblock"], "l2", None)[0]
    calls = []

    def should_stop():
        calls.append(1)
        if len(calls) > 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        panels.teacher_run(ctx, lambda _: None, first, should_stop=should_stop)
    assert ctx.inspector.cached_trajectory("teacher", panels.request_from(first)) is None
    with pytest.raises(PreventUpdate):
        panels.teacher_run(ctx, lambda _: None, None)


def test_layer_presets_and_reduction_argument(ctx):
    assert panels.layer_preset(ctx, ID.layers_default, 1, 0, 0) == ctx.default_layers
    assert panels.layer_preset(ctx, ID.layers_legacy) == ctx.inspector.legacy_layers()
    native = panels.layer_preset(ctx, ID.layers_native)
    assert native == ctx.inspector.native_layers() and all(n.startswith(("enc.", "dec.")) for n in native)
    assert panels.reduction_arg("l2") == (True, None)
    disabled, value = panels.reduction_arg("channel")
    assert not disabled and isinstance(value, int)


def test_one_naming_per_page_changes_labels_not_requests(ctx):
    aliases = ctx.inspector.aliases()
    assert aliases["midblock"] == "dec.8x8_in0" and aliases["dec.8x8_in0"] == "midblock"
    value, options, naming = panels.pick_layers(ctx, ID.naming, "native", 0, 0, 0, ["encoder_block_0", "midblock"])
    assert value is no_update and naming == "native"          # the values stay canonical: no new request
    labels = {o["value"]: o["label"] for o in options}
    assert labels["midblock"] == "dec.8x8_in0" and len(options) == len(ctx.inspector.legacy_layers())
    assert "midblock" in next(o["search"] for o in options if o["value"] == "midblock")
    value, _, naming = panels.pick_layers(ctx, ID.layers_native, "legacy", 0, 0, 1, [])
    assert naming == "native" and value == ctx.inspector.legacy_layers()    # canonical names of every module

    # a native name typed in a request is the same request as its legacy name
    first = panels.first_look(ctx, _clicked(ctx, 3), ["dec.8x8_in0"], "l2", None, None, "native")[0]
    assert first["layers"] == ["midblock"]
    fig, _ = panels.render(ctx, first, None, 1, "native")
    assert "dec.8x8_in0" in [a.text for a in fig.layout.annotations]
    heat = [t for t in fig.data if t.type == "heatmap"][1]
    assert "dec.8x8_in0 (midblock)" in heat.hovertemplate              # both names in the hover
    sim = panels.relabel_similarity(ctx, "legacy", first)
    assert "midblock" in sim.data[0].x and "<b>midblock</b>" in sim.layout.xaxis.ticktext
    assert len(sim.layout.shapes) == 1                                 # the chosen layer is shaded
    assert list(panels.relabel_similarity(ctx, "native", first).data[0].x) == ctx.inspector.native_layers()


def test_colour_bars_scales_and_the_difference_legend(ctx):
    layers = ["encoder_block_0", "midblock"]
    first = panels.first_look(ctx, _clicked(ctx, 3), layers, "l2", None)[0]
    fig, _ = panels.render(ctx, first, None, 1, "legacy", "shared", 700)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert [t.showscale for t in heat] == [True] + [True, False, True] * 2   # one bar per layer + difference
    assert heat[3].colorscale[0][1] != heat[1].colorscale[0][1] and heat[3].zmid == 0
    assert fig.layout.width == 700                                     # drawn to the measured column
    assert any("red where the teacher is higher" in (a.text or "") for a in fig.layout.annotations)
    per_model = [t for t in panels.render(ctx, first, None, 1, "legacy", "per-model", 700)[0].data
                 if t.type == "heatmap"]
    assert [t.showscale for t in per_model] == [True] + [True, True, True] * 2
    # pca_rgb: the difference is |A - B|, on a sequential scale from 0
    first = panels.first_look(ctx, _clicked(ctx, 3), layers, "pca_rgb", None)[0]
    fig, _ = panels.render(ctx, first, None, 1)
    diff = [t for t in fig.data if t.type == "heatmap"][1:]
    assert all(t.zmin == 0 and t.zmid is None and t.colorscale[0][1] != "rgb(5,48,97)" for t in diff)
    assert any("|teacher − student|" in (a.text or "") for a in fig.layout.annotations)


def test_a_hidden_model_is_neither_computed_nor_drawn(ctx):
    ctx.inspector.cache.misses = 0
    first, ready, sim, status = panels.first_look(ctx, _clicked(ctx, 8), ["midblock"], "l2", None, ["student"])
    assert first["models"] == ["student"] and "hidden: teacher" in status
    look = ctx.inspector.first_look(panels.request_from(first), models=["student"])
    assert list(look.views) == ["student"] and look.similarity is None
    fig, label = panels.render(ctx, first, None, 1)
    assert [t.type for t in fig.data].count("image") == 1 and "teacher is hidden" in label
    with pytest.raises(PreventUpdate):                              # the hidden teacher does not run
        panels.teacher_run(ctx, lambda _: None, first)
    out = panels.first_look(ctx, _clicked(ctx, 8), ["midblock"], "l2", None, [])
    assert "Every model is hidden" in out[3]


def test_exports_share_one_name_and_the_maps_download_as_npz(ctx):
    first = panels.first_look(ctx, _clicked(ctx, 4), ["midblock", "encoder_block_0"], "topk", 3)[0]
    assert panels.export_stem(first) == "seed-4-class-4-topk-3"
    assert panels.panels_config(first)["toImageButtonOptions"]["filename"] == "seed-4-class-4-topk-3"
    assert panels.render(ctx, first, None, 1)[0].layout.meta["export"] == "seed-4-class-4-topk-3"
    ready = panels.teacher_run(ctx, lambda _: None, first)
    sent = panels.download_maps(ctx, 1, first, ready, 2)
    assert sent["filename"] == "seed-4-class-4-topk-3.npz"
    data = np.load(io.BytesIO(base64.b64decode(sent["content"])))
    meta = json.loads(str(data["meta"]))
    assert meta["models"]["teacher"]["step"] == 2 and meta["layers"]["midblock"] == "dec.8x8_in0"
    traj = ctx.inspector.cached_trajectory("teacher", panels.request_from(first))
    np.testing.assert_array_equal(data["teacher/midblock"], traj.steps[1].maps["midblock"].astype(np.float32))
    assert data["student/image"].dtype == np.uint8 and data["student/encoder_block_0"].ndim == 2


# -- the selection ---------------------------------------------------------------------------------------

def test_selection_fills_gallery_and_counts_and_exports_csv(ctx):
    rows = [0, 1, 11, 31, 41, 59]
    selected = {"points": [_point(ctx, r) for r in rows] + [{"customdata": 999}, {"customdata": "x"}]}
    store, counts, summary, disabled = selection.select(ctx, selected)
    cards = selection.page(ctx, ID.selection, store)[0]
    picked = ctx.frame.iloc[rows]
    assert store == rows and not disabled
    assert summary == f"6 points selected, {picked['class_label'].nunique()} classes"
    assert [c.children[0].src for c in cards] == [thumb_url(p) for p in picked["image_path"]]
    assert cards[0].children[1].children == "0 · seed 0"
    assert [c.children[2].children for c in cards] == picked["model"].tolist()     # teacher or student
    assert dict(zip(counts.data[0].y, counts.data[0].x, strict=True)) == {"1 · class 1": 4, "0 · class 0": 1,
                                                                          "9 · class 9": 1}

    download = selection.export_csv(ctx, 1, store)
    assert download["filename"] == "selection.csv"
    content = base64.b64decode(download["content"]) if download.get("base64") else download["content"].encode()
    exported = pd.read_csv(io.BytesIO(content))
    assert exported["sample_id"].tolist() == picked["sample_id"].tolist()
    np.testing.assert_allclose(exported["umap_x"], picked["umap_x"])

    store, counts, summary, disabled = selection.select(ctx, {"points": []})
    assert (store, summary, disabled) == ([], "Nothing selected.", True)
    assert selection.page(ctx, ID.selection, store)[0] == []
    assert counts.layout.annotations[0].text == "class counts of the selection"
    assert selection.select(ctx, None)[0] == []
    for bad in ([], None, [999, -1]):
        with pytest.raises(PreventUpdate):
            selection.export_csv(ctx, 1, bad)


# -- the wiring ------------------------------------------------------------------------------------------

def test_register_wires_every_callback_of_every_feature(state):
    app = create_app(state)
    outputs = set(app.callback_map)
    expected = {
        "scatter.figure", "..hover-tip.show...hover-tip.bbox...hover-tip.children..",
        "..clicked.data...seed-input.value...class-input.value..",
        "..first-ready.data...trajectory-ready.data...similarity.figure...inspect-status.children..",
        "trajectory-done.data", "..step-slider.max...step-slider.disabled...step-slider.marks...step-slider.value..."
        "step-auto.data..",
        "..panels.figure...step-label.children..", "..layer-pick.value...layer-pick.options...layer-naming.value..",
        "..reduction-arg.disabled...reduction-arg.value..", "png-done.children",
        "server-notice.style",    # issue 14: the server's notice bar hides when clicked (in the browser)
        "..selection.data...class-counts.figure...selection-summary.children...export-csv.disabled..",
        "csv-download.data",
        # issue 18: the spinner's line, the panels' width and file name, the seed message, the .npz download
        "inspect-busy-text.children", "panel-width.data", "panels.config", "seed-message.children", "npz-download.data",
        "hover-point.data",    # hovers of a mouse that moved (not the browser's re-hover after a resize)
        # issue 17: the edits and the patch sweep
        "edit-layer.options", "edit-region-graph.figure", "..edit-region.data...edit-region-text.children..",
        "..edits.data...edit-message.children..",
        "..edit-images.figure...edit-changes.figure...edit-list.children...edit-status.children..",
        "..sweep-graph.figure...sweep-status.children..",
        # issue 15: teacher vs student over many samples (the matrix and its diagonal, the sigma alignment)
        "cmp-layers.options", "..cmp-matrix.figure...cmp-diagonal.figure...cmp-status.children..",
        "..align-graph.figure...align-status.children..",
        # issue 19: the gallery's pages, history and pins, the address
        "..gallery.children...gallery-page.data...gallery-pager.children...gallery-prev.disabled...gallery-next."
        "disabled..", "..history.data...history-pick.options..", "..pins.data...pin-message.children..",
        "pin-strip.options", "url-in.data", "url-out.data", "url.title",
        # issue 19: the map switcher, find and zoom, the trajectory's line and play button (visualizer.app.explore)
        "..map-choice.data...map-about.children..", "..found.data...map-zoom.data...find-message.children..",
        "traj-note.children", "..traj-timer.disabled...traj-play.children..",
        # issue 17: the clicked point's nearest neighbours and the map's trust figure (visualizer.app.neighbours)
        "..neighbour-gallery.children...neighbours.data...neighbour-status.children...neighbour-trust.children..",
        # issue 16: a clicked real image (probe maps), the class-collapse ranking (a job) and a class's galleries
        "real-view.children", "..collapse-chart.figure...collapse-table.children...collapse-corr.figure..."
        "collapse-status.children..", "collapse-gallery.children",
        "scatter-view.data",    # issue 21: the view shown, kept in the browser for a large map's overview
    }
    # second writers of an output (allow_duplicate): the tooltip hidden on click/zoom/resize, the chart relabelled;
    # issue 19's: the address applied, a step or argument it restores, a key, a pin or history entry picked
    assert {re.sub(r"@[0-9a-f]+", "", o) for o in outputs if "@" in o} >= {
        "..hover-tip.show...hover-point.data..", "similarity.figure", "step-slider.value",
        "..clicked.data...seed-input.value...class-input.value...reduction.value...reduction-arg.value...step-slider."
        "value...pins.data...edits.data...url-step.data...url-arg.data...url-out.data...layer-pick.value..."
        "map-pick.value..",
        "..step-slider.value...url-step.data..", "..reduction-arg.value...url-arg.data..",
        "..clicked.data...seed-input.value...class-input.value..",
        "..clicked.data...seed-input.value...class-input.value...history-pick.value..",
        "..clicked.data...seed-input.value...class-input.value...edits.data...step-slider.value...url-step.data..."
        "pin-strip.value.."}
    assert {o for o in outputs if "@" not in o} == expected
    assert app.callback_map["trajectory-done.data"].get("background")
    assert app.callback_map["..cmp-matrix.figure...cmp-diagonal.figure...cmp-status.children.."].get("background")
    assert app.callback_map["..collapse-chart.figure...collapse-table.children...collapse-corr.figure..."
                            "collapse-status.children.."].get("background")
    assert isinstance(app.visualizer, AppContext) and app.visualizer.jobs is not None


def _dispatch(client, output: str, inputs: list[tuple[str, str, object]], changed: str, state=()) -> dict:
    """One callback request as the page sends it (POST /_dash-update-component); the response's outputs."""
    def props(items):
        return [{"id": i, "property": p, "value": v} for i, p, v in items]

    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in output.strip(".").split("...")]
    body = {"output": output, "outputs": outputs if output.startswith("..") else outputs[0],
            "inputs": props(inputs), "state": props(state), "changedPropIds": [changed]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data
    return r.get_json()["response"]


def test_the_wired_callbacks_get_the_context_and_the_trigger(state):
    """Through Dash's own dispatch (no browser): `register` hands each function the context and, where it
    asks for one, the id of the input that fired."""
    app = create_app(state)
    client = app.server.test_client()
    client.get("/")
    buttons = [(ID.naming, "value", "legacy"), (ID.layers_default, "n_clicks", 0), (ID.layers_legacy, "n_clicks", 0),
               (ID.layers_native, "n_clicks", 1)]
    got = _dispatch(client, "..layer-pick.value...layer-pick.options...layer-naming.value..", buttons,
                    "layers-native.n_clicks", state=[(ID.layer_pick, "value", [])])
    # every native name, as the page's naming: the values stay canonical, the labels and the naming are native
    assert got["layer-naming"]["value"] == "native"
    assert [o["label"] for o in got["layer-pick"]["options"]] == app.visualizer.inspector.native_layers()
    assert got["layer-pick"]["value"] == app.visualizer.inspector.legacy_layers()

    got = _dispatch(client, "..clicked.data...seed-input.value...class-input.value..",
                    [(ID.scatter, "clickData", None), (ID.generate, "n_clicks", 1)], "generate-btn.n_clicks",
                    state=[(ID.seed_input, "value", 17), (ID.class_input, "value", 6)])
    assert got["clicked"]["data"]["seed"] == 17 and got["seed-input"]["value"] == 17
    assert got["class-input"]["value"] == 6
