"""Find and zoom, the teacher's trajectory on the map, and the map switcher (issue 19, items 3-5), in a real
headless Chromium at 1920x1080.

The app opens a real embed run of the shipped demo pair (digits: teacher and student), two layers at the
teacher's first and last steps, made with `--maps per-layer`: it searches a seed and sees the map zoomed to
it, clicks it, plays the teacher's trajectory (the marker moves with the slider, the step buttons move the slider), and
switches to a per-layer map.
"""

import time

import numpy as np
import pytest
from app_helpers import WINDOWS, click_point, screenshot, settle, start, wait_js
from selenium.webdriver.common.keys import Keys

from visualizer.adapters.demo import DEMO_EMBEDDINGS
from visualizer.app.config import AppConfig, load
from visualizer.app.server import create_app
from visualizer.cli import main

pytestmark = pytest.mark.browser

DEMO = DEMO_EMBEDDINGS.parent.parent       # visualizer/assets/demo: teacher.pkl, student/
LAYERS = "encoder_bottleneck,dec.16x16_block1"
SCATTER = "const g = document.querySelector('#scatter .js-plotly-plot');"
# _fullData: plotly.js's decoded arrays (the figure sends numpy arrays base64-encoded)
TRACE = SCATTER + "const t = g._fullData.find(d => d.name === arguments[0]);"
RANGES = "range: g._fullLayout.xaxis.range.slice(), yrange: g._fullLayout.yaxis.range.slice()"
PATH_AND_MARKER = SCATTER + """
const p = g._fullData[g._fullData.length - 2], m = g._fullData[g._fullData.length - 1];
return p && p.name === 'teacher trajectory' && p.x.length ? {px: Array.from(p.x), py: Array.from(p.y),
    mx: m.x[0], my: m.y[0], step: +document.querySelector('#step-slider input[type=number]').value} : null;
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "run"
    student = next((DEMO / "student").iterdir())
    # 8 teacher steps rather than the demo's 18 (and 60 seeds): the run takes about a minute on two CPU cores
    assert main(["embed", "--teacher", str(DEMO / "teacher.pkl"), "--student", str(student), "--seeds", "0-59",
                 "--layers", LAYERS, "--steps", "first,last", "--num-steps", "8", "--maps", "per-layer",
                 "--device", "cpu", "--batch-size", "30", "--out", str(out), "--no-progress"]) == 0
    return out


def _marker_on_step(dash_duo, timeout: float = 30) -> dict:
    """Waits until the marker sits on the path's point of the slider's step; returns the state."""
    end, state = time.monotonic() + timeout, None
    while time.monotonic() < end:
        state = dash_duo.driver.execute_script(PATH_AND_MARKER)
        if state and 1 <= state["step"] <= len(state["px"]) and \
                (state["mx"], state["my"]) == pytest.approx((state["px"][state["step"] - 1],
                                                             state["py"][state["step"] - 1]), rel=1e-6, abs=1e-6):
            return state
        time.sleep(0.1)
    raise AssertionError(f"the marker is not on the slider's step: {state}")


def test_find_zoom_trajectory_and_maps(dash_duo, run):
    app = create_app(load(AppConfig(embeddings=run / "embeddings.csv", device="cpu")))
    frame = app.visualizer.frame
    start(dash_duo, app, WINDOWS["1920x1080"])
    full = dash_duo.driver.execute_script(SCATTER + "return g._fullLayout.xaxis.range.slice();")

    # 3: find a seed (the teacher's first-step point farthest from any other) and see the map zoomed to it
    first = frame[(frame.model == "teacher") & (frame.step == 0)]
    xy = frame[["umap_x", "umap_y"]].to_numpy()
    d = np.sqrt(((xy[first.index][:, None] - xy[None]) ** 2).sum(-1))
    d[np.arange(len(first)), first.index] = np.inf
    row = int(first.index[np.argmax(d.min(1))])
    seed = int(frame.loc[row, "seed"])
    box = dash_duo.find_element("#find-text")
    box.send_keys("nine")
    dash_duo.find_element("#find-go").click()
    wait_js(dash_duo, "return document.querySelector('#server-notice').textContent.includes(\"find: 'nine'\");", 20)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(seed), Keys.ENTER)
    found = wait_js(dash_duo, TRACE + "return t && t.x.length ? {x: Array.from(t.x), y: Array.from(t.y), " + RANGES
                    + "} : null;", 30, "found")
    rows = frame.index[frame.seed == seed]
    assert len(found["x"]) == len(rows) == 3                         # the teacher at 2 steps, the student
    lo, hi = found["range"]
    assert all(lo < x < hi for x in found["x"])                      # the view holds the seed's points
    assert all(found["yrange"][0] < y < found["yrange"][1] for y in found["y"])
    assert f"found {len(rows)} point(s)" in dash_duo.find_element("#find-message").text
    # one sample id: the view zooms onto that point
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(f"teacher-{seed}-0", Keys.ENTER)
    one = wait_js(dash_duo, TRACE + "return t && t.x.length === 1 ? {x: t.x[0], y: t.y[0], " + RANGES + "} : null;",
                  30, "found")
    lo, hi = one["range"]
    assert hi - lo < (full[1] - full[0]) / 4 and lo < one["x"] < hi  # zoomed in, onto it
    assert one["yrange"][0] < one["y"] < one["yrange"][1]
    assert (one["x"], one["y"]) == pytest.approx((frame.loc[row, "umap_x"], frame.loc[row, "umap_y"]), rel=1e-6)

    # 4: click it; the teacher's run ends and its trajectory appears on the map, the marker on the slider's step
    click_point(dash_duo, "scatter", float(frame.loc[row, "umap_x"]), float(frame.loc[row, "umap_y"]))
    state = wait_js(dash_duo, PATH_AND_MARKER, 120)
    steps = app.visualizer.inspector.slots["teacher"].num_steps()
    assert len(state["px"]) == steps
    state = _marker_on_step(dash_duo)
    assert state["step"] == steps                                     # the run ended: the last step
    note = dash_duo.find_element("#traj-note").text
    assert f"seed {seed}" in note and "no refit" in note and f"Step {steps}" in note
    # reset the zoom: the whole map, the trajectory on it (the click scrolled the panels into view: back up)
    dash_duo.find_element("#zoom-reset").click()
    wide = (full[1] - full[0]) * 0.8
    wait_js(dash_duo, SCATTER + f"const r = g._fullLayout.xaxis.range; return r[1] - r[0] > {wide};", 20)
    _marker_on_step(dash_duo)
    dash_duo.driver.execute_script("window.scrollTo(0, 0); document.querySelector('.viz-right').scrollTo(0, 0);")
    settle(dash_duo)
    screenshot(dash_duo, "explore-1920x1080.png")

    # the step buttons move the slider, and the marker follows
    dash_duo.find_element("#traj-prev").click()
    dash_duo.find_element("#traj-prev").click()
    wait_js(dash_duo, f"return +document.querySelector('#step-slider input[type=number]').value === {steps - 2};", 20)
    state = _marker_on_step(dash_duo)
    assert (state["mx"], state["my"]) == pytest.approx((state["px"][steps - 3], state["py"][steps - 3]), rel=1e-6)

    # play: from the last step it starts again at 1 and moves the slider (and the marker, and the panels)
    dash_duo.find_element("#traj-next").click()
    dash_duo.find_element("#traj-next").click()
    wait_js(dash_duo, f"return +document.querySelector('#step-slider input[type=number]').value === {steps};", 20)
    dash_duo.find_element("#traj-play").click()
    wait_js(dash_duo, "return document.querySelector('#traj-play').textContent.includes('pause');", 10)
    seen = set()
    end = time.monotonic() + 60
    while time.monotonic() < end and len(seen) < 4:
        seen.add(dash_duo.driver.execute_script(
            "return +document.querySelector('#step-slider input[type=number]').value;"))
        time.sleep(0.1)
    assert len(seen) >= 4 and min(seen) <= 2                          # it restarted and went on
    dash_duo.find_element("#traj-play").click()                        # pause
    wait_js(dash_duo, "return document.querySelector('#traj-play').textContent.includes('play');", 10)
    settle(dash_duo)
    state = _marker_on_step(dash_duo)
    k = state["step"] - 1
    assert (state["mx"], state["my"]) == pytest.approx((state["px"][k], state["py"][k]), rel=1e-6)
    wait_js(dash_duo, f"return document.querySelector('#step-label').textContent.includes('step {k + 1} of');", 30)

    # 5: switch to a per-layer map: the scatter redraws from that map, the line says what it embeds
    dash_duo.find_element("#map-pick").click()
    option = wait_js(dash_duo, "return [...document.querySelectorAll('.dash-dropdown-option')].find("
                               "o => o.textContent.trim() === 'dec.16x16_block1 · step 1');", 10)
    option.click()
    wait_js(dash_duo, "return document.querySelector('#map-about').textContent.includes('layer dec.16x16_block1 "
                      "alone at step 1');", 20)
    wait_js(dash_duo, SCATTER + "return g.layout.title.text.includes('map dec.16x16_block1 · step 1');", 30)
    shown = dash_duo.driver.execute_script(SCATTER + "return g._fullData.slice(0, -3).reduce((n, t) => n + "
                                                     "(t.customdata ? t.customdata.length : 0), 0);")
    assert shown == int((frame.step == 0).sum())                       # teacher and student at the first step
    state = wait_js(dash_duo, PATH_AND_MARKER, 30)                     # the trajectory, placed on this map
    assert len(state["px"]) == steps
    settle(dash_duo)
    dash_duo.driver.execute_script("window.scrollTo(0, 0);")
    screenshot(dash_duo, "explore-map-1920x1080.png")
    assert not [e for e in dash_duo.get_logs() if e.get("level") == "SEVERE"]
