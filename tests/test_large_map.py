"""Large maps without a browser (issue 21): the density engine and the app's overview, selection and view.

The engine (`visualizer.inspection.density`) against brute force: the lasso against even-odd ray casting
over every point, the hover cells against the nearest point of each cell, the image's pixels. The app
(`scatter.draw`, `selection.select`, the guard's types) on a synthetic table with the limit lowered, so a
few thousand points behave as a million would.
"""

import io

import numpy as np
import pytest
from app_files import write_synthetic_embeddings
from PIL import Image

from visualizer.app import explore, overview, scatter, selection
from visualizer.app.config import AppConfig, AppState
from visualizer.app.ids import ID
from visualizer.app.inputs import property_types
from visualizer.app.server import create_app
from visualizer.embeddings.schema import load_embeddings
from visualizer.inspection.density import View, _even_odd, cell_points, in_box, in_lasso, render

# -- the engine ---------------------------------------------------------------------------------------


def test_lasso_is_exact_against_ray_casting_every_point():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50_000), rng.normal(size=50_000)
    for k in range(12):
        m = int(rng.integers(3, 120))
        if k % 3 == 0:             # self-intersecting scribbles
            px, py = rng.normal(size=m), rng.normal(size=m)
        else:                      # star-shaped lassos
            ang = np.sort(rng.random(m)) * 2 * np.pi
            r = rng.random(m) * 2 + 0.2
            px, py = np.cos(ang) * r + rng.normal() * 0.3, np.sin(ang) * r
        np.testing.assert_array_equal(in_lasso(x, y, px, py), _even_odd(x, y, px, py))
    square = in_lasso(x, y, [-1, 1, 1, -1], [-1, -1, 1, 1])
    np.testing.assert_array_equal(square, (np.abs(x) < 1) & (np.abs(y) < 1))
    assert not in_lasso(x, y, [0, 1], [0, 1]).any()          # fewer than three vertices: nothing


def test_box_takes_its_corners_either_way():
    x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])
    assert in_box(x, y, (1.5, -1), (2, -0.5)).tolist() == [True, True, False]


def test_hover_cells_hold_their_points_and_name_the_one_nearest_the_centre():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=20_000), rng.normal(size=20_000)
    rows = np.arange(20_000) + 7
    v = View(-2, 2, -1.5, 1.5)
    counts, rep = cell_points(x, y, rows, v, 40, 30)
    inside = v.holds(x, y)
    assert counts.sum() == inside.sum()
    assert ((counts > 0) == (rep >= 0)).all()
    fx, fy = (x - v.x0) / (v.x1 - v.x0) * 40, (y - v.y0) / (v.y1 - v.y0) * 30
    ix, iy = np.clip(fx.astype(int), 0, 39), np.clip(fy.astype(int), 0, 29)
    d = np.hypot(fx - ix - 0.5, fy - iy - 0.5)
    for i, j in [(15, 20), (3, 5), (29, 39)]:
        held = np.flatnonzero(inside & (iy == i) & (ix == j))
        if len(held):
            assert rep[i, j] == rows[held[np.argmin(d[held])]]


def test_image_is_the_view_with_picked_codes_on_top_and_empty_pixels_clear():
    x = np.array([0.25, 0.25, 0.75])
    y = np.array([0.75, 0.75, 0.25])
    png = render(x, y, np.array([0, 1, 0]), ["#a0a0a0", "#ff0000"], View(0.0, 1.0, 0.0, 1.0), 4, 4)
    im = np.asarray(Image.open(io.BytesIO(png)))
    assert im.shape == (4, 4, 4)
    assert tuple(im[0, 1, :3]) == (255, 0, 0) and im[0, 1, 3] == 255     # two points, the higher code: top left
    assert tuple(im[2, 3, :3]) == (160, 160, 160) and 0 < im[2, 3, 3] < 255   # one point, lower right: fainter
    assert (im[..., 3] > 0).sum() == 2


# -- the app --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A browse-only app over 6,000 points whose limit is 1,000: an overview map in miniature."""
    csv = write_synthetic_embeddings(tmp_path_factory.mktemp("large"), 3000, num_classes=10)
    ctx = create_app(AppState(AppConfig(embeddings=csv), load_embeddings(csv), [])).visualizer
    ctx.exact_limit = 1000
    return ctx


def _draw(ctx, colour="class", classes=None, models=None, highlight=None, view=None, found=None, zoom=None):
    return scatter.draw(ctx, colour, classes, models, [], highlight, "default", "main", found, zoom, None, None,
                        None, view)


