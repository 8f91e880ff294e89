"""Exploring the map from the page (visualizer.app.explore), callbacks called directly: find and zoom, the map
switcher, the teacher's trajectory on the map with its step marker. A real tiny embed run with per-layer maps
and its real checkpoints (test_maps' run)."""

import numpy as np
import pytest
from dash import no_update
from test_embed_pipeline import LAYERS, NUM_SEEDS, TEACHER_STEPS, ckpts, reference  # noqa: F401
from test_maps import mapped  # noqa: F401

from visualizer.app import explore, panels, scatter
from visualizer.app.config import AppConfig, load
from visualizer.app.context import build_context, layout_info
from visualizer.app.ids import ID
from visualizer.embeddings.maps import MAIN, map_id


@pytest.fixture()
def ctx(mapped):  # noqa: F811
    return build_context(load(AppConfig(embeddings=mapped / "embeddings.csv", device="cpu")))


def test_find_parses_seeds_and_sample_ids(ctx):
    f = ctx.frame
    rows, why = explore.parse_find("5", f)
    assert not why and set(f.loc[rows, "seed"]) == {5} and len(rows) == 3      # teacher twice, student once
    rows, why = explore.parse_find(" teacher-7-0, 9 ", f)
    assert not why and set(f.loc[rows, "sample_id"]) == {"teacher-7-0", "teacher-9-0", f"teacher-9-{TEACHER_STEPS - 1}",
                                                          "student-9-0"}
    for text, message in [("", "type a seed"), (None, "type a seed"), ("abc", "neither a seed nor a sample id"),
                          ("-3", "not negative"), ("2.5", "not a whole number"), ("99999", "not in this run"),
                          ("1 " * 101, "at most 100")]:
        rows, why = explore.parse_find(text, f)
        assert rows == [] and why.startswith("find: ") and message in why, (text, why)


def test_find_zooms_to_the_found_points_and_reset_zooms_out(ctx):
    found, zoom, message = explore.find(ctx, ID.find_go, 1, 0, 0, 0, "12", [], MAIN, None)
    f = ctx.frame
    assert f.loc[found, "seed"].eq(12).all() and message == "found 3 point(s)"
    assert zoom["map"] == MAIN and zoom["rev"] == 1
    xy = f.loc[found, ["umap_x", "umap_y"]].to_numpy()
    assert (zoom["x"][0] < xy[:, 0]).all() and (xy[:, 0] < zoom["x"][1]).all()
    assert (zoom["y"][0] < xy[:, 1]).all() and (xy[:, 1] < zoom["y"][1]).all()
    span = f["umap_x"].max() - f["umap_x"].min()
    assert zoom["x"][1] - zoom["x"][0] < span           # zoomed in
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [], None, "default", MAIN, found, zoom, None, 1)
    assert list(fig.layout.xaxis.range) == zoom["x"] and fig.layout.uirevision == "main-1"
    assert [t.name for t in fig.data[-3:]] == [explore.FOUND, explore.PATH, explore.MARKER]
    assert sorted(fig.data[-3].x) == sorted(f.loc[found, "umap_x"])
    # bad text: nothing found, nothing zoomed, the field named
    found, zoom2, message = explore.find(ctx, ID.find_go, 2, 0, 0, 0, "nope", [], MAIN, zoom)
    assert found == [] and zoom2 is no_update and message.startswith("find: 'nope'")
    # zoom to the box/lasso selection; reset
    _, zoom3, message = explore.find(ctx, ID.zoom_selection, 2, 0, 1, 0, "", [0, 1, 2], MAIN, zoom)
    assert zoom3["rev"] == 2 and "3 selected" in message
    _, zoom4, _ = explore.find(ctx, ID.zoom_reset, 2, 0, 1, 1, "", [], MAIN, zoom3)
    assert zoom4 == {"map": MAIN, "rev": 3, "x": None, "y": None}
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [], None, "default", MAIN, [], zoom4, None, 1)
    assert fig.layout.xaxis.range is None and fig.layout.uirevision == "main-3"


