"""Every callback request is checked before Dash runs it, and anything refused is said in the page.

`install(app, types)` adds a Flask `before_request` to the callback endpoint
(`/_dash-update-component`):

- the envelope (what Dash itself trusts): a JSON object naming a server-side callback of this
  app, with exactly the outputs, inputs and state that callback declares and a `changedPropIds`
  among its inputs; anything else is a 400 with one line of text (a page never sends it);
- every value against the type declared for its component property (`visualizer.app.inputs`):
  the first misfit is answered, with no callback run and no job started, by a message in the page's
  notice bar that names the field (`clicked.data: class_label: Field required`), and nothing else
  changes.

What the types cannot know (a request a model refuses) raises `UserError` in the callback;
`on_error`, the app's error handler, shows it in the same bar. Any other exception there is a bug: it
is logged with its traceback, counted in `app.visualizer_errors` (the fuzz test asserts it stays
empty), and the page says "internal error". Never an HTTP 500 for what a browser sends.

Pattern-matching callbacks (dict ids) are refused by the envelope check until it learns them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import dash
from dash import html, set_props
from flask import Response, request

from visualizer.app.ids import ID
from visualizer.app.inputs import problem
from visualizer.errors import UserError

log = logging.getLogger("visualizer.app")

MAX_REQUEST_BYTES = 64 << 20     # a box selection of 100k points is a few MB
NOTICE_VISIBLE = {"display": "block", "background": "#fff4e5", "border": "1px solid #f0b45a", "borderRadius": "6px",
                  "padding": "6px 10px", "margin": "0 0 8px 0", "fontSize": "13px", "color": "#7a3e00",
                  "cursor": "pointer", "overflowWrap": "anywhere"}
NOTICE_HIDDEN = {"display": "none"}
HIDE_NOTICE_JS = "function(n) { return n ? {display: 'none'} : window.dash_clientside.no_update; }"


def banner() -> html.Div:
    """The notice bar at the top of the page: what the server refused or could not do (click to dismiss)."""
    return html.Div(id=ID.notice, role="alert", n_clicks=0, style=NOTICE_HIDDEN, title="click to dismiss")


def notice_props(message: str) -> dict:
    return {"children": message, "style": NOTICE_VISIBLE}


def notify(message: str) -> None:
    """Show `message` in the notice bar, from inside any callback or background job."""
    set_props(ID.notice, notice_props(message))


def register(app: dash.Dash) -> None:
    """The bar's own behaviour: a click hides it (in the browser)."""
    app.clientside_callback(HIDE_NOTICE_JS, dash.Output(ID.notice, "style"), dash.Input(ID.notice, "n_clicks"),
                            prevent_initial_call=True)


def install(app: dash.Dash, types: Mapping[str, Any], public: Callable[[str], str] = str) -> None:
    """Check every callback request against the envelope and `types`; `public` redacts text for remote viewers."""
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    endpoint = app.config.routes_pathname_prefix + "_dash-update-component"

    @server.before_request
    def check_callback_request():
        if request.path != endpoint or request.method != "POST":
            return None
        try:
            return _check(app, request.get_json(silent=True), types, public)
        except Exception as e:  # noqa: BLE001 - a bug here must not become a 500 with the request unchecked
            log.error("callback request check failed: %s", e, exc_info=e)
            return Response("malformed callback request: it could not be checked\n", status=400,
                            mimetype="text/plain")


def _check(app: dash.Dash, body, types: Mapping[str, Any], public: Callable[[str], str]) -> Response | None:
    """None when the request may go to Dash; else the answer (a 400, or a refusal shown in the page)."""
    specs = {s["output"]: s for s in getattr(app, "_callback_list", [])}
    why = envelope_problem(body, app.callback_map, specs)
    if why:
        return Response(f"malformed callback request: {why}\n", status=400, mimetype="text/plain")
    entry = app.callback_map[body["output"]]
    sent = [*body["inputs"], *body.get("state", [])]
    for dep, item in zip([*entry["inputs"], *entry["state"]], sent, strict=True):
        name = f"{dep['id']}.{dep['property']}"
        adapter = types.get(name)
        if adapter is None:
            continue           # declared nowhere: the tests fail on it (inputs.undeclared)
        message = problem(name, adapter, item.get("value"))
        if message:
            return refusal(public(f"The server refused what the page sent, and changed nothing: {message}"))
    return None


def refusal(message: str) -> Response:
    """A callback answer that changes no output and shows `message` in the notice bar (Dash's set_props form)."""
    body = {"multi": True, "response": {}, "sideUpdate": {ID.notice: notice_props(message)}}
    return Response(json.dumps(body), mimetype="application/json")


def envelope_problem(body, callbacks: Mapping[str, dict], specs: Mapping[str, dict]) -> str | None:
    """Why `body` is not a request this app's page could send (None when it is)."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or output not in callbacks:
        return "no callback has this output"
    entry = callbacks[output]
    if "callback" not in entry:
        return "this output is computed in the browser"
    expected = _outputs(output)
    got = body.get("outputs")
    got = got if output.startswith("..") else [got]
    if not isinstance(got, list) or len(got) != len(expected) or any(
            not isinstance(g, dict) or (g.get("id"), str(g.get("property", "")).split("@")[0]) != e
            for g, e in zip(got, expected, strict=False)):
        return "the outputs do not match the callback"
    for key, declared in (("inputs", entry.get("inputs", [])), ("state", entry.get("state", []))):
        items = body.get(key, [] if key == "state" else None)
        if not isinstance(items, list) or len(items) != len(declared) or any(
                not isinstance(i, dict) or (i.get("id"), i.get("property")) != (d["id"], d["property"])
                for i, d in zip(items, declared, strict=False)):
            return f"the {key} do not match the callback"
    changed = body.get("changedPropIds", [])
    inputs = {f"{d['id']}.{d['property']}" for d in entry.get("inputs", [])}
    if not isinstance(changed, list) or any(not isinstance(c, str) or c not in inputs for c in changed):
        return "changedPropIds names something that is not an input of the callback"
    if not changed and specs.get(output, {}).get("prevent_initial_call"):
        return "no input changed"
    return None


def _outputs(key: str) -> list[tuple[str, str]]:
    """(id, property) of each output in a callback_map key ('a.b' or '..a.b...c.d..', '@hash' dropped)."""
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    return [tuple(p.split("@")[0].rsplit(".", 1)) for p in parts]


def error_handler(errors: list, public: Callable[[str], str] = str) -> Callable[[Exception], None]:
    """The app's `on_error`: a UserError is said in the notice bar; anything else is a bug, logged and counted."""

    def on_error(err: Exception) -> None:
        if isinstance(err, UserError):
            notify(public(f"error: {err}"))
            return None
        errors.append(err)
        log.error("callback failed: %s", err, exc_info=err)
        notify("internal error: the server could not answer (its log says why); nothing was changed")
        return None

    return on_error
