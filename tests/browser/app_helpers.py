"""Helpers of the browser tests: apps over tiny real-format checkpoints, real mouse actions, screenshots, timings."""

import io
import json
import platform
import time
from pathlib import Path

from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains

from visualizer.app.config import AppConfig, ModelSource, load
from visualizer.app.server import create_app

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
BENCH_JSON = REPO / "benchmarks" / "out" / "app_browser.json"
WINDOW = (1500, 1050)


def make_app(csv, checkpoints, num_steps: int):
    pkl, student = checkpoints
    config = AppConfig(embeddings=csv, models=(ModelSource("teacher", str(pkl)), ModelSource("student", str(student))),
                       device="cpu", preset="fid", num_steps=num_steps)
    return create_app(load(config))


def start(dash_duo, app):
    dash_duo.driver.set_window_size(*WINDOW)
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


def point_pixels(dash_duo, graph_id: str, x: float, y: float) -> tuple[float, float]:
    """(px, py) of data point (x, y) from the top-left of the graph's drag layer, from the figure's own axes."""
    return dash_duo.driver.execute_script(
        f"const g = document.querySelector('#{graph_id} .js-plotly-plot'); const L = g._fullLayout;"
        "return [L.xaxis.l2p(L.xaxis.d2l(arguments[0])), L.yaxis.l2p(L.yaxis.d2l(arguments[1]))];", x, y)


def drag_layer(dash_duo, graph_id: str):
    return dash_duo.find_element(f"#{graph_id} .nsewdrag")


def hover_point(dash_duo, graph_id: str, x: float, y: float) -> None:
    px, py = point_pixels(dash_duo, graph_id, x, y)
    ActionChains(dash_duo.driver).move_to_element_with_offset(drag_layer(dash_duo, graph_id), px, py).perform()


def click_point(dash_duo, graph_id: str, x: float, y: float) -> None:
    """A real mouse click (selenium 4.2 offsets count from the element's top-left corner)."""
    px, py = point_pixels(dash_duo, graph_id, x, y)
    layer = drag_layer(dash_duo, graph_id)
    ActionChains(dash_duo.driver).move_to_element_with_offset(layer, px, py).pause(0.1).click().perform()


def drag_box(dash_duo, graph_id: str, x0: float, y0: float, x1: float, y1: float, steps: int = 8) -> None:
    """Press at data point (x0, y0), move in steps to (x1, y1) and release: a real box/lasso drag."""
    p0 = point_pixels(dash_duo, graph_id, x0, y0)
    p1 = point_pixels(dash_duo, graph_id, x1, y1)
    chain = ActionChains(dash_duo.driver).move_to_element_with_offset(drag_layer(dash_duo, graph_id), *p0)
    chain.click_and_hold()
    dx, dy = (p1[0] - p0[0]) / steps, (p1[1] - p0[1]) / steps
    for _ in range(steps):
        chain.move_by_offset(dx, dy).pause(0.03)
    chain.release().perform()


def screenshot(dash_duo, name: str) -> Path:
    """A palette PNG of what the browser shows, small enough for the README (< 300 KB)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(dash_duo.driver.get_screenshot_as_png())).convert("RGB")
    path = SCREENSHOTS / name
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
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