def test_overview_is_an_image_with_hover_cells_and_explore_traces_last(large):
    fig = _draw(large)
    assert len(fig.layout.images) == 1 and fig.layout.images[0].source.startswith("data:image/png;base64,")
    cells = fig.data[0]
    assert cells.type == "heatmap"
    custom = np.asarray(cells.customdata)
    held = np.asarray(cells.z) > 0
    assert set(custom[held].tolist()) <= set(range(len(large.frame)))
    assert (custom[~held] == len(large.frame)).all()      # empty cells: never hovered, refused if sent
    assert not any(t.type == "scattergl" and t.customdata is not None for t in fig.data)   # no point sent as such
    assert [t.name for t in fig.data[-3:]] == [explore.FOUND, explore.PATH, explore.MARKER]
    assert fig.layout.title.text.startswith("6,000 of 6,000 points · overview image")
    # model and sigma colourings, a class filter and a hidden model: still an image, of the visible points
    assert len(_draw(large, "model").layout.images) == 1
    assert len(_draw(large, "sigma").layout.images) == 1
    fig = _draw(large, classes=[1, 2, 3, 4, 5], models=["teacher", "student"])
    assert fig.layout.title.text.startswith("3,000 of 6,000 points") and len(fig.layout.images) == 1
    # few enough visible points: markers, as on a small map
    fig = _draw(large, classes=[1], models=["teacher"])
    assert not fig.layout.images and sum(len(t.x) for t in fig.data if t.customdata is not None) == 300


def test_zooming_in_sends_the_exact_points_of_the_view_and_find_rings_them(large):
    frame = large.frame
    rows, zoom, _ = explore.find(large, ID.find_go, 1, 0, 0, 0, "12", [], "main", None)
    view = {"map": "main", "x": zoom["x"], "y": zoom["y"], "rev": 1}
    fig = _draw(large, view=view, found=rows, zoom=zoom)
    assert not fig.layout.images
    sent = np.concatenate([np.asarray(t.customdata) for t in fig.data if t.customdata is not None])
    x, y = frame["umap_x"].to_numpy(), frame["umap_y"].to_numpy()
    near = overview.view_of(view, "main", View.around(x, y)).grown(overview.MARGIN).holds(x, y)
    assert sorted(sent.tolist()) == np.flatnonzero(near).tolist()
    assert set(rows) <= set(sent.tolist())
    ring = next(t for t in fig.data if t.name == explore.FOUND)
    assert len(ring.x) == len(rows) == 2
    assert list(fig.layout.xaxis.range) == pytest.approx(zoom["x"])
    # a view of another map, or autoranged, is the whole map: the overview again
    assert len(_draw(large, view={**view, "map": "other"}).layout.images) == 1
    assert len(_draw(large, view={**view, "x": None, "y": None}).layout.images) == 1


def test_view_of_fills_an_autoranged_axis_and_orders_reversed_ranges():
    whole = View(0, 10, 0, 5)
    assert overview.view_of({"map": "main", "x": [4, 2], "y": None, "rev": 1}, "main", whole) == View(2, 4, 0, 5)
    assert overview.view_of({"map": "main", "x": None, "y": None, "rev": 1}, "main", whole) is None
    assert overview.view_of({"map": "main", "x": [1, 1], "y": [0, 1], "rev": 1}, "main", whole) is None
    assert overview.view_of(None, "main", whole) is None


def test_overview_selection_is_resolved_on_the_server_from_box_and_lasso(large):
    frame = large.frame
    x, y = frame["umap_x"].to_numpy(), frame["umap_y"].to_numpy()
    box = {"points": [], "range": {"x": [-2.0, 3.0], "y": [-1.0, 4.0]}}
    rows, _, summary, disabled = selection.select(large, box, None, ["teacher", "student"], "main")
    assert rows == np.flatnonzero(in_box(x, y, (-2, 3), (-1, 4))).tolist() and not disabled
    assert summary.startswith(f"{len(rows):,} points selected")
    lasso = {"points": [], "lassoPoints": {"x": [-5.0, 5.0, 0.0], "y": [-5.0, -5.0, 5.0]}}
    rows, *_ = selection.select(large, lasso, [1, 2, 3, 4], ["student"], "main")     # 1,200 visible points
    keep = frame["class_label"].isin([1, 2, 3, 4]).to_numpy() & (frame["model"] == "student").to_numpy()
    assert rows == np.flatnonzero(keep & _even_odd(x, y, [-5.0, 5.0, 0.0], [-5.0, -5.0, 5.0])).tolist() and rows
    # a small visible set is drawn as markers: their customdata says what was selected, not the geometry
    rows, *_ = selection.select(large, box, [1], ["teacher"], "main")
    assert rows == []
    # markers selected (a zoomed-in view) win over the geometry
    rows, *_ = selection.select(large, {**box, "points": [{"customdata": 5}, {"customdata": 9}]}, None, None, "main")
    assert rows == [5, 9]


