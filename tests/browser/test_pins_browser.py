"""Pins, the address, the gallery's pages and the keyboard (issue 19) in a real headless Chromium at 1920x1080:
open a shared link, step with the keyboard, pin two samples, go back and forward, reload the copied address
and find the same view (seed, layers, step, pins), pick a pin, page the gallery."""

import urllib.parse

import pytest
from app_files import pair_models, write_synthetic_embeddings
from app_helpers import (
    HEATMAPS,
    PANEL_TITLE,
    WINDOWS,
    click_and_wait_for_panels,
    drag_box,
    frame_point,
    isolated_row,
    make_app,
    screenshot,
    settle,
    start,
    wait_js,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

pytestmark = pytest.mark.browser

STEPS = 4
LAYERS = ["encoder_bottleneck", "midblock"]


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory, checkpoints):
    """200 seeds per model: 400 points, enough for a gallery of more than one page."""
    pkl, student = checkpoints
    models = pair_models(pkl, student)
    return write_synthetic_embeddings(tmp_path_factory.mktemp("pins-emb"), 200, models=models)


def _hash(dash_duo) -> dict:
    fragment = urllib.parse.urlsplit(dash_duo.driver.current_url).fragment
    return dict(urllib.parse.parse_qsl(fragment))


def _title_seed(seed: int) -> str:
    return PANEL_TITLE.replace("return", "const t =") + f"; return t && t.startsWith('seed {seed} ');"


def _press(dash_duo, key) -> None:
    ActionChains(dash_duo.driver).send_keys(key).perform()


def _step_shown(dash_duo, step: int) -> None:
    dash_duo.wait_for_contains_text("#step-label", f"step {step} of {STEPS}", timeout=60)


def _open(dash_duo, url: str) -> None:
    """A fresh page load of `url` (as pasting a link would do)."""
    dash_duo.driver.get("about:blank")
    dash_duo.driver.get(url)
    dash_duo.wait_for_element("#scatter .main-svg", timeout=60)
    wait_js(dash_duo, "const g = document.querySelector('#scatter .js-plotly-plot');"
                      "return !!(g && g._fullData && g._fullData.length && g.data[0].customdata);", timeout=60)


