"""Pin and compare (issue 19): the samples clicked lately, samples pinned side by side, and the keyboard.

Layout: one box above the panels: pin / unpin / clear buttons, the history (a dropdown of the samples
clicked lately, newest first) and the strip of pinned samples, each a card with every shown model's
image (the first look, from the engine's cache: `Inspector.first_look`; the teacher at the pinned step
when its run is cached) and its seed, class, sampler and edits. Picking a card or a history entry makes
that sample the current one. A pin holds what makes a view: seed, class, the teacher's step (the same
seed at two steps is two pins), the edits (a sample and its edit are two pins), and the layers and
reduction it was pinned with (so its first look is a cache hit). At most MAX_PINS pins and MAX_HISTORY
history entries, per browser tab.

The keyboard (`visualizer/assets/app/keys.js`, a listener that leaves keys alone while a box, a
dropdown or the slider has the focus) puts `{action, at}` in the `key-action` store: `j` / `k` the next /
previous point (in the box/lasso selection when there is one, else among the clicked point's class, of
the same model), `→` / `←` (or `l` / `h`) the next / previous step on the slider.

Callbacks, each `fn(ctx, *inputs)`: `remember` (clicked -> history), `pick_history`, `pin_list` (pin,
unpin, clear), `strip` (the cards), `choose_pin`, `key_point`, `key_step`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import dash
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.panels import models_of, png_data_uri
from visualizer.app.ui import BOX, SMALL
from visualizer.errors import UserError
from visualizer.inspection import Request
from visualizer.inspection.edits import EditSpec

MAX_PINS = 8
MAX_HISTORY = 50
KEYS_HELP = ("keys: j / k next / previous point (in the selection, else in the sample's class); "
             "→ / ← (or l / h) next / previous step")
POINT_ACTIONS = {"next-point": 1, "prev-point": -1}
STEP_ACTIONS = {"next-step": 1, "prev-step": -1}


# -- pins and history as values -----------------------------------------------------------------------

def pin_of(first: Mapping, step, edits) -> dict:
    """The pin of the view in the panels: its first-ready request, the slider's step, the edit list."""
    return {"seed": int(first["seed"]), "class_label": int(first["class_label"]), "layers": list(first["layers"]),
            "reduction": str(first["reduction"]),
            "step": step if isinstance(step, int) and not isinstance(step, bool) and step >= 1 else None,
            "edits": [EditSpec.from_dict(e).to_dict() for e in edits or []]}


def same_pin(a: Mapping, b: Mapping) -> bool:
    """Two pins show the same thing: seed, class, step and edits (layers and reduction only change the maps)."""
    return all(a.get(k) == b.get(k) for k in ("seed", "class_label", "step")) and \
        [EditSpec.from_dict(e) for e in a.get("edits") or []] == [EditSpec.from_dict(e) for e in b.get("edits") or []]


def history_entry(clicked: Mapping) -> dict:
    return {k: clicked[k] for k in ("seed", "class_label", "sample_id", "model", "row") if clicked.get(k) is not None}


def history_label(c: AppContext, entry: Mapping) -> str:
    where = f" · {entry['model']} point" if entry.get("model") else ""
    return f"seed {entry['seed']} · class {entry['class_label']} ({c.class_name(entry['class_label'])}){where}"


def sampler_text(c: AppContext) -> str:
    """The teacher's sampler as the server runs it (preset, steps): every pin shares it."""
    if c.teacher is None:
        return ""
    slot = c.inspector.slots[c.teacher]
    preset = slot.sample_kwargs.get("preset")
    return f"{c.teacher}: {preset + ', ' if preset else ''}{slot.num_steps()} steps"


# -- figures ------------------------------------------------------------------------------------------

