"""Teacher vs student over many samples (issue 15) in a real headless Chromium: compute the CKA matrix and the
sigma alignment from the page, and find the heatmaps, the diagonal's bands and the ridge drawn.

The first test runs on the tiny real-format pair (a fresh trace of 12 seeds; seconds). The second takes the
README's screenshot of the shipped demo (22 layers, 200 seeds, the sigma alignment over 32) and runs only
on purpose: with $VISUALIZER_SCREENSHOTS set (scripts/refresh_screenshots.py sets it) or
$VISUALIZER_DEMO_COMPARISON=1; it takes a few minutes on 2 CPU cores.
"""

import dataclasses
import os

import pytest
from app_helpers import SCREENSHOTS_ENV, make_app, pick_option, settle, start, wait_js
from PIL import Image
from selenium.webdriver.common.keys import Keys

pytestmark = pytest.mark.browser

MATRIX = "const m = document.querySelector('#cmp-matrix .js-plotly-plot');"
DIAGONAL = "const d = document.querySelector('#cmp-diagonal .js-plotly-plot');"
ALIGN = "const a = document.querySelector('#align-graph .js-plotly-plot');"


def _type(dash_duo, selector: str, text: str) -> None:
    box = dash_duo.find_element(selector)
    box.send_keys(Keys.CONTROL, "a")          # React keeps the value: select it, then type over it
    box.send_keys(text)


def _pick(dash_duo, ident: str, label: str) -> None:
    """Chooses the option `label` of dropdown `ident` and waits until the dropdown shows it."""
    pick_option(dash_duo, ident, label)
    wait_js(dash_duo, f"return document.getElementById('{ident}').textContent.includes({label!r});", 5)


def _compute(dash_duo, matrix_seeds: str, alignment_seeds: str, timeout: float) -> None:
    dash_duo.driver.execute_script("document.getElementById('cmp-box').scrollIntoView();")
    _type(dash_duo, "#cmp-seeds", matrix_seeds)
    dash_duo.find_element("#cmp-run").click()
    wait_js(dash_duo, MATRIX + "return m && m.data.length === 1 && m.data[0].type === 'heatmap';", timeout)
    _type(dash_duo, "#align-seeds", alignment_seeds)
    dash_duo.find_element("#align-run").click()
    wait_js(dash_duo, ALIGN + "return a && a.data.length === 2 && a.data[0].type === 'heatmap';", timeout)


def test_the_matrix_its_diagonal_and_the_sigma_alignment_are_drawn(dash_duo, small_csv, checkpoints):
    app = make_app(small_csv, checkpoints, num_steps=3)
    start(dash_duo, app)
    layers = app.visualizer.inspector.legacy_layers()        # the picker holds every legacy layer by default
    _compute(dash_duo, "0-11", "0-9", 120)

    heat = dash_duo.driver.execute_script(MATRIX + "const h = m.data[0]; return [h.y.length, h.x.length, "
                                          "h.hovertemplate, m.layout.title.text];")
    assert heat[0] == heat[1] == len(layers)
    assert "interval" in heat[2] and "null" in heat[2] and "fresh trace, full resolution" in heat[3]
    assert "teacher step 1 (σ 80)" in heat[3]
    bands = dash_duo.driver.execute_script(DIAGONAL + "return d.data.map(t => [t.name || '', t.fill || '']);")
    assert ["shuffled-pair null (95% of shuffles)", "tonexty"] in bands
    assert ["95% interval (half-sample resamples)", "tonexty"] in bands
    status = dash_duo.find_element("#cmp-status").text
    assert "12 samples" in status and "fresh trace of seeds 0-11" in status

    ridge = dash_duo.driver.execute_script(ALIGN + "return [a.data[1].name, a.data[1].y.length, a.data[0].x];")
    assert ridge[0].startswith("ridge") and ridge[1] == len(layers) and ridge[2][0] == "1 (σ 80)"
    assert "10 samples, 3 teacher steps" in dash_duo.find_element("#align-status").text

    # the last teacher step: the matrix says so
    _pick(dash_duo, "cmp-step", "3 (last)")
    dash_duo.find_element("#cmp-run").click()
    wait_js(dash_duo, MATRIX + "return m && m.layout.title.text.includes('teacher step 3');", 120)
    settle(dash_duo)
    assert not [e for e in dash_duo.get_logs() if e.get("level") == "SEVERE"]


@pytest.mark.skipif(not (os.environ.get(SCREENSHOTS_ENV) or os.environ.get("VISUALIZER_DEMO_COMPARISON")),
                    reason="the demo's comparison screenshot is taken on purpose (scripts/refresh_screenshots.py)")
def test_demo_comparison_screenshot(dash_duo):
    from app_helpers import SCREENSHOTS, screenshot

    from visualizer.app.config import demo_config, load
    from visualizer.app.server import create_app

    app = create_app(load(dataclasses.replace(demo_config(), device="cpu")))
    start(dash_duo, app, (1500, 2900))          # tall: the box fits the inspector column, unscrolled
    _compute(dash_duo, "0-199", "0-31", 900)
    assert wait_js(dash_duo, MATRIX + "return m.data[0].y.length;") == 22
    settle(dash_duo)
    dash_duo.driver.execute_script("document.getElementById('cmp-box').scrollIntoView();")
    assert SCREENSHOTS is not None
    box = dash_duo.driver.execute_script("const r = document.getElementById('cmp-box').getBoundingClientRect();"
                                         "return [r.left, r.top, r.right, r.bottom, window.devicePixelRatio];")
    path = screenshot(dash_duo, "comparison.png")
    with Image.open(path) as image:                     # the box alone, not the whole tall window
        crop = image.crop(tuple(round(v * box[4]) for v in box[:4]))
    crop.save(path, optimize=True)
