"""Helpers of the browser tests: apps over tiny real-format checkpoints, real mouse actions, screenshots, timings."""

import io
import json
import platform
import time
from pathlib import Path

from PIL import Image

from visualizer.app.config import AppConfig, ModelSource, load
from visualizer.app.server import create_app

REPO = Path(__file__).resolve().parents[2]
# Where screenshots go: a temporary folder of the session (conftest), or $VISUALIZER_SCREENSHOTS when set;
# scripts/refresh_screenshots.py copies the ones the README shows into docs/screenshots/.
SCREENSHOTS_ENV = "VISUALIZER_SCREENSHOTS"
SCREENSHOTS: Path | None = None
BENCH_JSON = REPO / "benchmarks" / "out" / "app_browser.json"
WINDOW = (1500, 1050)
WINDOWS = {"1920x1080": (1920, 1080), "1366x768": (1366, 768)}   # the sizes the issue names (outer window)


def make_app(csv, checkpoints, num_steps: int):
    pkl, student = checkpoints
    config = AppConfig(embeddings=csv, models=(ModelSource("teacher", str(pkl)), ModelSource("student", str(student))),
                       device="cpu", preset="fid", num_steps=num_steps)
    return create_app(load(config))


def start(dash_duo, app, window: tuple[int, int] = WINDOW):
    dash_duo.driver.set_window_size(*window)
    dash_duo.start_server(app)
    dash_duo.wait_for_element("#scatter .main-svg", timeout=60)
    wait_js(dash_duo, "const g = document.querySelector('#scatter .js-plotly-plot');"
                      "return !!(g && g._fullData && g._fullData.length && g.data[0].customdata);", timeout=60)


def wait_js(dash_duo, script: str, timeout: float = 30.0, *args):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = dash_duo.driver.execute_script(script, *args)
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for: {script[:200]} (last value {last!r})")


def pick_option(dash_duo, ident: str, label: str, close: bool = False) -> None:
    """Chooses the option of dropdown `ident` that typing `label` finds, as a user does. On a busy page the click
    may not have opened the dropdown yet, and keys typed then go nowhere: it waits for the search box to have
    the focus and for the filtered option to show before pressing Enter, and starts again if either does not
    come (nothing was chosen then). `close`: Escape afterwards (a multi-select stays open)."""
    from selenium.webdriver.common.keys import Keys

    option = ("return [...document.querySelectorAll('.dash-dropdown-option')]"
              ".some(o => o.offsetParent !== null && o.textContent.includes(arguments[0]));")
    for _ in range(3):
        dash_duo.find_element(f"#{ident}").click()
        try:
            wait_js(dash_duo, "const a = document.activeElement;"
                              "return !!a && a.classList.contains('dash-dropdown-search');", 5)
            search = dash_duo.driver.switch_to.active_element
            search.send_keys(Keys.CONTROL, "a")          # a search left from an attempt before is typed over
            search.send_keys(label)
            wait_js(dash_duo, option, 5, label)
        except AssertionError:
            dash_duo.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
            continue
        search.send_keys(Keys.ENTER)
        if close:
            search.send_keys(Keys.ESCAPE)
        return
    raise AssertionError(f"could not choose {label!r} in #{ident}")


def point_pixels(dash_duo, graph_id: str, x: float, y: float) -> tuple[float, float]:
    """(px, py) of data point (x, y) from the top-left of the graph's drag layer, from the figure's own axes."""
    return dash_duo.driver.execute_script(
        f"const g = document.querySelector('#{graph_id} .js-plotly-plot'); const L = g._fullLayout;"
        "return [L.xaxis.l2p(L.xaxis.d2l(arguments[0])), L.yaxis.l2p(L.yaxis.d2l(arguments[1]))];", x, y)


def drag_layer(dash_duo, graph_id: str):
    return dash_duo.find_element(f"#{graph_id} .nsewdrag")


def viewport_point(dash_duo, graph_id: str, x: float, y: float) -> tuple[int, int]:
    """Data point (x, y) in window coordinates, after scrolling the plot into the window if the point is not
    (a small window may show only part of a plot; the inspector column scrolls on its own)."""
    px, py = point_pixels(dash_duo, graph_id, x, y)
    return tuple(dash_duo.driver.execute_script(
        "const el = arguments[0], r0 = el.getBoundingClientRect(), y = r0.top + arguments[2];"
        "if (y < 40 || y > window.innerHeight - 40) { el.scrollIntoView({block: 'center'}); }"
        "const r = el.getBoundingClientRect();"
        "return [Math.round(r.left + arguments[1]), Math.round(r.top + arguments[2])];",
        drag_layer(dash_duo, graph_id), px, py))


