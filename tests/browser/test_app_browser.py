"""The app in a real headless Chromium (dash.testing): hover, click, progress/cancel, box selection, 100k points."""

import os
import time

import pytest
from app_files import pair_models, write_synthetic_embeddings
from app_helpers import (
    HEATMAPS,
    PANELS,
    click_and_wait_for_panels,
    drag_box,
    frame_point,
    hover_point,
    isolated_row,
    make_app,
    record,
    screenshot,
    settle,
    start,
    wait_for_download,
    wait_js,
)

from visualizer.app.config import AppConfig, ModelSource, load
from visualizer.app.server import create_app
from visualizer.inspection import hooks_left

pytestmark = pytest.mark.browser


def test_hover_click_panels_trajectory_and_png(dash_duo, small_csv, checkpoints):
    app = make_app(small_csv, checkpoints, num_steps=12)
    start(dash_duo, app)
    layers = app.visualizer.default_layers
    assert dash_duo.find_element("#scatter .main-svg")
    screenshot(dash_duo, "overview.png")

    # hover: the tooltip shows the thumbnail (served by URL), the class name and the seed
    row = isolated_row(dash_duo, app)
    x, y, seed, label = frame_point(app, row)
    hover_point(dash_duo, "scatter", x, y)
    img = dash_duo.wait_for_element("#hover-tip img", timeout=20)
    wait_js(dash_duo, "const i = document.querySelector('#hover-tip img');"
                      "return i && i.complete && i.naturalWidth > 0;")
    assert "/thumbs/" in img.get_attribute("src")
    tip = dash_duo.find_element("#hover-tip").text
    assert f"seed {seed}" in tip and app.visualizer.frame.iloc[row]["class_name"] in tip
    screenshot(dash_duo, "hover.png")

    # click: both panels render (images + heatmaps per layer + difference) and the similarity chart
    elapsed = click_and_wait_for_panels(dash_duo, app, row)
    n_layers = len(layers)
    wait_js(dash_duo, HEATMAPS + "", 10)
    assert dash_duo.driver.execute_script(HEATMAPS) == 1 + 3 * n_layers
    assert dash_duo.driver.execute_script(PANELS + "return g.data.filter(t => t.type === 'image').length;") == 2
    sim = wait_js(dash_duo, "const g = document.querySelector('#similarity .js-plotly-plot');"   # with baselines
                            "return g && g.data && g.data.length === 10 && g.data[0].x.length;")
    assert sim == len(app.visualizer.inspector.native_layers())
    record("click_to_panels_s_60_points", round(elapsed, 3))

    # the teacher's run finishes: the slider is on its last step; moving it shows another step
    wait_js(dash_duo, "const r = document.querySelector('#step-slider .dash-slider-root');"
                      "return r && !r.hasAttribute('data-disabled') && "
                      "document.querySelector('#step-label').textContent.includes(' s run');", 60)
    dash_duo.find_element("#step-slider .dash-slider-track").click()      # jump to the middle of the track
    wait_js(dash_duo, PANELS + "return g.data.length && g.layout.annotations.some(a => /teacher · step ([2-9]|1[01])"
                               "\\/12/.test(a.text));", 20)
    assert hooks_left([s.adapter for s in app.visualizer.inspector.slots.values()]) == 0
    screenshot(dash_duo, "panels.png")

    # a repeated click on the same point is served from the cache
    hits = app.visualizer.inspector.cache.hits
    dash_duo.find_element("#generate-btn").click()
    end = time.monotonic() + 20
    while app.visualizer.inspector.cache.hits <= hits and time.monotonic() < end:
        time.sleep(0.05)
    assert app.visualizer.inspector.cache.hits > hits

    # PNG of the panels, drawn by Plotly in the browser and saved by Chromium, named like every export
    dash_duo.find_element("#download-png").click()
    stem = f"seed-{seed}-class-{label}-l2"
    dash_duo.wait_for_text_to_equal("#png-done", f"saved {stem}.png", timeout=30)
    path = wait_for_download(dash_duo.download_path, f"{stem}.png")
    with open(path, "rb") as f:
        assert f.read(4) == b"\x89PNG"
    settle(dash_duo)
    assert not dash_duo.get_logs()