def test_the_map_switcher_lists_the_run_maps_and_draws_each(ctx):
    info = layout_info(load(AppConfig(embeddings=ctx.root / "embeddings.csv", device="cpu")), ctx)
    ids = [i for i, _ in info.maps]
    assert ids == [MAIN] + [map_id(layer, s) for layer in LAYERS for s in (0, TEACHER_STEPS - 1)]
    late = map_id(LAYERS[1], TEACHER_STEPS - 1)
    choice, about = explore.choose_map(ctx, late)
    assert choice == late and LAYERS[1] in about and f"{NUM_SEEDS} points" in about
    assert explore.choose_map(ctx, "no-such-map")[0] == MAIN
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [], None, "default", late, [], None, None, 1)
    rows = sorted(int(r) for t in fig.data[:-3] for r in (t.customdata or []))
    m = ctx.maps.get(late)
    assert rows == m.rows.tolist()      # the teacher's last-step rows only, at their own map's positions
    xs = np.concatenate([np.asarray(t.x, float) for t in fig.data[:-3]])
    assert set(np.round(xs, 4)) == set(np.round(m.xy[m.rows, 0].astype(float), 4))
    assert fig.layout.uirevision == late and "map " in fig.layout.title.text
    # seeds found on a map that does not hold all their rows: only the held ones
    found, _, message = explore.find(ctx, ID.find_go, 1, 0, 0, 0, "4", [], late, None)
    assert len(found) == 1 and "2 not on this map" in message


def test_the_teacher_trajectory_is_drawn_and_its_marker_follows_the_slider(ctx):
    f = ctx.frame
    seed = 6
    row = int(f.index[(f.model == "teacher") & (f.seed == seed) & (f.step == 0)][0])
    clicked = scatter.choose(ctx, ID.scatter, {"points": [{"customdata": row}]}, 0, 0, 0)[0]
    first = panels.first_look(ctx, clicked, ["encoder_bottleneck"], "l2", None)[0]
    ready = panels.teacher_run(ctx, lambda *_: None, first)
    assert ready["num_steps"] == TEACHER_STEPS
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [], None, "default", MAIN, [], None, ready, 2)
    path, marker = fig.data[-2], fig.data[-1]
    assert path.name == explore.PATH and len(path.x) == TEACHER_STEPS
    assert (marker.x[0], marker.y[0]) == (path.x[1], path.y[1])           # the slider's step 2
    # the last step's nearest row is the run's own row of that seed and step
    last = int(f.index[(f.model == "teacher") & (f.seed == seed) & (f.step == TEACHER_STEPS - 1)][0])
    placed, _ = explore.placed_trajectory(ctx, ready, MAIN)[0]
    assert placed.nearest[-1] == last and not placed.far[-1]
    assert (path.x[-1], path.y[-1]) == tuple(ctx.maps.get(MAIN).xy[last])    # the same row up to rounding
    # the run's end patches the path and the marker in (the figure's last two traces), without a redraw
    ops = explore.draw_trajectory(ctx, ready, 2, MAIN).to_plotly_json()["operations"]
    assert [o["location"] for o in ops] == [["data", -2], ["data", -1]]
    assert ops[0]["params"]["value"]["name"] == explore.PATH and len(ops[0]["params"]["value"]["x"]) == TEACHER_STEPS
    ops = explore.draw_trajectory(ctx, None, 1, MAIN).to_plotly_json()["operations"]     # a new click: none
    assert len(ops[0]["params"]["value"]["x"]) == 0
    ops = explore.draw_trajectory(ctx, ready, 3, MAIN).to_plotly_json()["operations"]    # the slider moved
    assert (ops[1]["params"]["value"]["x"], ops[1]["params"]["value"]["y"]) == ([path.x[2]], [path.y[2]])
    note = explore.trajectory_note(ctx, 3, ready, MAIN)
    assert f"seed {seed}" in note and "Step 3" in note and "nearest row teacher-6-" in note and "no refit" in note
    # on a per-layer map of the last step, too
    late = map_id(LAYERS[0], TEACHER_STEPS - 1)
    fig = scatter.draw(ctx, "class", None, ["teacher", "student"], [], None, "default", late, [], None, ready, 3)
    placed, _ = explore.placed_trajectory(ctx, ready, late)[0]
    assert placed.nearest[-1] == last and len(fig.data[-2].x) == TEACHER_STEPS
    assert (fig.data[-1].x[0], fig.data[-1].y[0]) == (fig.data[-2].x[2], fig.data[-2].y[2])
    ops = explore.draw_trajectory(ctx, None, 2, MAIN).to_plotly_json()["operations"]     # no run: nothing drawn
    assert ops[1]["params"]["value"]["x"] == []
    assert "when its run finishes" in explore.trajectory_note(ctx, 1, None, MAIN)
