"""A large map (issue 21) in a real headless Chromium: 200,000 points drawn as the overview image.

Load to interactive, hover (the server's point of the cell under the mouse: its thumbnail), click (that point
regenerates in the panels), a box selection resolved on the server from its geometry, find zooming to a seed
(its ring), a closer zoom (exact markers), and reset zoom back to the overview. The same test at 1,000,000
points is opt-in (VISUALIZER_BENCH_1M=1); benchmarks/bench_large_map.py runs it, with 100k and 300k, and
records the timings and memory.
"""

import json
import os
import time

import numpy as np
import pytest
from app_files import pair_models, write_synthetic_embeddings
from app_helpers import PANEL_TITLE, click_point, drag_box, hover_point, record, screenshot, settle, start, wait_js
from selenium.webdriver.common.keys import Keys

from visualizer.app.config import AppConfig, ModelSource, load
from visualizer.app.overview import CELL_PX, IMAGE_SIZE
from visualizer.app.server import create_app
from visualizer.inspection.density import View, cell_points, in_box

pytestmark = pytest.mark.browser

SCATTER = "const g = document.querySelector('#scatter .js-plotly-plot');"
OVERVIEW = SCATTER + ("return !!(g && g._fullData && g._fullData.length && g._fullData[0].type === 'heatmap' && "
                      "g.layout.images && g.layout.images.length === 1 && document.querySelector('#scatter .nsewdrag')"
                      " && document.querySelector('#scatter .imagelayer image'));")
MARKERS = SCATTER + ("return g && g._fullData ? g._fullData.filter(t => t.type === 'scattergl' && t.customdata)"
                     ".reduce((a, t) => a + t.x.length, 0) : 0;")
NO_IMAGE = SCATTER + "return !!(g && g.layout && (!g.layout.images || !g.layout.images.length));"
# the browser's memory: the page's JS heap (Chromium's performance.memory)
HEAP = "return performance.memory ? performance.memory.usedJSHeapSize : null;"


def _points() -> int:
    return int(os.environ.get("VISUALIZER_LARGE_POINTS", "200000"))


