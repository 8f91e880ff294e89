"""The inspector panels as a new user meets them (issue 18), in a real headless Chromium.

Items 1, 2 and 4 (the final step after a run, colour bars, panels that fit the window and come into view)
at 1920x1080 and 1366x768; the rest at one size: the slider streaming the run and keeping a chosen step,
feedback from the first moment (spinner, progress text), one layer naming, typed seeds that are refused
with a reason, hidden models, the hover card, class colours and both exports under one name.
"""

import io
import json
import time

import numpy as np
import pytest
from app_helpers import (
    HEATMAPS,
    PANELS,
    WINDOWS,
    click_and_wait_for_panels,
    click_point,
    frame_point,
    hover_point,
    isolated_row,
    make_app,
    pick_option,
    screenshot,
    settle,
    start,
    wait_for_download,
    wait_js,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

pytestmark = pytest.mark.browser

FITS = """
const box = document.getElementById('panels').getBoundingClientRect();
const g = document.querySelector('#panels .js-plotly-plot'), L = g._fullLayout;
const axes = Object.keys(L).filter(k => /^xaxis\\d*$/.test(k)).map(k => L[k]);
const right = Math.max(...axes.map(a => a._offset + a._length));
const bars = [...document.querySelectorAll('#panels .colorbar')].map(b => b.getBoundingClientRect().right);
const col = document.querySelector('.viz-right');
return {window: window.innerWidth, page: document.documentElement.scrollWidth, box_right: box.right,
        svg: L.width, box: box.width, cells_right: right, bars_right: Math.max(...bars),
        column_overflow: col.scrollWidth - col.clientWidth, top: box.top, height: window.innerHeight,
        columns: new Set(axes.map(a => a.domain[0].toFixed(3))).size,
        modebar_right: document.querySelector('#panels .modebar').getBoundingClientRect().right};
"""
LABEL = "return document.querySelector('#step-label').textContent;"
SLIDER_BOX = "return document.querySelector('#step-slider input[type=number]').value;"


def _teacher_title(dash_duo) -> str:
    return dash_duo.driver.execute_script(PANELS + "return g.layout.annotations[0].text;")


@pytest.mark.parametrize("size", list(WINDOWS))
def test_panels_fit_the_window_have_colour_bars_and_end_on_the_final_step(dash_duo, small_csv, checkpoints, size):
    app = make_app(small_csv, checkpoints, num_steps=6)
    start(dash_duo, app, WINDOWS[size])
    layers = app.visualizer.default_layers
    click_and_wait_for_panels(dash_duo, app, isolated_row(dash_duo, app))

    # 4: after the click the panels are in view, drawn to their column: nothing cut off, no sideways scrolling
    fit = dash_duo.driver.execute_script(FITS)
    assert 0 <= fit["top"] < 0.6 * fit["height"], fit
    assert fit["page"] <= fit["window"] and fit["column_overflow"] <= 0, fit
    assert fit["svg"] <= fit["box"] + 1 and fit["cells_right"] <= fit["svg"] and fit["bars_right"] <= fit["box_right"]
    assert fit["modebar_right"] <= fit["box_right"] + 1, fit
    assert fit["columns"] == (6 if size == "1920x1080" else 4), fit        # the narrower column drops two

    # 2: a colour bar per layer (both models share it), one for the difference row, and its legend
    n = len(layers)
    bars = PANELS + "return g._fullData.filter(t => t.type === 'heatmap' && t.showscale).length;"
    assert dash_duo.driver.execute_script(bars) == 1 + 2 * n
    assert len(dash_duo.find_elements("#panels .colorbar")) == 1 + 2 * n
    legend = dash_duo.driver.execute_script(PANELS + "return g.layout.annotations.map(a => a.text).join(' | ');")
    assert "red where the teacher is higher" in legend and "one colour scale for both models" in legend

    # 1: when the run ends, the teacher shows its final step, and the slider's number box says the same
    wait_js(dash_duo, LABEL.replace("return", "const t =") + "; return t.includes(' s run') && t;", 60)
    wait_js(dash_duo, SLIDER_BOX.replace("return", "const v =") + "; return v === '6';", 20)
    assert _teacher_title(dash_duo).startswith("teacher · step 6/6")
    assert dash_duo.driver.execute_script(LABEL).startswith("teacher: step 6 of 6")
    screenshot(dash_duo, f"panels-{size}.png")

    # 2: one scale per model, as a toggle: every model row gets its own bar
    dash_duo.find_element("#scale-mode input[value='per-model']").click()
    wait_js(dash_duo, bars.replace("return", "const k =") + f"; return k === {1 + 3 * n};", 20)
    fit = dash_duo.driver.execute_script(FITS)
    assert fit["page"] <= fit["window"] and fit["bars_right"] <= fit["box_right"], fit
    settle(dash_duo)
    assert not dash_duo.get_logs()


def test_the_run_streams_into_the_slider_keeps_a_chosen_step_and_speaks_from_the_start(dash_duo, small_csv,
                                                                                       checkpoints):
    app = make_app(small_csv, checkpoints, num_steps=10)
    inspector = app.visualizer.inspector
    calls = []

    def slowly(*_):      # 0.25 s per teacher evaluation, 1 s for the run's first (after the first look's one)
        calls.append(1)
        time.sleep(1.0 if len(calls) == 2 else 0.25)

    slow = inspector.slots["teacher"].adapter.net.register_forward_pre_hook(slowly)
    compute = inspector._first_look

    def slow_first_look(*args, **kwargs):       # a first look that takes a while, as on a big model's CPU
        time.sleep(1.5)
        return compute(*args, **kwargs)

    inspector._first_look = slow_first_look
    try:
        start(dash_duo, app, WINDOWS["1920x1080"])
        # a recorder of what the progress row says whenever it is visible
        dash_duo.driver.execute_script("""
            window.__said = [];
            const row = document.getElementById('progress-row'), text = document.getElementById('progress-text');
            const note = () => { if (row.style.display !== 'none') { window.__said.push(text.textContent); } };
            const watch = new MutationObserver(note);
            watch.observe(row, {attributes: true, attributeFilter: ['style']});
            watch.observe(text, {subtree: true, childList: true, characterData: true});
        """)
        row = isolated_row(dash_duo, app, "teacher")
        x, y, seed, label = frame_point(app, row)
        click_point(dash_duo, "scatter", x, y)
        # 5: at once, a spinner and "regenerating seed s ..." (the first look takes 1.5 s here)
        busy = wait_js(dash_duo, "const b = document.getElementById('inspect-busy');"
                                 "return getComputedStyle(b).display !== 'none' && b.textContent;", 1.0)
        assert busy == f"regenerating seed {seed} (class {label}) ..."
        assert dash_duo.driver.execute_script(
            "return getComputedStyle(document.querySelector('#inspect-busy .viz-spinner')).animationName") == "viz-spin"
        wait_js(dash_duo, "return getComputedStyle(document.getElementById('inspect-busy')).display === 'none';", 30)

        # 1: the slider covers the steps as they come; a step chosen while it runs is kept
        wait_js(dash_duo, "const r = document.querySelector('#step-slider .dash-slider-root');"
                          "return r && !r.hasAttribute('data-disabled');", 30)
        assert dash_duo.driver.execute_script("return getComputedStyle(document.getElementById('progress-row'))"
                                              ".display") != "none"          # still running
        thumb = dash_duo.find_element("#step-slider [role=slider]")
        ActionChains(dash_duo.driver).click(thumb).send_keys(Keys.ARROW_RIGHT).perform()
        wait_js(dash_duo, PANELS + "return g.layout.annotations[0].text.startsWith('teacher · step 2/10');", 20)
        assert "the run is in progress" in dash_duo.driver.execute_script(LABEL)
        screenshot(dash_duo, "streaming.png")
        wait_js(dash_duo, LABEL.replace("return", "const t =") + "; return t.includes(' s run');", 60)
        time.sleep(0.5)
        assert dash_duo.driver.execute_script(SLIDER_BOX) == "2"
        assert _teacher_title(dash_duo).startswith("teacher · step 2/10")

        # 5: the progress row spoke from its first moment: never empty, step 0 before step 1
        said = dash_duo.driver.execute_script("return window.__said;")
        assert said and all(t.strip() for t in said), said
        assert said[0].startswith(("starting the run", "step 0 / 10")), said[:5]
        assert any(t.startswith("step 0 / 10: the first step is running") for t in said), said[:10]
        settle(dash_duo)
        assert not dash_duo.get_logs()
    finally:
        slow.remove()
        inspector._first_look = compute


def test_naming_seeds_hidden_models_hover_colours_and_exports(dash_duo, small_csv, checkpoints):
    app = make_app(small_csv, checkpoints, num_steps=4)
    start(dash_duo, app, WINDOWS["1920x1080"])
    ctx = app.visualizer
    aliases = ctx.inspector.aliases()
    layers = ctx.default_layers

    # 8: the hover card says what it shows, and goes away on a click
    row = isolated_row(dash_duo, app)
    x, y, seed, label = frame_point(app, row)
    hover_point(dash_duo, "scatter", x, y)
    wait_js(dash_duo, "const i = document.querySelector('#hover-tip img'); return i && i.complete;", 20)
    tip = dash_duo.find_element("#hover-tip").text
    assert f"seed {seed} · student · final image" in tip and "point: activations at step 1 (σ 80)" in tip
    click_and_wait_for_panels(dash_duo, app, row)
    wait_js(dash_duo, "const i = document.querySelector('#hover-tip img'); return !i || !i.offsetParent;", 10)

    # 3: one naming per page, chosen by the user; both names in the hovers; chosen layers marked; readable fonts
    titles = PANELS + "return g.layout.annotations.map(a => a.text);"
    assert layers[0] in dash_duo.driver.execute_script(titles)
    dash_duo.find_element("#layer-naming input[value='native']").click()
    wait_js(dash_duo, titles.replace("return", "const t =") + f"; return t.includes('{aliases[layers[0]]}');", 20)
    sim = "const s = document.querySelector('#similarity .js-plotly-plot');"
    ticks = wait_js(dash_duo, sim + "const t = s.layout.xaxis && s.layout.xaxis.ticktext;"    # the chart follows
                                    f"return t && t.includes('<b>{aliases[layers[0]]}</b>') && t;", 30)  # the panels
    assert f"<b>{aliases[layers[0]]}</b>" in ticks and not any(t.startswith("encoder_block") for t in ticks)
    assert dash_duo.driver.execute_script(sim + "return s.layout.shapes.length;") == len(layers)
    chips = dash_duo.find_element("#layer-pick").text
    assert aliases[layers[0]] in chips and layers[0] not in chips
    hover = dash_duo.driver.execute_script(PANELS + "return g.data.filter(t => t.type === 'heatmap')[1]"
                                                    ".hovertemplate;")
    assert f"{aliases[layers[0]]} ({layers[0]})" in hover
    sizes = dash_duo.driver.execute_script(
        PANELS + sim + "return [...g._fullLayout.annotations.map(a => a.font.size), "   # similarity: 2 panels
                       "(s._fullLayout.xaxis2 || s._fullLayout.xaxis).tickfont.size,"
                       " ...g._fullData.filter(t => t.showscale).map(t => t.colorbar.tickfont.size)];")
    assert min(sizes) >= 10, sizes

    # 6: typed seeds that cannot be generated say why, next to the box
    box = dash_duo.find_element("#seed-input")
    for typed, why in (("-3", "not negative"), ("2.5", "not a whole number"), ("99999999999", "stop at 4294967295")):
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(typed)
        dash_duo.wait_for_contains_text("#seed-message", why, timeout=10)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(seed))
    dash_duo.wait_for_text_to_equal("#seed-message", "", timeout=10)
    # the slider's tooltip sits above its handle, the sigma marks below: they cannot overlap
    wait_js(dash_duo, "return document.querySelector('#step-label').textContent.includes(' s run');", 60)
    place = dash_duo.driver.execute_script(
        "const t = document.querySelector('#step-slider .dash-slider-tooltip');"
        "const th = document.querySelector('#step-slider [role=slider]').getBoundingClientRect();"
        "const m = [...document.querySelectorAll('#step-slider .dash-slider-mark')].pop().getBoundingClientRect();"
        "return [t.style.bottom, m.top - th.top];")
    assert place[0].startswith("calc(100%") and place[1] > 0, place

    # 7: a hidden model is neither computed nor drawn
    calls = []
    teacher = ctx.inspector.slots["teacher"].adapter
    trace = teacher.trace
    teacher.trace = lambda *a, **k: (calls.append(1), trace(*a, **k))[1]
    try:
        dash_duo.find_element("#model-toggle input[value='teacher']").click()
        wait_js(dash_duo, PANELS + "return g.data.filter(t => t.type === 'image').length === 1;", 20)
        assert "teacher" not in " ".join(dash_duo.driver.execute_script(titles)[:2])
        assert "teacher is hidden" in dash_duo.driver.execute_script(LABEL)
        time.sleep(1.0)
        assert not calls and ctx.jobs.running_jobs() == 0
        assert dash_duo.driver.execute_script("return getComputedStyle(document.getElementById('progress-row'))"
                                              ".display") == "none"
        assert dash_duo.driver.execute_script(HEATMAPS) == len(layers)      # the student's row only
    finally:
        teacher.trace = trace
    dash_duo.find_element("#model-toggle input[value='teacher']").click()
    wait_js(dash_duo, PANELS + "return g.data.filter(t => t.type === 'image').length === 2;", 20)

    # 9: colour the picked classes, the rest grey; a colour-blind-safe palette
    dash_duo.find_element("#palette input[value='colour-blind']").click()
    pick_option(dash_duo, "class-highlight", "class 3", close=True)
    scatter = "const p = document.querySelector('#scatter .js-plotly-plot');"
    wait_js(dash_duo, scatter + "return p.data.some(t => t.name === '3 · class 3');", 60)
    traces = dash_duo.driver.execute_script(    # the class traces (explore's found ring and trajectory come after)
        scatter + "return p.data.filter(t => /^\\d+ · /.test(t.name || '')).map(t => [t.name, t.marker.color]);")
    assert traces[-1] == ["3 · class 3", "#E69F00"]                       # Okabe-Ito's first colour
    assert all(colour.startswith("rgba(160, 160, 160") for name, colour in traces[:-1]), traces
    screenshot(dash_duo, "colours.png")

    # 10: both exports under one name, seed-S-class-C-<reduction>, and the maps as .npz
    stem = f"seed-{seed}-class-{label}-l2"
    assert dash_duo.driver.execute_script(PANELS + "return g.layout.meta.export;") == stem
    dash_duo.find_element("#download-png").click()
    dash_duo.wait_for_text_to_equal("#png-done", f"saved {stem}.png", timeout=30)
    wait_for_download(dash_duo.download_path, f"{stem}.png")
    dash_duo.find_element("#download-npz").click()
    maps = np.load(io.BytesIO(wait_for_download(dash_duo.download_path, f"{stem}.npz").read_bytes()))
    meta = json.loads(str(maps["meta"]))
    assert meta["seed"] == seed and meta["models"]["teacher"]["step"] == 4
    assert {f"teacher/{n}" for n in layers} <= set(maps.files) and maps["student/image"].dtype == np.uint8
    settle(dash_duo)
    assert not dash_duo.get_logs()
