"""Forged callback requests against the real app (issue 14), through Flask's test client: no browser.

The fuzz enumerates the callbacks the app actually registers (`app.callback_map`, so it follows every
later change), posts malformed values for each of their inputs and states, and polls background jobs
to their end: the server answers every one with an update or a message in the page, never an HTTP
500, and no callback ever fails in a way no check foresaw (`app.visualizer_errors`). Then each
malformed payload an attack on the running app found is posted on its own and must be answered
with the notice naming its field.
"""

import json
import logging
import math
import time
from pathlib import Path

import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings
from dash_requests import ENDPOINT, answer, body_for, notice

from visualizer.app import inputs
from visualizer.app.config import AppConfig, load
from visualizer.app.ids import ID
from visualizer.app.server import create_app

STEPS = 3
RECORD = Path(__file__).resolve().parents[1] / "benchmarks" / "out" / "server_fuzz.json"


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guard")
    pkl, student = write_pair(folder / "ckpt")
    models = pair_models(pkl, student)
    return load(AppConfig(embeddings=write_synthetic_embeddings(folder / "emb", 20, models=models), device="cpu",
                          num_steps=STEPS))


@pytest.fixture(scope="module")
def app(state):
    return create_app(state)


GARBAGE = [
    "abc", "", "7", -1, 3.5, 10**30, 1e308, math.nan, math.inf, -math.inf, True, [], [1, 2], [[1]], ["abc"],
    [{"a": 1}], {}, {"a": 1}, {"points": "x"}, {"points": []}, {"points": [1]}, {"points": [{"customdata": "3"}]},
    {"points": [{"customdata": 10**12, "bbox": "x"}]}, {"seed": "5", "class_label": 1}, {"seed": 1},
    {"seed": 1, "class_label": 1, "layers": [], "reduction": "l2"}, "x" * 20_000, {"run": 5, "step": "a"},
]


def test_every_input_of_every_callback_has_a_declared_type(app):
    types = inputs.property_types(app.visualizer, app.layout)
    assert inputs.undeclared(app.callback_map, types) == []


def test_fuzz_every_input_of_every_registered_callback(app, caplog):
    caplog.set_level(logging.ERROR)
    client = app.server.test_client()
    client.get("/")
    server_side = {k: e for k, e in app.callback_map.items() if "callback" in e}
    assert len(server_side) >= 12
    posted = refused = 0
    for key, entry in server_side.items():
        for dep in [*entry["inputs"], *entry["state"]]:
            name = f"{dep['id']}.{dep['property']}"
            for value in GARBAGE:
                status, data = answer(client, body_for(key, entry, {name: value}))
                posted += 1
                assert status in (200, 204), (key, name, value, status)
                message = notice(data)
                if message and "refused what the page sent" in message:
                    refused += 1
                    assert name in message, (key, name, value, message)
    assert app.visualizer_errors == [], app.visualizer_errors
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert refused > posted // 2
    fields = {f"{d['id']}.{d['property']}" for e in server_side.values() for d in [*e["inputs"], *e["state"]]}
    RECORD.parent.mkdir(parents=True, exist_ok=True)          # for benchmarks/RESULTS.md
    RECORD.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "callbacks": len(server_side),
                                  "fields": len(fields), "values": len(GARBAGE), "requests": posted,
                                  "refused_naming_the_field": refused, "ran": posted - refused, "http_500": 0,
                                  "internal_errors": 0}, indent=1))


def test_malformed_envelopes_are_400_not_500(app):
    client = app.server.test_client()
    key = "..clicked.data...seed-input.value...class-input.value.."
    good = body_for(key, app.callback_map[key], {"generate-btn.n_clicks": 1, "seed-input.value": "17",
                                              "class-input.value": 6}, changed="generate-btn.n_clicks")
    bad = [
        "not json", [1, 2], {}, {"output": "nonexistent.children"}, {**good, "output": "png-done.children"},
        {**good, "inputs": good["inputs"][:1]}, {**good, "inputs": "x"}, {**good, "state": [{"id": "x"}] * 2},
        {**good, "outputs": {"id": "clicked", "property": "data"}}, {**good, "changedPropIds": ["selection.data"]},
        {**good, "changedPropIds": []}, {**good, "inputs": [{"id": "scatter", "property": "figure", "value": 1},
                                                           good["inputs"][1]]},
    ]
    for body in bad:
        payload = body if isinstance(body, str) else json.dumps(body)
        r = client.post(ENDPOINT, data=payload, content_type="application/json")
        assert r.status_code == 400 and r.data.startswith(b"malformed callback request: "), (body, r.data)
    assert client.post(ENDPOINT, data=json.dumps(good), content_type="application/json").status_code == 200


def _valid_first(app) -> dict:
    return {"seed": 3, "class_label": 3, "layers": app.visualizer.default_layers[:2], "reduction": "l2"}


