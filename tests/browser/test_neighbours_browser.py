"""The clicked point's nearest neighbours (issue 17) in a real headless Chromium, on the shipped demo (its real
PCA space): click a point, see the gallery and the trust figure, generate from the neighbours and find the
edited panel, then open a neighbour from its card."""

import dataclasses

import pytest
from app_helpers import click_and_wait_for_panels, isolated_row, screenshot, settle, start, wait_js

from visualizer.app.config import demo_config, load
from visualizer.app.server import create_app

pytestmark = pytest.mark.browser

IMAGES = "const e = document.querySelector('#edit-images .js-plotly-plot');"


def test_click_a_point_see_its_neighbours_and_generate_from_them(dash_duo):
    app = create_app(load(dataclasses.replace(demo_config(), device="cpu")))
    start(dash_duo, app, (1920, 1080))
    row = isolated_row(dash_duo, app)
    click_and_wait_for_panels(dash_duo, app, row)

    # the gallery: the point itself, then its 8 nearest in PCA space with their distances
    cards = wait_js(dash_duo, "const c = document.querySelectorAll('#neighbour-gallery .neighbour-card');"
                              "return c.length === 9 && Array.from(c).map(x => x.innerText);", 60)
    seed = int(app.visualizer.frame.iloc[row]["seed"])
    assert cards[0].startswith(f"seed {seed} ") and cards[0].rstrip().endswith("this point")
    distances = [float(c.rstrip().split("d ")[-1]) for c in cards[1:]]
    assert distances == sorted(distances) and distances[0] > 0
    trust = dash_duo.find_element("#neighbour-trust").text
    assert "trustworthiness" in trust and "random map" in trust and "one sample: descriptive" in trust
    assert "PCA space" in dash_duo.find_element("#neighbour-status").text
    settle(dash_duo)
    dash_duo.driver.execute_script("document.getElementById('neighbour-trust').scrollIntoView();")
    screenshot(dash_duo, "neighbours.png")

    # generate from neighbours: the edit is listed and the edited panel appears
    dash_duo.find_element("#neighbour-generate").click()
    dash_duo.wait_for_contains_text("#neighbour-message", "from the mean over", timeout=20)
    wait_js(dash_duo, IMAGES + "return e && e.data.length === 3 && e.data[2].type === 'heatmap';", 90)
    titles = dash_duo.driver.execute_script(IMAGES + "return e.layout.annotations.map(a => a.text);")
    assert titles[:2] == ["student (sample): original", "student (sample): edited"]
    assert "replace, from the mean over" in dash_duo.find_element("#edit-list").text
    assert "applied" in dash_duo.find_element("#edit-status").text

    # a neighbour's card opens it like a click on the scatter
    card = dash_duo.find_elements("#neighbour-gallery .neighbour-card")[3]
    target = app.visualizer.frame.iloc[int(card.get_attribute("data-row"))]
    card.click()
    wait_js(dash_duo, "const g = document.querySelector('#panels .js-plotly-plot');"
                      f"return g && g.layout.title.text.startsWith('seed {int(target['seed'])} ');", 60)
    wait_js(dash_duo, "const c = document.querySelectorAll('#neighbour-gallery .neighbour-card');"
                      f"return c.length === 9 && c[0].innerText.startsWith('seed {int(target['seed'])} ');", 60)
    settle(dash_duo)
    assert not dash_duo.get_logs()