def pin_images(c: AppContext, pin: Mapping) -> list[tuple[str, object]]:
    """(caption, uint8 image) for every shown model of a pin: the first look (edited when the pin has edits),
    the teacher at the pinned step when its run is in the cache."""
    edits = [EditSpec.from_dict(e) for e in pin.get("edits") or []]
    req = Request.make(pin["seed"], pin["class_label"], pin["layers"] or c.default_layers, pin["reduction"],
                       edits=edits)
    look = c.inspector.first_look(req)
    out = []
    for key in c.inspector.shown():
        if key not in look.views:
            continue
        slot = c.inspector.slots[key]
        image, caption = look.views[key].image, key if not slot.multi_step else f"{key} · first step"
        step = pin.get("step")
        if slot.multi_step and step:
            traj = c.inspector.cached_trajectory(key, req)
            if traj is not None and step <= len(traj.steps):
                image, caption = traj.steps[step - 1].image, f"{key} · step {step}/{traj.num_steps}"
        out.append((caption, image))
    return out


def pin_card(c: AppContext, pin: Mapping, current: bool) -> html.Div:
    """One pinned sample: its images side by side, then seed, class, step and edits."""
    try:
        images = pin_images(c, pin)
        pictures = [html.Figure([
            html.Img(src=png_data_uri(image), className="pin-img", alt=caption),
            html.Figcaption(caption),
        ]) for caption, image in images]
    except UserError as e:
        pictures = [html.Div(f"cannot be shown: {e}", style={"color": "#b00"})]
    lines = [f"seed {pin['seed']} · class {pin['class_label']} ({c.class_name(pin['class_label'])})"]
    if c.teacher is not None:
        lines.append(f"{sampler_text(c)}" + (f" · step {pin['step']}" if pin.get("step") else ""))
    if pin.get("edits"):
        n = len(pin["edits"])
        lines.append(f"{n} edit{'s' if n != 1 else ''}: " + "; ".join(EditSpec.from_dict(e).label()
                                                                     for e in pin["edits"]))
    return html.Div([html.Div(pictures, className="pin-images"),
                     *[html.Div(line, className="pin-line") for line in lines]],
                    className="pin-card" + (" pin-current" if current else ""),
                    title="make this the current sample")


# -- layout -------------------------------------------------------------------------------------------

def layout(info: LayoutInfo) -> list:
    """The pins box (only with models: pins are regenerated samples) and the tab's stores."""
    if not info.has_models:
        return [dcc.Store(id=ID.key_action, storage_type="memory")]
    return [html.Div([
        html.Div([
            html.Button("pin this sample", id=ID.pin_add, n_clicks=0),
            html.Button("unpin it", id=ID.pin_remove, n_clicks=0),
            html.Button("clear pins", id=ID.pin_clear, n_clicks=0),
            html.Span(id=ID.pin_message, style=SMALL, role="status"),
            html.Div(dcc.Dropdown(id=ID.history_pick, options=[], placeholder="history: samples clicked lately",
                                  clearable=False, searchable=False), className="viz-grow",
                     style={"minWidth": "220px", "flex": "1 1 220px"}),
        ], className="viz-toolbar"),
        dcc.RadioItems(id=ID.pin_strip, options=[], value=None, className="pin-strip",
                       inputClassName="pin-radio", labelClassName="pin-label"),
        html.Div(KEYS_HELP, style={**SMALL, "marginTop": "4px"}),
        dcc.Store(id=ID.pins, storage_type="memory", data=[]),
        dcc.Store(id=ID.history, storage_type="memory", data=[]),
        dcc.Store(id=ID.key_action, storage_type="memory"),
    ], id=ID.pins_box, style=BOX)]


# -- callbacks ----------------------------------------------------------------------------------------

def remember(c: AppContext, clicked, history) -> tuple[list, list]:
    """(history, its dropdown's options): the clicked sample first, each sample once, at most MAX_HISTORY."""
    if not isinstance(clicked, dict) or "seed" not in clicked:
        raise PreventUpdate
    entry = history_entry(clicked)
    same = (entry["seed"], entry["class_label"], entry.get("model"))
    kept = [h for h in history or [] if (h["seed"], h["class_label"], h.get("model")) != same]
    history = [entry, *kept][:MAX_HISTORY]
    return history, [{"label": history_label(c, h), "value": i} for i, h in enumerate(history)]


