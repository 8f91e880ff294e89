"""The embedded demo as `make app` opens it: the shipped digits pair, clicked in a real headless Chromium."""

import pytest
from app_helpers import click_point, record, screenshot, settle, start, wait_js

from visualizer.app.config import demo_config, load
from visualizer.app.server import create_app
from visualizer.inspection import hooks_left

pytestmark = pytest.mark.browser


def test_demo_opens_and_a_click_shows_both_models(dash_duo):
    import dataclasses
    import time

    app = create_app(load(dataclasses.replace(demo_config(), device="cpu")))
    start(dash_duo, app)
    assert "demo" in dash_duo.find_element("h1, h2, h3").text.lower() or "Demo" in dash_duo.driver.page_source

    frame = app.visualizer.frame
    r = frame[frame["model"] == "student"].iloc[0]
    t0 = time.perf_counter()
    click_point(dash_duo, "scatter", float(r["umap_x"]), float(r["umap_y"]))
    title = wait_js(dash_duo, "const g = document.querySelector('#panels .js-plotly-plot');"
                              "const t = g && g.layout && g.layout.title && g.layout.title.text;"
                              "return t && t.startsWith('seed ') && t;", 60)
    record("demo_click_to_panels_s", round(time.perf_counter() - t0, 3))
    assert "digit" in title
    # the 18-step teacher finishes and its trajectory slider becomes usable
    wait_js(dash_duo, "const r = document.querySelector('#step-slider .dash-slider-root');"
                      "return r && !r.hasAttribute('data-disabled') && "
                      "document.querySelector('#step-label').textContent.includes('of 18');", 60)
    assert dash_duo.driver.execute_script(
        "const g = document.querySelector('#panels .js-plotly-plot');"
        "return g.data.filter(t => t.type === 'image').length;") == 2
    assert hooks_left([s.adapter for s in app.visualizer.inspector.slots.values()]) == 0
    settle(dash_duo)
    screenshot(dash_duo, "demo.png")
    assert not dash_duo.get_logs()