def _pointer(dash_duo):
    """Mouse actions in window coordinates (an element's offsets would count from the centre of its part in
    view, which moves when a window shows only part of a plot), each move instant: a gliding pointer
    hovers the points on its way, and a busy page may still hold one of them when the click comes."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    return ActionBuilder(dash_duo.driver, duration=0)


def hover_point(dash_duo, graph_id: str, x: float, y: float) -> None:
    vx, vy = viewport_point(dash_duo, graph_id, x, y)
    actions = _pointer(dash_duo)
    actions.pointer_action.move_to_location(vx, vy)
    actions.perform()


def click_point(dash_duo, graph_id: str, x: float, y: float) -> None:
    """A real mouse click at data point (x, y)."""
    vx, vy = viewport_point(dash_duo, graph_id, x, y)
    actions = _pointer(dash_duo)
    actions.pointer_action.move_to_location(vx, vy).pause(0.2).click()
    actions.perform()


def drag_box(dash_duo, graph_id: str, x0: float, y0: float, x1: float, y1: float, steps: int = 8) -> None:
    """Press at data point (x0, y0), move in steps to (x1, y1) and release: a real box/lasso drag."""
    v0 = viewport_point(dash_duo, graph_id, x0, y0)
    v1 = viewport_point(dash_duo, graph_id, x1, y1)
    actions = _pointer(dash_duo)
    pointer = actions.pointer_action.move_to_location(*v0).click_and_hold()
    for k in range(1, steps + 1):
        pointer.move_to_location(round(v0[0] + (v1[0] - v0[0]) * k / steps),
                                 round(v0[1] + (v1[1] - v0[1]) * k / steps)).pause(0.03)
    pointer.release()
    actions.perform()


def screenshot(dash_duo, name: str) -> Path:
    """A palette PNG of what the browser shows, small enough for the README (< 300 KB), in the session's folder."""
    if SCREENSHOTS is None:
        raise RuntimeError("no screenshot folder: the browser conftest sets app_helpers.SCREENSHOTS")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(dash_duo.driver.get_screenshot_as_png())).convert("RGB")
    path = SCREENSHOTS / name
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    if path.stat().st_size > 300_000:
        image.resize((image.width * 3 // 4, image.height * 3 // 4)).quantize(colors=96).save(path, optimize=True)
    return path


def record(key: str, value) -> None:
    """Adds one measurement to benchmarks/out/app_browser.json (git-ignored) and prints it; never asserted."""
    BENCH_JSON.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(BENCH_JSON.read_text()) if BENCH_JSON.exists() else {}
    data[key] = value
    data["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                       "processor": platform.processor() or platform.machine()}
    data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    BENCH_JSON.write_text(json.dumps(data, indent=2))
    print(f"[benchmark] {key}: {value}")


def settle(dash_duo, timeout: float = 30.0) -> None:
    """Waits until no callback is in flight, so the server is not stopped in the middle of one."""
    wait_js(dash_duo, "return !document.querySelector('[data-dash-is-loading=\"true\"]');", timeout)
    time.sleep(0.3)


# -- the panels ------------------------------------------------------------------------------------------

PANELS = "const g = document.querySelector('#panels .js-plotly-plot');"
PANEL_TITLE = PANELS + "return g && g.layout && g.layout.title && g.layout.title.text;"
HEATMAPS = PANELS + "return g && g.data ? g.data.filter(t => t.type === 'heatmap').length : 0;"


def frame_point(app, row: int):
    r = app.visualizer.frame.iloc[row]
    return float(r["umap_x"]), float(r["umap_y"]), int(r["seed"]), int(r["class_label"])


def isolated_row(dash_duo, app, model: str = "student", rank: int = 0) -> int:
    """The row of `model` farthest, on the screen, from every other point (`rank` 1: the next farthest), so a
    click cannot land on a neighbour; not in the plot's top band, where the toolbar covers the points."""
    import numpy as np

    frame = app.visualizer.frame
    xy = np.array(dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot'), L = g._fullLayout;"
        "return arguments[0].map(p => [L.xaxis.l2p(L.xaxis.d2l(p[0])), L.yaxis.l2p(L.yaxis.d2l(p[1]))]);",
        frame[["umap_x", "umap_y"]].to_numpy().tolist()))
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    below_toolbar = xy[:, 1] > 40
    candidates = np.flatnonzero((frame["model"].to_numpy() == model) & below_toolbar)
    return int(candidates[np.argsort(-d[candidates].min(1))[rank]])


def click_and_wait_for_panels(dash_duo, app, row: int, timeout: float = 60) -> float:
    x, y, seed, label = frame_point(app, row)
    start_t = time.perf_counter()
    click_point(dash_duo, "scatter", x, y)
    wait_js(dash_duo, PANEL_TITLE.replace("return", "const t =") + f"; return t && t.startsWith('seed {seed} ');",
            timeout)
    return time.perf_counter() - start_t


def wait_for_download(folder, name: str, timeout: float = 20) -> Path:
    path = Path(folder) / name
    end = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size > 100) and time.monotonic() < end:
        time.sleep(0.1)
    assert path.exists(), f"{name} was not downloaded (found {sorted(p.name for p in Path(folder).iterdir())})"
    time.sleep(0.2)      # Chromium renames the finished file into place; let it finish writing
    return path