def test_each_payload_the_attack_found_is_answered_with_its_field(app):
    """The 22 payloads that got a 500 from the unguarded app, each answered in the page, naming its field."""
    client = app.server.test_client()
    client.get("/")
    cm = app.callback_map
    choose = "..clicked.data...seed-input.value...class-input.value.."
    first_look = next(k for k in cm if k.startswith("..first-ready.data"))
    render = next(k for k in cm if k.startswith("..panels.figure"))
    slider = next(k for k in cm if k.startswith("..step-slider.max"))
    select = next(k for k in cm if k.startswith("..selection.data"))
    hover = next(k for k in cm if k.startswith("..hover-tip.show...") and "callback" in cm[k])
    reduction_arg = next(k for k in cm if k.startswith("..reduction-arg.disabled"))
    clicked = {"seed": 3, "class_label": 3, "sample_id": None, "model": None}
    first = _valid_first(app)
    ready = {**first, "model": "teacher", "num_steps": STEPS, "sigmas": [80.0, 2.0, 0.0], "seconds": 0.1}
    generate = "generate-btn.n_clicks"
    cases = [
        (choose, {"seed-input.value": ["1"], "class-input.value": 1, generate: 1}, generate, "seed-input.value"),
        (choose, {"seed-input.value": 1, "class-input.value": "cat", generate: 1}, generate, "class-input.value"),
        (choose, {"scatter.clickData": {"points": []}}, "scatter.clickData", "scatter.clickData.points"),
        (choose, {"scatter.clickData": {"points": [{"customdata": [1]}]}}, "scatter.clickData",
         "scatter.clickData.points.0.customdata"),
        *[(first_look, {"clicked.data": {**clicked, "seed": bad}}, None, "clicked.data.seed")
          for bad in ("5", [5], math.nan, math.inf, -1, 2**32)],
        (first_look, {"clicked.data": {**clicked, "class_label": "x"}}, None, "clicked.data.class_label"),
        (first_look, {"clicked.data": [3, 3]}, None, "clicked.data"),
        (first_look, {"clicked.data": {"seed": 3}}, None, "clicked.data.class_label"),
        (first_look, {"clicked.data": clicked, "layer-pick.value": [{"a": 1}]}, None, "layer-pick.value.0"),
        (first_look, {"clicked.data": clicked, "reduction.value": ["l2"]}, None, "reduction.value"),
        (first_look, {"clicked.data": clicked, "reduction.value": "channel", "reduction-arg.value": "abc"}, None,
         "reduction-arg.value"),
        (render, {"first-ready.data": {**first, "layers": ["no_such_layer"]}}, None, "first-ready.data.layers.0"),
        (render, {"first-ready.data": {**first, "class_label": 999}}, None, "first-ready.data.class_label"),
        *[(render, {"first-ready.data": first, "trajectory-ready.data": {**ready, "num_steps": bad}},
           "trajectory-ready.data", "trajectory-ready.data") for bad in (0, "3", 10**9)],
        (slider, {"first-ready.data": first, "trajectory-ready.data": {**ready, "sigmas": [80.0]}},
         "trajectory-ready.data", "trajectory-ready.data"),
        (select, {"scatter.selectedData": {"points": "abc"}}, None, "scatter.selectedData.points"),
        (select, {"scatter.selectedData": {"points": [{"customdata": -5}]}}, None, "scatter.selectedData.points.0"),
        (hover, {"hover-point.data": [1, 2]}, None, "hover-point.data"),     # the scatter's hoverData, passed on
        (reduction_arg, {"reduction.value": []}, None, "reduction.value"),
    ]
    for key, values, changed, field in cases:
        status, data = answer(client, body_for(key, cm[key], values, changed))
        message = notice(data)
        assert status == 200 and message, (key, values, status, data)
        assert message.startswith("The server refused what the page sent") and f"{field}" in message, (field, message)
        assert data["response"] == {}           # nothing else changed
    assert app.visualizer_errors == []


def test_what_the_models_refuse_is_said_in_the_page(app):
    """A store that fits its type but names what the models refuse (a channel the layer lacks): the callback's
    UserError becomes the notice, in an ordinary callback and in the teacher's background job."""
    end = time.monotonic() + 120                # the fuzz's cancelled runs end at their next evaluation
    while app.visualizer.jobs.running_jobs() and time.monotonic() < end:
        time.sleep(0.05)
    client = app.server.test_client()
    client.get("/")
    cm = app.callback_map
    render = next(k for k in cm if k.startswith("..panels.figure"))
    first = {**_valid_first(app), "reduction": "channel:99999"}
    status, data = answer(client, body_for(render, cm[render], {"first-ready.data": first}))
    assert status == 200 and "channel 99999 does not exist" in notice(data)
    key = "trajectory-done.data"
    status, data = answer(client, body_for(key, cm[key], {"first-ready.data": first}))
    assert status == 200 and "channel 99999 does not exist" in notice(data)
    assert app.visualizer_errors == []


def test_the_stores_the_server_writes_fit_their_declared_types(app):
    """A round trip: what the callbacks put in the session stores passes the checks on its way back."""
    from visualizer.app import panels, scatter

    ctx = app.visualizer
    types = inputs.property_types(ctx, app.layout)
    row = 7
    point = {"points": [{"customdata": row, "curveNumber": 0, "pointNumber": 1, "x": 1.0, "y": 2.0,
                         "bbox": {"x0": 1, "x1": 2, "y0": 3, "y1": 4}}]}
    clicked = scatter.choose(ctx, ID.scatter, point, 0, "0", 0)[0]
    first, *_ = panels.first_look(ctx, clicked, ctx.default_layers[:2], "topk", 3)
    ready = panels.teacher_run(ctx, lambda _: None, first)
    for name, value in (("scatter.clickData", point), ("clicked.data", clicked), ("first-ready.data", first),
                        ("trajectory-ready.data", ready)):
        assert inputs.problem(name, types[name], value) is None, name
