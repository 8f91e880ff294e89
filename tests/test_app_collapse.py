"""The probe map in the page, callbacks called directly on the shipped demo (its probe map: digit classifier, 200
held-out digits): the map switcher's line, real points and their hover and click, density contours, the class
ranking job, a class's galleries and the seed correspondence; a run without a probe map says how to make one."""

import pytest
from dash import no_update
from dash.exceptions import PreventUpdate
from test_embed_pipeline import ckpts, reference  # noqa: F401

from visualizer.adapters.demo import DEMO_EMBEDDINGS
from visualizer.app import collapse, explore, overlays, scatter
from visualizer.app.config import AppConfig, load
from visualizer.app.context import build_context, layout_info
from visualizer.app.inputs import problem, property_types
from visualizer.app.page import build_layout
from visualizer.embeddings.maps import MAIN
from visualizer.metrics.probe_map import PROBE_ID

MODELS = ["teacher", "student"]


@pytest.fixture(scope="module")
def ctx():
    return build_context(load(AppConfig(embeddings=DEMO_EMBEDDINGS, device="cpu")))


def test_the_switcher_lists_the_probe_map_and_says_what_it_embeds(ctx):
    assert ctx.maps.ids() == [MAIN, PROBE_ID]
    value, line = explore.choose_map(ctx, PROBE_ID)
    assert value == PROBE_ID and "digit classifier" in line and "200 real images" in line and "1,200 points" in line
    assert layout_info(load(AppConfig(embeddings=DEMO_EMBEDDINGS, device="cpu")), ctx).probe_map


def test_real_points_are_drawn_hovered_and_shown_not_regenerated(ctx):
    fig = scatter.draw(ctx, "class", None, MODELS, [], None, "default", PROBE_ID, [], None, None, 1)
    real = [t for t in fig.data if t.name and t.name.startswith("real images")]
    assert len(real) == 1 and len(real[0].x) == 200 and min(real[0].customdata) == -200
    assert [t.name for t in fig.data[-3:]] == [explore.FOUND, explore.PATH, explore.MARKER]    # still last
    fig = scatter.draw(ctx, "class", [3], MODELS, [], None, "default", PROBE_ID, [], None, None, 1)
    assert 0 < len(next(t for t in fig.data if t.name.startswith("real images")).x) < 200     # the class filter
    main = scatter.draw(ctx, "class", None, MODELS, [], None, "default", MAIN, [], None, None, 1)
    assert not any((t.name or "").startswith("real images") for t in main.data)
    show, _, card = scatter.hover(ctx, {"points": [{"customdata": -5, "bbox": {"x0": 1, "x1": 2, "y0": 1, "y1": 2}}]})
    assert show and "real/4.png" in str(card)
    shown = overlays.show_real(ctx, {"points": [{"customdata": -1}]})
    assert "real/0.png" in str(shown) and "nothing to regenerate" in str(shown)
    assert overlays.show_real(ctx, {"points": [{"customdata": 3}]}) == []           # a model's point: nothing
    with pytest.raises(PreventUpdate):                                               # and no regeneration
        scatter.choose(ctx, "scatter", {"points": [{"customdata": -1}]}, 0, None, None)


def test_the_guard_allows_real_points_and_nothing_beyond(ctx):
    types = property_types(ctx, build_layout(layout_info(load(AppConfig(embeddings=DEMO_EMBEDDINGS, device="cpu")),
                                                         ctx)))
    click = types["scatter.clickData"]
    assert problem("scatter.clickData", click, {"points": [{"customdata": -200}]}) is None
    assert "real image" in problem("scatter.clickData", click, {"points": [{"customdata": -201}]})
    bar = types["collapse-chart.clickData"]
    assert problem("collapse-chart.clickData", bar, {"points": [{"customdata": 9}]}) is None
    assert problem("collapse-chart.clickData", bar, {"points": [{"customdata": 10}]})


def test_density_contours_per_visible_model(ctx):
    fig = scatter.draw(ctx, "class", None, MODELS, [], None, "default", MAIN, [], None, None, 1, ["on"])
    contours = [t for t in fig.data if t.type == "contour"]
    assert [t.name.split()[0] for t in contours] == MODELS
    assert contours[0].contours.start == 0.2 and contours[0].contours.end == 0.8
    fig = scatter.draw(ctx, "class", None, ["student"], [], None, "default", PROBE_ID, [], None, None, 1, ["on"])
    assert [t.name.split()[0] for t in fig.data if t.type == "contour"] == ["student"]
    assert not [t for t in scatter.draw(ctx, "class", None, MODELS, [], None, "default", MAIN, [], None, None, 1,
                                        []).data if t.type == "contour"]


def test_enclosed_mass_levels():
    import numpy as np

    z = np.array([[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_allclose(overlays.enclosed_mass(z), [[1.0, 0.9], [0.7, 0.4]])


def test_rank_job_then_a_class_opens_its_galleries(ctx):
    progress = []
    chart, table, corr, status = collapse.rank_job(ctx, progress.append, 1)
    bar = chart.data[0]
    assert sorted(bar.customdata) == list(range(10)) and len(bar.error_x.array) == 10
    assert "not what a person would judge" in str(status) and "chance" in str(status)
    assert "coverage s vs real" in str(table)
    assert [t.name for t in corr.data][:2] == ["all seeds", "chance"]
    assert progress[-1][0] == "1"
    worst = bar.customdata[-1]                      # drawn last = on top = most collapsed
    view = collapse.open_class(ctx, {"points": [{"customdata": int(worst)}]})
    text = str(view)
    assert "collapse-thumb-teacher" in text and "collapse-thumb-student" in text and "collapse-thumb-real" in text
    with pytest.raises(PreventUpdate):
        collapse.open_class(ctx, {"points": [{"customdata": 42}]})
    with pytest.raises(PreventUpdate):
        collapse.rank_job(ctx, progress.append, 0)


def test_a_run_without_a_probe_map_says_how_to_make_one(reference):  # noqa: F811
    c = build_context(load(AppConfig(embeddings=reference / "embeddings.csv", device="cpu")))
    *_, status = collapse.rank_job(c, lambda _: None, 1)
    assert "--probe" in str(status)
    assert collapse.rank_job(c, lambda _: None, 1)[0] is no_update