def pick_history(c: AppContext, index, history) -> tuple:
    """(clicked, seed picker, class picker, dropdown value): the picked history entry becomes the current sample."""
    if index is None or not history or index >= len(history):
        raise PreventUpdate
    entry = history[index]
    clicked = {**entry, "clicked_at": time.time()}
    clicked.setdefault("sample_id", None)
    clicked.setdefault("model", None)
    return clicked, entry["seed"], entry["class_label"], None


def pin_list(c: AppContext, trigger, _add, _remove, _clear, pins, first, step, edits) -> tuple:
    """(pins, message): pin the view in the panels (seed, class, step, edits), unpin it, or clear the pins."""
    pins = list(pins or [])
    if trigger == ID.pin_clear:
        return [], ""
    if trigger not in (ID.pin_add, ID.pin_remove):
        raise PreventUpdate
    if not first:
        return no_update, "click a sample first"
    here = pin_of(first, step if c.teacher in (models_of(first) or c.inspector.slots) else None, edits)
    found = [i for i, p in enumerate(pins) if same_pin(p, here)]
    if trigger == ID.pin_remove:
        if not found:
            return no_update, "this sample is not pinned"
        return [p for i, p in enumerate(pins) if i not in found], ""
    if found:
        return no_update, "already pinned"
    if len(pins) >= MAX_PINS:
        return no_update, f"at most {MAX_PINS} pins: unpin or clear some"
    return [*pins, here], ""


def strip(c: AppContext, pins, first, edits) -> list[dict]:
    """The strip's options: one card per pin, the one matching the panels' sample (and edits) outlined."""
    here = pin_of(first, None, edits) if first else None
    options = []
    for i, pin in enumerate(pins or []):
        current = here is not None and same_pin({**pin, "step": None}, here)
        options.append({"label": pin_card(c, pin, current), "value": i})
    return options


def choose_pin(c: AppContext, index, pins, first, step) -> tuple:
    """(clicked, seed, class, edits, slider value, url-step, strip value): the picked pin becomes the view.

    The same sample as the panels' moves the slider at once; another one waits in url-step until its run
    is on the slider. The strip's value goes back to none, so the same pin can be picked again."""
    if index is None or not pins or index >= len(pins):
        raise PreventUpdate
    pin = pins[index]
    same = bool(first) and (first["seed"], first["class_label"]) == (pin["seed"], pin["class_label"])
    clicked = no_update if same else {"seed": pin["seed"], "class_label": pin["class_label"], "sample_id": None,
                                      "model": None, "clicked_at": time.time()}
    wanted = pin.get("step")
    slider = wanted if same and wanted and wanted != step else no_update
    pending = {"step": wanted, "seed": pin["seed"], "class_label": pin["class_label"]} if wanted and not same \
        else no_update
    return (clicked, pin["seed"], pin["class_label"], list(pin.get("edits") or []), slider, pending, None)


def _order(c: AppContext, clicked: Mapping | None, selection: Sequence[int] | None) -> list[int]:
    """The rows j/k walk: the selection's, else the clicked point's class (its model's rows), by seed."""
    rows = c.valid_rows(selection or [])
    if rows:
        return rows
    if c.frame is None or not clicked:
        return []
    frame = c.frame
    same = frame[frame["class_label"] == clicked["class_label"]]
    model = clicked.get("model") if clicked.get("model") in set(same["model"]) else \
        next((m for m in c.model_order if m in set(same["model"])), None)
    same = same[same["model"] == model] if model is not None else same
    return same.sort_values(["seed", "step"], kind="stable").index.tolist()