def test_the_guard_checks_the_view_and_the_selection_geometry(large):
    from dash import html

    types = property_types(large, html.Div([html.Div(id=ID.scatter)]))
    view = types[f"{ID.scatter_view}.data"]
    assert view.validate_python({"map": "main", "x": [0.0, 1.0], "y": None, "rev": 3})["rev"] == 3
    for bad in ({"map": "nowhere", "x": None, "y": None, "rev": 1}, {"map": "main", "x": [0, float("nan")],
                "y": None, "rev": 1}, {"map": "main", "x": [0, 1, 2], "y": None, "rev": 1},
                {"map": "main", "x": None, "y": None, "rev": 1, "extra": 1}):
        with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError, whatever its wording
            view.validate_python(bad)
    selected = types[f"{ID.scatter}.selectedData"]
    assert selected.validate_python({"points": [], "range": {"x": [0, 1], "y": [2, 3]}})
    for bad in ({"points": [], "range": {"x": [0, "a"], "y": [2, 3]}},
                {"points": [], "lassoPoints": {"x": [0, 1, 2], "y": [0, 1]}},
                {"points": [], "lassoPoints": {"x": [0, 1, float("inf")], "y": [0, 1, 2]}},
                {"points": [], "range": [0, 1]}):
        with pytest.raises(Exception):  # noqa: B017
            selected.validate_python(bad)
    hovered = types[f"{ID.scatter}.hoverData"]
    assert hovered.validate_python({"points": [{"customdata": 3, "pointNumber": [2, 7], "curveNumber": 0}]})
    with pytest.raises(Exception):  # noqa: B017
        hovered.validate_python({"points": [{"customdata": len(large.frame), "pointNumber": [2, 7]}]})


def test_progress_loading_reads_the_same_table(tmp_path, monkeypatch, capsys):
    from visualizer.embeddings import schema

    csv = write_synthetic_embeddings(tmp_path, 500, num_classes=4)
    a = load_embeddings(csv, progress=True).frame
    assert "checking" not in capsys.readouterr().err          # a small table loads silently
    monkeypatch.setattr(schema, "PROGRESS_BYTES", 0)
    monkeypatch.setattr(schema, "READ_CHUNK_ROWS", 128)        # several chunks
    b = load_embeddings(csv, progress=True).frame
    assert "checking 1,000 rows of embeddings.csv" in capsys.readouterr().err
    assert a.equals(b)


def test_a_long_lasso_is_thinned_and_picked_classes_are_named(large):
    t = np.linspace(0, 2 * np.pi, 50_000, endpoint=False)      # a circle with more vertices than the guard allows
    lasso = {"points": [], "lassoPoints": {"x": (4 * np.cos(t)).tolist(), "y": (4 * np.sin(t)).tolist()}}
    frame = large.frame
    rows, *_ = selection.select(large, lasso, None, None, "main")
    inside = np.hypot(frame["umap_x"].to_numpy(), frame["umap_y"].to_numpy()) < 4
    assert abs(len(rows) - int(inside.sum())) <= 2           # 2,000 vertices: the edge moves by 4 * 1e-6
    fig = _draw(large, highlight=[3])
    assert [t.name for t in fig.data if t.name and t.name.startswith("3 · ")] == ["3 · class 3"]


def test_the_map_switcher_draws_the_chosen_map_as_an_overview():
    """The shipped demo's run (main and probe maps) with the limit lowered: the probe map's points, not the
    main map's, are aggregated, and a view kept for the main map does not apply to the probe map."""
    from visualizer.adapters.demo import DEMO_EMBEDDINGS

    ctx = create_app(AppState(AppConfig(embeddings=DEMO_EMBEDDINGS), load_embeddings(DEMO_EMBEDDINGS), [])).visualizer
    ctx.exact_limit = 100
    probe = ctx.maps.frame("probe")
    fig = scatter.draw(ctx, "class", None, None, [], None, "default", "probe", [], None, None, None, None,
                       {"map": "main", "x": [0.0, 0.1], "y": [0.0, 0.1], "rev": 1})
    assert len(fig.layout.images) == 1 and "map " in fig.layout.title.text
    custom = np.asarray(fig.data[0].customdata)[np.asarray(fig.data[0].z) > 0]
    assert set(custom.tolist()) <= set(probe.index.tolist())
    x = probe["umap_x"].to_numpy()
    assert fig.layout.xaxis.range[0] < x.min() and fig.layout.xaxis.range[1] > x.max()