def _app(tmp_path, checkpoints, points: int):
    pkl, student = checkpoints
    models = pair_models(pkl, student)
    t0 = time.perf_counter()
    csv = write_synthetic_embeddings(tmp_path / "emb", points // 2, models=models, num_classes=10)
    written = time.perf_counter() - t0
    config = AppConfig(embeddings=csv, models=(ModelSource("teacher", str(pkl)), ModelSource("student", str(student))),
                       device="cpu", preset="fid", num_steps=4)
    t0 = time.perf_counter()
    state = load(config)
    loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    app = create_app(state)
    return app, {"csv_write_s": written, "csv_load_s": loaded, "create_app_s": time.perf_counter() - t0}


def _server_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _browser_rss_mib() -> float | None:
    """Resident memory of every Chromium process this test started (renderer, GPU, browser), when psutil is there."""
    try:
        import psutil
    except ImportError:
        return None
    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name().lower():
                total += child.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def _cell_centre(app, frame) -> tuple[float, float, int]:
    """(x, y) of the centre of a hover cell holding points, away from the plot's edges, and the row the server
    puts there (the cell's point nearest its centre), computed as the figure computes it."""
    x, y = frame["umap_x"].to_numpy(float), frame["umap_y"].to_numpy(float)
    v = View.around(x, y)
    nx, ny = IMAGE_SIZE[0] // CELL_PX, IMAGE_SIZE[1] // CELL_PX
    counts, rep = cell_points(x, y, frame.index.to_numpy(), v, nx, ny)
    # a cell of the top band's far side (the toolbar is at the top right), held by few points
    rows, cols = np.nonzero((counts > 0) & (counts <= 3))
    ok = (rows < ny * 0.8) & (rows > ny * 0.2) & (cols > nx * 0.2) & (cols < nx * 0.8)
    i, j = rows[ok][0], cols[ok][0]
    dx, dy = (v.x1 - v.x0) / nx, (v.y1 - v.y0) / ny
    return v.x0 + (j + 0.5) * dx, v.y0 + (i + 0.5) * dy, int(rep[i, j])


def test_large_map_overview_hover_click_select_find(dash_duo, tmp_path, checkpoints):
    points = _points()
    if points > 200_000 and not os.environ.get("VISUALIZER_BENCH_1M"):
        pytest.skip("more than 200k points: opt in with VISUALIZER_BENCH_1M=1 (benchmarks/bench_large_map.py)")
    app, timings = _app(tmp_path, checkpoints, points)
    frame = app.visualizer.frame
    assert len(frame) == points and len(frame) > app.visualizer.exact_limit
    start(dash_duo, app)
    wait_js(dash_duo, OVERVIEW, 60)
    # load to interactive, on a fresh page load: the overview image drawn and the plot ready for input
    t0 = time.perf_counter()
    dash_duo.driver.get(dash_duo.server_url)
    wait_js(dash_duo, OVERVIEW, 120)
    timings["load_to_interactive_s"] = time.perf_counter() - t0
    assert dash_duo.driver.execute_script(MARKERS) == 0          # no point sent one by one
    title = dash_duo.driver.execute_script(SCATTER + "return g.layout.title.text;")
    assert title.startswith(f"{points:,} of {points:,} points") and "overview image" in title
    timings["browser_js_heap_mib"] = (dash_duo.driver.execute_script(HEAP) or 0) / 2**20
    rss = _browser_rss_mib()
    if rss is not None:
        timings["browser_rss_mib"] = rss
    timings["server_rss_mib_loaded"] = _server_rss_mib()
    screenshot(dash_duo, f"large-map-{points // 1000}k.png")

    # hover: the cell's point (found on the server) shows its thumbnail and seed
    cx, cy, row = _cell_centre(app, frame)
    r = frame.iloc[row]
    hover_point(dash_duo, "scatter", cx, cy)
    dash_duo.wait_for_element("#hover-tip img", timeout=30)
    dash_duo.wait_for_contains_text("#hover-tip", f"seed {int(r['seed'])} · {r['model']}", timeout=30)
    assert dash_duo.find_element("#hover-tip img").get_attribute("src").endswith(r["image_path"])

    # click: the same point regenerates in the panels
    t0 = time.perf_counter()
    click_point(dash_duo, "scatter", cx, cy)
    wait_js(dash_duo, PANEL_TITLE.replace("return", "const t =") + f"; return t && t.startsWith('seed {r['seed']} ');",
            120)
    timings["click_to_panels_s"] = time.perf_counter() - t0

    # box selection: resolved on the server from the box, within its edges
    dash_duo.find_element("#scatter .modebar-btn[data-val='select']").click()
    x0, x1 = np.quantile(frame["umap_x"], [0.45, 0.55])
    y0, y1 = np.quantile(frame["umap_y"], [0.45, 0.55])
    t0 = time.perf_counter()
    drag_box(dash_duo, "scatter", x0, y1, x1, y0)
    dash_duo.wait_for_contains_text("#selection-summary", "points selected", timeout=60)
    dash_duo.wait_for_element("#gallery img", timeout=60)
    timings["box_select_to_gallery_s"] = time.perf_counter() - t0
    count = int(dash_duo.find_element("#selection-summary").text.split(" ")[0].replace(",", ""))
    x, y = frame["umap_x"].to_numpy(), frame["umap_y"].to_numpy()
    mx, my = 0.02 * (x1 - x0), 0.02 * (y1 - y0)
    inner = int(in_box(x, y, (x0 + mx, x1 - mx), (y0 + my, y1 - my)).sum())
    outer = int(in_box(x, y, (x0 - mx, x1 + mx), (y0 - my, y1 + my)).sum())
    assert inner <= count <= outer and inner > 100, (inner, count, outer)
    dash_duo.find_element("#scatter .modebar-btn[data-val='zoom']").click()

    # find: zooms to a seed and rings its points (over the image while the zoomed view still holds more than
    # the limit, as a dense region of 1M points does); zooming in further brings the exact markers
    seed = int(frame["seed"].iloc[len(frame) // 3])
    box = dash_duo.find_element("#find-text")
    box.send_keys(str(seed))
    box.send_keys(Keys.ENTER)
    ringed = int((frame["seed"] == seed).sum())
    wait_js(dash_duo, SCATTER + "const t = g._fullData.find(d => d.name === 'found');"
                               "return t && t.x.length === arguments[0];", 60, ringed)
    fx, fy = (float(v) for v in frame.loc[frame["seed"] == seed, ["umap_x", "umap_y"]].iloc[0])
    w = 0.01 * float(frame["umap_x"].max() - frame["umap_x"].min())
    t0 = time.perf_counter()
    dash_duo.driver.execute_script(SCATTER + "Plotly.relayout(g, {'xaxis.range[0]': arguments[0] - arguments[2], "
                                   "'xaxis.range[1]': arguments[0] + arguments[2], 'yaxis.range[0]': arguments[1] - "
                                   "arguments[2], 'yaxis.range[1]': arguments[1] + arguments[2]});", fx, fy, w)
    wait_js(dash_duo, NO_IMAGE, 60)
    wait_js(dash_duo, MARKERS, 60)
    timings["zoom_to_markers_s"] = time.perf_counter() - t0
    shown = dash_duo.driver.execute_script(MARKERS)
    assert 0 < shown <= app.visualizer.exact_limit
    title = dash_duo.driver.execute_script(SCATTER + "return g.layout.title.text;")
    assert f"points around this view, of {points:,} shown" in title
    ring = dash_duo.driver.execute_script(SCATTER + "const t = g._fullData.find(d => d.name === 'found');"
                                          "return t ? t.x.length : 0;")
    assert ring == ringed
    screenshot(dash_duo, f"large-map-{points // 1000}k-zoomed.png")

    # reset zoom: back to the overview
    dash_duo.find_element("#zoom-reset").click()
    wait_js(dash_duo, OVERVIEW, 60)
    timings["server_rss_mib"] = _server_rss_mib()     # this process: the server, its table and models, the test
    rss = _browser_rss_mib()
    if rss is not None:
        timings["browser_rss_mib_end"] = rss
    settle(dash_duo)
    logs = [e for e in dash_duo.get_logs() or [] if e.get("level") == "SEVERE"]
    assert not logs, logs
    for key, value in timings.items():
        record(f"large_map_{points}_{key}", round(value, 3))
    out = os.environ.get("VISUALIZER_LARGE_JSON")
    if out:
        with open(out, "w") as f:
            json.dump({"points": points, **timings}, f, indent=2)
