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
    # the 18-step teacher finishes: the slider is usable and the teacher shows its final sample
    wait_js(dash_duo, "const r = document.querySelector('#step-slider .dash-slider-root');"
                      "return r && !r.hasAttribute('data-disabled') && "
                      "document.querySelector('#step-label').textContent.includes('step 18 of 18');", 90)
    assert dash_duo.driver.execute_script(
        "const g = document.querySelector('#panels .js-plotly-plot');"
        "return g.data.filter(t => t.type === 'image').length;") == 2
    assert hooks_left([s.adapter for s in app.visualizer.inspector.slots.values()]) == 0
    settle(dash_duo)
    screenshot(dash_duo, "demo.png")

    # a smaller window: the panels redraw to their narrower column, with fewer heatmap columns
    dash_duo.driver.set_window_size(1366, 768)
    wait_js(dash_duo, "const g = document.querySelector('#panels .js-plotly-plot');"
                      "const box = document.getElementById('panels').getBoundingClientRect();"
                      "return g._fullLayout.width <= box.width + 1 && g._fullLayout.width < 800;", 30)
    assert dash_duo.driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth;")
    settle(dash_duo)
    # the mouse still rests where it clicked, now over another point: no tooltip names a point not pointed at
    assert dash_duo.driver.execute_script("const i = document.querySelector('#hover-tip img');"
                                          "return !i || !i.offsetParent;")
    dash_duo.driver.execute_script("const c = document.querySelector('.viz-right');"
                                   "c.scrollTop = document.getElementById('results').offsetTop - c.offsetTop;")
    screenshot(dash_duo, "demo-1366x768.png")
    assert not dash_duo.get_logs()
