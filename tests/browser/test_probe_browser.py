"""The shipped demo's probe map in a real headless Chromium (issue 16): switch to it, see what it embeds and its
real images, click a real image (shown, not regenerated), turn on the density contours, rank the classes and
click through to a class's teacher / student / real galleries."""

import dataclasses

import numpy as np
import pytest
from app_helpers import click_point, screenshot, settle, start, wait_js

from visualizer.app.config import demo_config, load
from visualizer.app.server import create_app
from visualizer.metrics.probe_map import PROBE_ID

pytestmark = pytest.mark.browser

SCATTER = "const g = document.querySelector('#scatter .js-plotly-plot');"
CHART = "const g = document.querySelector('#collapse-chart .js-plotly-plot');"


def _isolated_real_point(app) -> tuple[float, float]:
    """The real image farthest from any model's point on the probe map (a click there can only mean it)."""
    c = app.visualizer
    real = c.maps.get(PROBE_ID).real.xy.astype(float)
    models = c.maps.frame(PROBE_ID)[["umap_x", "umap_y"]].to_numpy(float)
    gap = np.linalg.norm(real[:, None] - models[None], axis=2).min(1)
    near = np.linalg.norm(real[:, None] - real[None], axis=2) + np.eye(len(real)) * 1e9
    i = int(np.argmax(np.minimum(gap, near.min(1))))
    return float(real[i, 0]), float(real[i, 1])


def test_probe_map_ranking_and_class_galleries(dash_duo):
    app = create_app(load(dataclasses.replace(demo_config(), device="cpu")))
    start(dash_duo, app, (1920, 1080))

    # 1: the switcher lists the probe map; the line says what it embeds; real images are a group of their own
    dash_duo.find_element("#map-pick").click()
    option = wait_js(dash_duo, "return [...document.querySelectorAll('.dash-dropdown-option')].find("
                               "o => o.textContent.trim().startsWith('probe: digit classifier'));", 10)
    option.click()
    wait_js(dash_duo, "return document.querySelector('#map-about').textContent.includes(\"digit classifier\") && "
                      "document.querySelector('#map-about').textContent.includes('200 real images');", 20)
    real = wait_js(dash_duo, SCATTER + "const t = g._fullData.find(t => (t.name || '').startsWith('real images'));"
                                       "return t && {x: t.x[0], y: t.y[0], n: t.x.length};", 30)
    assert real["n"] == 200

    # 2: a real image clicked is shown under the map, not regenerated
    x, y = _isolated_real_point(app)
    click_point(dash_duo, "scatter", x, y)
    wait_js(dash_duo, "const i = document.querySelector('#real-view-image');"
                      "return i && i.complete && i.naturalWidth === 32;", 20)
    assert "nothing to regenerate" in dash_duo.find_element("#real-view").text

    # 3: density contours, one per model
    dash_duo.find_element("#density-toggle input").click()
    wait_js(dash_duo, SCATTER + "return g._fullData.filter(t => t.type === 'contour').length === 2;", 30)
    settle(dash_duo)
    dash_duo.driver.execute_script("window.scrollTo(0, 0);")
    screenshot(dash_duo, "probe-map-1920x1080.png")

    # 4: rank the classes (a background job), then click the most collapsed class's bar: its galleries open
    button = dash_duo.find_element("#collapse-run")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    top = wait_js(dash_duo, CHART + "const b = g && g._fullData && g._fullData.find(t => t.type === 'bar');"
                                    "return b && b.customdata && {x: b.x[b.x.length - 1] / 2, y: b.y[b.y.length - 1],"
                                    "c: b.customdata[b.customdata.length - 1]};", 60)
    assert "chance" in dash_duo.find_element("#collapse-status").text
    click_point(dash_duo, "collapse-chart", top["x"], top["y"])
    wait_js(dash_duo, "return ['teacher', 'student', 'real'].every(s => "
                      "[...document.querySelectorAll('#collapse-gallery img.collapse-thumb-' + s)].some("
                      "i => i.complete && i.naturalWidth > 0));", 30)
    assert f"class {top['c']} · digit {top['c']}" in dash_duo.find_element("#collapse-gallery").text
    settle(dash_duo)
    dash_duo.driver.execute_script("document.getElementById('collapse-box').scrollIntoView({block: 'start'});")
    screenshot(dash_duo, "collapse-1920x1080.png")
    assert not [e for e in dash_duo.get_logs() if e.get("level") == "SEVERE"]