def test_teacher_progress_advances_and_cancel_stops_it(dash_duo, small_csv, checkpoints):
    app = make_app(small_csv, checkpoints, num_steps=1024)   # long enough to watch and cancel (the most a run may take)
    start(dash_duo, app)
    inspector = app.visualizer.inspector
    manager = app.visualizer.jobs
    row = isolated_row(dash_duo, app, "teacher")
    click_and_wait_for_panels(dash_duo, app, row)

    # the student's panel is there while the teacher is still running
    dash_duo.wait_for_element("#progress-row", timeout=20)
    wait_js(dash_duo, "return getComputedStyle(document.querySelector('#progress-row')).display !== 'none';", 30)
    assert dash_duo.driver.execute_script(HEATMAPS) > 0
    first = int(wait_js(dash_duo, "const p = document.querySelector('#teacher-progress');"
                                  "return Number(p.value) > 0 && p.value;", 60))
    later = int(wait_js(dash_duo, "const p = document.querySelector('#teacher-progress');"
                                  f"return Number(p.value) > {first} && p.value;", 60))
    assert later > first and dash_duo.driver.execute_script(
        "return document.querySelector('#teacher-progress').max") == 1024
    screenshot(dash_duo, "progress.png")
    assert manager.running_jobs() == 1

    # a click on another point cancels this tab's run, so the new first look gets the teacher's lock at once
    other = isolated_row(dash_duo, app, "student")
    click_and_wait_for_panels(dash_duo, app, other, timeout=30)
    wait_js(dash_duo, "return document.querySelector('#progress-text').textContent.startsWith('step ');", 30)
    assert manager.running_jobs() == 1

    dash_duo.find_element("#cancel-btn").click()
    end = time.monotonic() + 20
    while manager.running_jobs() and time.monotonic() < end:
        time.sleep(0.05)
    assert manager.running_jobs() == 0
    wait_js(dash_duo, "return getComputedStyle(document.querySelector('#progress-row')).display === 'none';", 20)
    assert hooks_left([s.adapter for s in inspector.slots.values()]) == 0
    assert inspector.slots["teacher"].lock.acquire(timeout=5)
    inspector.slots["teacher"].lock.release()
    assert dash_duo.find_element("#step-slider .dash-slider-root").get_attribute("data-disabled") is not None
    settle(dash_duo)
    assert not dash_duo.get_logs()


def test_box_selection_fills_gallery_and_exports_csv(dash_duo, small_csv, checkpoints):
    app = make_app(small_csv, checkpoints, num_steps=4)
    start(dash_duo, app)
    frame = app.visualizer.frame
    dash_duo.find_element('#scatter .modebar-btn[data-title="Box select"], '
                          '#scatter .modebar-btn[data-title="Box Select"]').click()
    x0, x1 = frame["umap_x"].quantile([0.2, 0.8])
    y0, y1 = frame["umap_y"].quantile([0.2, 0.8])
    drag_box(dash_duo, "scatter", x0, y1, x1, y0)
    dash_duo.wait_for_element("#gallery img", timeout=30)
    dash_duo.wait_for_contains_text("#selection-summary", "points selected", timeout=20)
    count = int(dash_duo.find_element("#selection-summary").text.split(" ")[0].replace(",", ""))
    assert len(dash_duo.find_elements("#gallery img")) == min(count, 120)
    bars = dash_duo.driver.execute_script("const g = document.querySelector('#class-counts .js-plotly-plot');"
                                          "return g.data[0].x.reduce((a, b) => a + b, 0);")
    assert bars == count
    dash_duo.driver.execute_script("document.querySelector('#selection-summary').scrollIntoView();")
    screenshot(dash_duo, "selection.png")

    dash_duo.find_element("#export-csv").click()
    path = os.path.join(dash_duo.download_path, "selection.csv")
    end = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.1)
    import pandas as pd

    exported = pd.read_csv(path)
    assert len(exported) == count
    # the box's edge falls between pixels: everything well inside is selected, nothing well outside
    chosen = set(exported["sample_id"])
    mx, my = 0.03 * (x1 - x0), 0.03 * (y1 - y0)
    inner = frame[frame.umap_x.between(x0 + mx, x1 - mx) & frame.umap_y.between(y0 + my, y1 - my)]
    outer = frame[frame.umap_x.between(x0 - mx, x1 + mx) & frame.umap_y.between(y0 - my, y1 + my)]
    assert set(inner["sample_id"]) <= chosen <= set(outer["sample_id"]) and len(inner) > 10
    settle(dash_duo)
    assert not dash_duo.get_logs()


def test_scale_100k_points_load_and_click(dash_duo, tmp_path, checkpoints):
    pkl, student = checkpoints
    models = pair_models(pkl, student)
    csv = write_synthetic_embeddings(tmp_path / "emb", 50_000, models=models)
    config = AppConfig(embeddings=csv, models=(ModelSource("teacher", str(pkl)), ModelSource("student", str(student))),
                       device="cpu", preset="fid", num_steps=4)
    app = create_app(load(config))
    assert len(app.visualizer.frame) == 100_000
    # every point as a WebGL marker, as before issue 21 (whose overview image starts above 50k points by
    # default; tests/browser/test_large_map_browser.py drives that)
    app.visualizer.exact_limit = 100_000
    start(dash_duo, app)
    # load to interactive, measured on a fresh page load: all 100k points drawn and the plot ready for input
    url = dash_duo.server_url
    t0 = time.perf_counter()
    dash_duo.driver.get(url)
    wait_js(dash_duo, "const g = document.querySelector('#scatter .js-plotly-plot');"
                      "if (!g || !g._fullData) return false;"
                      "const n = g._fullData.reduce((a, t) => a + (t.x ? t.x.length : 0), 0);"
                      "return n === 100000 && !!document.querySelector('#scatter .nsewdrag');", 120)
    load_s = time.perf_counter() - t0
    record("scatter_100k_load_to_interactive_s", round(load_s, 3))
    screenshot(dash_duo, "scale-100k.png")

    frame = app.visualizer.frame
    row = int(frame["umap_x"].idxmax())   # an outermost point: nothing else under the cursor
    elapsed = click_and_wait_for_panels(dash_duo, app, row, timeout=120)
    record("click_to_panels_s_100k_points", round(elapsed, 3))
    assert dash_duo.driver.execute_script(HEATMAPS) > 0
    settle(dash_duo)
    assert not dash_duo.get_logs()