def key_point(c: AppContext, key, clicked, selection) -> tuple:
    """(clicked, seed, class): the next or previous point (j / k), wrapping around."""
    if not isinstance(key, dict) or key.get("action") not in POINT_ACTIONS:
        raise PreventUpdate
    order = _order(c, clicked if isinstance(clicked, dict) else None, selection)
    if not order:
        raise PreventUpdate
    move = POINT_ACTIONS[key["action"]]
    at = None
    if isinstance(clicked, dict):
        if clicked.get("row") in order:
            at = order.index(clicked["row"])
        else:
            frame = c.frame.loc[order]
            match = frame.index[(frame["seed"] == clicked.get("seed")) &
                                (frame["class_label"] == clicked.get("class_label"))].tolist()
            at = order.index(match[0]) if match else None
    nxt = order[0 if move > 0 else -1] if at is None else order[(at + move) % len(order)]
    r = c.frame.iloc[nxt]
    chosen = {"seed": int(r["seed"]), "class_label": int(r["class_label"]), "sample_id": r["sample_id"],
              "model": r["model"], "row": int(nxt), "clicked_at": time.time()}
    return chosen, chosen["seed"], chosen["class_label"]


def key_step(c: AppContext, key, value, top, disabled) -> int:
    """The slider's next or previous step (→ / ←), within 1 .. its max; nothing while it is disabled."""
    if not isinstance(key, dict) or key.get("action") not in STEP_ACTIONS or disabled:
        raise PreventUpdate
    value = value if isinstance(value, int) else 1
    top = top if isinstance(top, int) else value
    new = min(max(value + STEP_ACTIONS[key["action"]], 1), top)
    if new == value:
        raise PreventUpdate
    return new


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.slider, "value", allow_duplicate=True), Input(ID.key_action, "data"),
                 State(ID.slider, "value"), State(ID.slider, "max"), State(ID.slider, "disabled"),
                 prevent_initial_call=True)(bind(key_step, c))
    if c.frame is not None:
        app.callback(Output(ID.clicked, "data", allow_duplicate=True),
                     Output(ID.seed_input, "value", allow_duplicate=True),
                     Output(ID.class_input, "value", allow_duplicate=True),
                     Input(ID.key_action, "data"), State(ID.clicked, "data"), State(ID.selection, "data"),
                     prevent_initial_call=True)(bind(key_point, c))
    if not c.inspector.slots:
        return
    app.callback(Output(ID.history, "data"), Output(ID.history_pick, "options"), Input(ID.clicked, "data"),
                 State(ID.history, "data"), prevent_initial_call=True)(bind(remember, c))
    app.callback(Output(ID.clicked, "data", allow_duplicate=True), Output(ID.seed_input, "value", allow_duplicate=True),
                 Output(ID.class_input, "value", allow_duplicate=True), Output(ID.history_pick, "value"),
                 Input(ID.history_pick, "value"), State(ID.history, "data"),
                 prevent_initial_call=True)(bind(pick_history, c))
    app.callback(Output(ID.pins, "data"), Output(ID.pin_message, "children"),
                 Input(ID.pin_add, "n_clicks"), Input(ID.pin_remove, "n_clicks"), Input(ID.pin_clear, "n_clicks"),
                 State(ID.pins, "data"), State(ID.first_ready, "data"), State(ID.slider, "value"),
                 State(ID.edits, "data"), prevent_initial_call=True)(bind(pin_list, c, triggered=True))
    app.callback(Output(ID.pin_strip, "options"), Input(ID.pins, "data"), Input(ID.first_ready, "data"),
                 Input(ID.edits, "data"), prevent_initial_call=True)(bind(strip, c))
    app.callback(Output(ID.clicked, "data", allow_duplicate=True), Output(ID.seed_input, "value", allow_duplicate=True),
                 Output(ID.class_input, "value", allow_duplicate=True), Output(ID.edits, "data", allow_duplicate=True),
                 Output(ID.slider, "value", allow_duplicate=True), Output(ID.url_step, "data", allow_duplicate=True),
                 Output(ID.pin_strip, "value"), Input(ID.pin_strip, "value"), State(ID.pins, "data"),
                 State(ID.first_ready, "data"), State(ID.slider, "value"),
                 prevent_initial_call=True)(bind(choose_pin, c))