def test_pin_two_samples_reload_the_copied_address_page_the_gallery_and_step_with_keys(dash_duo, big_csv,
                                                                                         checkpoints):
    app = make_app(big_csv, checkpoints, num_steps=STEPS)
    frame = app.visualizer.frame
    start(dash_duo, app, WINDOWS["1920x1080"])
    base = dash_duo.server_url

    # a shared link with two layers: the page takes them
    _open(dash_duo, f"{base}/#layers={','.join(LAYERS)}")
    wait_js(dash_duo, "return location.hash.includes('reduction=l2') && location.hash.startsWith('#run=');", 30)
    assert _hash(dash_duo)["layers"] == ",".join(LAYERS)

    # click a point: its panels show the two layers; the address follows
    row = isolated_row(dash_duo, app)
    _, _, seed_a, label = frame_point(app, row)
    click_and_wait_for_panels(dash_duo, app, row)
    assert dash_duo.driver.execute_script(HEATMAPS) == 1 + 3 * len(LAYERS)
    _step_shown(dash_duo, STEPS)                              # the teacher's run ended on its last step
    wait_js(dash_duo, f"return location.hash.includes('seed={seed_a}&class={label}');", 20)

    # the keyboard: ← one step back (the address's step follows, replacing its entry), then pin it
    dash_duo.find_element("#pin-add").click()                 # a pin at the last step
    wait_js(dash_duo, "return document.querySelectorAll('#pin-strip .pin-card').length === 1;", 30)
    _press(dash_duo, Keys.ARROW_LEFT)
    _step_shown(dash_duo, STEPS - 1)
    wait_js(dash_duo, f"return location.hash.includes('&step={STEPS - 1}');", 20)
    dash_duo.find_element("#pin-add").click()                 # the same seed one step earlier: a second pin
    wait_js(dash_duo, "return document.querySelectorAll('#pin-strip .pin-card').length === 2;", 30)

    # j: the next point of the class (the same model), by seed
    same = frame[(frame["class_label"] == label) & (frame["model"] == frame.iloc[row]["model"])].sort_values("seed")
    seed_b = int(same["seed"].iloc[(list(same.index).index(row) + 1) % len(same)])
    _press(dash_duo, "j")
    wait_js(dash_duo, _title_seed(seed_b), 60)
    wait_js(dash_duo, f"return location.hash.includes('seed={seed_b}&');", 20)
    dash_duo.find_element("#pin-add").click()
    wait_js(dash_duo, "return document.querySelectorAll('#pin-strip .pin-card').length === 3;", 30)
    cards = dash_duo.find_element("#pin-strip").text
    assert f"seed {seed_a} · class {label}" in cards and f"seed {seed_b} · class {label}" in cards
    assert f"step {STEPS - 1}" in cards
    _step_shown(dash_duo, STEPS)
    settle(dash_duo)
    copied = dash_duo.driver.current_url
    state = _hash(dash_duo)
    assert state["seed"] == str(seed_b) and state["layers"] == ",".join(LAYERS) and state["step"] == str(STEPS)
    assert state["pins"].count('"seed"') == 3
    dash_duo.driver.execute_script("document.querySelector('.viz-right').scrollTop = 0;")
    screenshot(dash_duo, "pins.png")

    # back: the last pin undone, then the previous sample; forward twice: this view again
    two = "return document.querySelectorAll('#pin-strip .pin-card').length === 2;"
    dash_duo.driver.back()
    wait_js(dash_duo, two, 30)
    dash_duo.driver.back()
    wait_js(dash_duo, _title_seed(seed_a), 60)
    dash_duo.driver.forward()
    dash_duo.driver.forward()
    wait_js(dash_duo, _title_seed(seed_b), 60)
    wait_js(dash_duo, "return document.querySelectorAll('#pin-strip .pin-card').length === 3;", 30)

    # the copied address in a fresh page: the same sample, layers, step and pins
    _open(dash_duo, copied)
    wait_js(dash_duo, _title_seed(seed_b), 60)
    wait_js(dash_duo, "return document.querySelectorAll('#pin-strip .pin-card').length === 3;", 30)
    assert dash_duo.driver.execute_script(HEATMAPS) == 1 + 3 * len(LAYERS)
    _step_shown(dash_duo, STEPS)
    assert dash_duo.find_element("#pin-strip").text == cards
    assert _hash(dash_duo) == state

    # a pin picked: its sample and step come back (the teacher's run, then the pinned step on the slider)
    dash_duo.find_elements("#pin-strip .pin-card")[1].click()
    wait_js(dash_duo, _title_seed(seed_a), 60)
    _step_shown(dash_duo, STEPS - 1)
    wait_js(dash_duo, f"return location.hash.includes('seed={seed_a}&') && "
                      f"location.hash.includes('&step={STEPS - 1}');", 20)

    # the gallery: most points selected, 120 a page, each saying which model drew it
    dash_duo.driver.execute_script("document.getElementById('scatter').scrollIntoView();")
    dash_duo.find_element('#scatter .modebar-btn[data-title="Box select"], '
                          '#scatter .modebar-btn[data-title="Box Select"]').click()
    x0, x1 = frame["umap_x"].quantile([0.03, 0.97])
    y0, y1 = frame["umap_y"].quantile([0.03, 0.97])
    drag_box(dash_duo, "scatter", x0, y1, x1, y0)
    dash_duo.wait_for_contains_text("#selection-summary", "points selected", timeout=30)
    total = int(dash_duo.find_element("#selection-summary").text.split(" ")[0].replace(",", ""))
    assert total > 200
    dash_duo.wait_for_text_to_equal("#gallery-pager", f"1-120 of {total}", timeout=30)
    assert len(dash_duo.find_elements("#gallery img")) == 120
    models = [e.text for e in dash_duo.find_elements("#gallery .gallery-model")]
    dash_duo.find_element("#gallery-next").click()
    dash_duo.wait_for_text_to_equal("#gallery-pager", f"121-{min(240, total)} of {total}", timeout=30)
    models += [e.text for e in dash_duo.find_elements("#gallery .gallery-model")]
    assert len(models) == min(240, total) and set(models) == {"teacher", "student"}
    rows = app.visualizer.valid_rows(dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "return g.data.flatMap((t, i) => (t.selectedpoints || []).map(k => t.customdata[k]));"))
    assert len(rows) == total
    first_caption = dash_duo.find_element("#gallery figcaption").text
    assert first_caption == f"{frame.iloc[rows[120]]['class_label']} · seed {frame.iloc[rows[120]]['seed']}"
    dash_duo.find_element("#gallery-prev").click()
    dash_duo.wait_for_text_to_equal("#gallery-pager", f"1-120 of {total}", timeout=30)
    dash_duo.driver.execute_script("document.getElementById('gallery-pager').scrollIntoView({block: 'center'});")
    screenshot(dash_duo, "gallery-pages.png")

    # j within the selection: the next selected row
    _press(dash_duo, "j")
    wait_js(dash_duo, "return !location.hash.includes('seed=" + str(seed_a) + "&');", 30)
    settle(dash_duo)
    assert not [e for e in dash_duo.get_logs() if e.get("level") == "SEVERE"]
