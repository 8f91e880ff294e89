"""Edits from the page (issue 17) in a real headless Chromium: paint a region on a layer's heatmap, apply an
edit, find the edited panel (original, edited, difference, how every layer moved), undo; run the sweep."""

import pytest
from app_helpers import (
    WINDOWS,
    click_and_wait_for_panels,
    drag_box,
    isolated_row,
    make_app,
    screenshot,
    settle,
    start,
    wait_js,
)

pytestmark = pytest.mark.browser

IMAGES = "const e = document.querySelector('#edit-images .js-plotly-plot');"
CHANGES = "const ch = document.querySelector('#edit-changes .js-plotly-plot');"


def test_paint_a_region_apply_an_edit_and_find_the_edited_panel(dash_duo, small_csv, checkpoints):
    app = make_app(small_csv, checkpoints, num_steps=4)
    start(dash_duo, app, WINDOWS["1920x1080"])
    click_and_wait_for_panels(dash_duo, app, isolated_row(dash_duo, app))

    # the layer's heatmap for the sample: paint a box over its top-left cells
    wait_js(dash_duo, "const r = document.querySelector('#edit-region-graph .js-plotly-plot');"
                      "return r && r.data.length === 2 && r.layout.title.text.includes('encoder_bottleneck');", 20)
    drag_box(dash_duo, "edit-region-graph", -0.4, -0.4, 2.4, 1.4)
    dash_duo.wait_for_contains_text("#edit-region-text", "region: rows 0-2, cols 0-3", timeout=20)

    dash_duo.find_element("#edit-apply").click()
    wait_js(dash_duo, IMAGES + "return e && e.data.length === 3 && e.data[2].type === 'heatmap';", 30)
    titles = dash_duo.driver.execute_script(IMAGES + "return e.layout.annotations.map(a => a.text);")
    assert titles[:2] == ["student (sample): original", "student (sample): edited"]
    assert dash_duo.find_element("#edit-list").text.startswith("student encoder_bottleneck: zero, rows 0-2, cols 0-3")
    moved = dash_duo.driver.execute_script(CHANGES + "const b = ch.data[0];"
                                                     "return [b.x.indexOf('encoder_bottleneck'), Array.from(b.y)];")
    at, values = moved
    assert at >= 0 and values[at] > 0 and all(v == 0 for v in values[:at])
    assert "applied" in dash_duo.find_element("#edit-status").text
    dash_duo.driver.execute_script("document.getElementById('edit-result').scrollIntoView();")
    screenshot(dash_duo, "edits.png")

    # undo: no edit, the panel says so
    dash_duo.find_element("#edit-undo").click()
    wait_js(dash_duo, IMAGES + "return e.layout.annotations.length && e.layout.annotations[0].text === "
                               "'no edit applied';", 20)
    assert dash_duo.find_element("#edit-list").text == ""

    # where the behaviour lives: bars with intervals, the other-seed baseline, the weight drift beside
    dash_duo.find_element("#sweep-run").click()
    sweep = wait_js(dash_duo, "const s = document.querySelector('#sweep-graph .js-plotly-plot');"
                              "return s && s.data.length === 3 && s.data.map(t => t.name);", 60)
    assert "another seed" in sweep[1] and "95% bootstrap interval" in sweep[0]
    settle(dash_duo)
    assert not dash_duo.get_logs()
