"""The page's address holds its view (issue 19), so a copied link reopens it and back/forward walk the views.

The state lives in the hash (never sent to the server, so the access token's redirect leaves it alone):

    #run=demo&seed=3&class=7&layers=encoder_block_0,midblock&reduction=channel:5&step=18&pins=[...]&edits=[...]

`FIELDS` is the documented list, in the order the address writes them:

- `run`: the id of a run the server was started with (`run_ids`: its embeddings folder's name, or the folder
  above when that is called `embeddings`), never a path; an address for another run is refused whole;
- `map`: the map shown, one of the run's maps (`main` or a per-layer map's id; the switcher `map-pick.value`
  of `visualizer.app.explore`, which sets its `map-choice` store);
- `seed`, `class`: the sample in the panels (the `clicked` store, the seed and class pickers);
- `layers`: the panels' layers (`layer-pick.value`), canonical names (native ones are accepted), comma-separated;
- `reduction`: `l2`, `channel:5`, `topk:8`, ... (`reduction.value` and `reduction-arg.value`);
- `step`: the teacher's step on the slider, from 1 (`step-slider.value`); one the run has not reached yet
  waits in the `url-step` store until the run is on the slider (`restore_step`);
- `pins`: a JSON list of `{"seed", "class", "step"?, "edits"?}` (the `pins` store; they take the
  address's layers and reduction);
- `edits`: a JSON list of edits as `EditSpec.to_dict()` writes them, fields at their default left out
  (the `edits` store).

To add a field (a probe's map choice, say): a parser `fn(ctx, text) -> value` (raise ValueError saying why) in
`PARSERS`, its name in `FIELDS`, and, for a field held by one component property, that property in
`WIRED` (name -> (component id, property)): `register` then reads it into the address and writes it back
from one, and `view_of`/`apply` carry it.

The sync is loop-free: the address is read only when the page opens and on back/forward (`READ_JS`, a
`popstate` listener, into the `url-in` store) and applied by `apply`; the state is written by `to_url` into
`url-out` and by `WRITE_JS` into the browser's history (`history.pushState`/`replaceState`, which fire no
`popstate`): a new sample, layers, reduction, pins or edits push a history entry, a new step only
replaces the current one (dragging the slider does not fill the history), and the first write after an
address was applied replaces it with its canonical form. Nothing the page writes is read back. (Not a
`dcc.Location`: in Dash 4.4 it re-applies the address it last knew when it re-renders, undoing writes
made around it; and writing through it would make the address an output of its own reader.)

The address is untrusted input: `parse` bounds its size and each field, and a field it refuses is named
in the notice bar while the others apply.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dash
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from visualizer.app import guard
from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.panels import canonical_name
from visualizer.app.ui import MAX_ADDRESS, parse_seed
from visualizer.embeddings.maps import MAIN
from visualizer.errors import UserError
from visualizer.inspection.edits import EditSpec
from visualizer.trace.reductions import PARAMETRIC, REDUCTIONS

MAX_HASH = MAX_ADDRESS     # characters of an address's hash
MAX_PINS = 8
MAX_EDITS = 8
MAX_FIELDS = 32

FIELDS = ("run", "map", "seed", "class", "layers", "reduction", "step", "pins", "edits")
# Fields held by one component property, read into the address and written back from it.
WIRED: dict[str, tuple[str, str]] = {"layers": (ID.layer_pick, "value"), "map": (ID.map_pick, "value")}


# -- reading and writing the hash ---------------------------------------------------------------------

def run_ids(ctx: AppContext) -> list[str]:
    """The ids of the runs this server was started with (one: the embeddings' folder), never paths."""
    if ctx.root is None:
        return []
    root = ctx.root
    return [root.parent.name if root.name == "embeddings" and root.parent.name else root.name]


def _int(text: str, low: int, high: int, what: str) -> int:
    if not re.fullmatch(r"\d{1,12}", text):
        raise ValueError(f"{_short(text)} is not {what}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is not {what} ({low} to {high})")
    return value


def _short(text: Any) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def parse_run(ctx: AppContext, text: str) -> str:
    known = run_ids(ctx)
    if text not in known:
        raise ValueError(f"{_short(text)} is not a run this server was started with "
                         f"({', '.join(known) or 'none: no embeddings loaded'})")
    return text


def parse_map(ctx: AppContext, text: str) -> str:
    known = list(ctx.maps.maps) if ctx.maps is not None else [MAIN]
    if text not in known:
        raise ValueError(f"{_short(text)} is not a map of this run ({', '.join(known[:5])}"
                         f"{', ...' if len(known) > 5 else ''})")
    return text


def parse_class(ctx: AppContext, text: str) -> int:
    labels = {c for c, _ in ctx.classes}
    value = _int(text, 0, 10**9, "a class index")
    if labels and value not in labels:
        raise ValueError(f"{value} is not a class of the loaded models")
    return value


def parse_seed_text(ctx: AppContext, text: str) -> int:
    seed, why = parse_seed(text)
    if seed is None:
        raise ValueError(why)
    return seed


def _layer(ctx: AppContext, name: Any) -> str:
    known = set(ctx.inspector.layers())
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"{_short(name)} is not a layer of the loaded models")
    return canonical_name(name, ctx.inspector.aliases())


def parse_layers(ctx: AppContext, text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    if not names:
        raise ValueError("no layer named")
    if len(names) > max(len(ctx.inspector.layers()), 1):
        raise ValueError(f"{len(names)} layers; the models have {len(ctx.inspector.layers())}")
    return list(dict.fromkeys(_layer(ctx, n) for n in names))


def parse_reduction_text(ctx: AppContext, text: str) -> tuple[str, int | None]:
    name, colon, arg = text.partition(":")
    if name not in REDUCTIONS:
        raise ValueError(f"{_short(name)} is not a reduction ({', '.join(REDUCTIONS)})")
    if name not in PARAMETRIC:
        if colon:
            raise ValueError(f"{name} takes no argument")
        return name, None
    return name, (_int(arg, 0, 10**6, f"the {PARAMETRIC[name][0]} of {name}") if colon
                  else PARAMETRIC[name][1])


def parse_step(ctx: AppContext, text: str) -> int:
    teacher = ctx.teacher
    if teacher is None:
        raise ValueError("no multi-step model is loaded")
    n = ctx.inspector.slots[teacher].num_steps()
    return _int(text, 1, n, f"a step of the {teacher}'s {n}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None


def edit_dicts(ctx: AppContext, value: Any) -> list[dict]:
    """A list of at most MAX_EDITS edits, each checked by `EditSpec.from_dict`, of a loaded model and layer."""
    if not isinstance(value, list) or len(value) > MAX_EDITS:
        raise ValueError(f"expected a list of at most {MAX_EDITS} edits")
    out = []
    for i, item in enumerate(value):
        try:
            spec = EditSpec.from_dict(item)
        except UserError as e:
            raise ValueError(f"{i}: {e}") from None
        if spec.model not in ctx.inspector.slots:
            raise ValueError(f"{i}: {_short(spec.model)} is not a loaded model")
        try:
            layer = _layer(ctx, spec.layer)
        except ValueError as e:
            raise ValueError(f"{i}: {e}") from None
        out.append({**spec.to_dict(), "layer": layer})
    return out


def parse_edits(ctx: AppContext, text: str) -> list[dict]:
    return edit_dicts(ctx, _json(text))


def parse_pins(ctx: AppContext, text: str) -> list[dict]:
    """[{seed, class, step?, edits?}]: at most MAX_PINS, each field checked as its own address field is."""
    value = _json(text)
    if not isinstance(value, list) or len(value) > MAX_PINS:
        raise ValueError(f"expected a list of at most {MAX_PINS} pins")
    pins = []
    for i, pin in enumerate(value):
        if not isinstance(pin, dict):
            raise ValueError(f"{i}: expected an object with seed and class")
        unknown = set(pin) - {"seed", "class", "step", "edits"}
        if unknown:
            raise ValueError(f"{i}: unknown field(s) {_short(sorted(map(str, unknown)))}")
        try:
            if "seed" not in pin or "class" not in pin:
                raise ValueError("a pin needs its seed and class")
            seed, label = pin["seed"], pin["class"]
            if type(seed) is not int or type(label) is not int:
                raise ValueError("seed and class are whole numbers")
            step = pin.get("step")
            if step is not None and type(step) is not int:
                raise ValueError("step is a whole number")
            pins.append({"seed": parse_seed_text(ctx, str(seed)), "class_label": parse_class(ctx, str(label)),
                         "step": None if step is None else parse_step(ctx, str(step)),
                         "edits": edit_dicts(ctx, pin.get("edits", []))})
        except ValueError as e:
            raise ValueError(f"{i}: {e}") from None
    return pins


PARSERS: dict[str, Callable[[AppContext, str], Any]] = {
    "run": parse_run, "map": parse_map, "seed": parse_seed_text, "class": parse_class, "layers": parse_layers,
    "reduction": parse_reduction_text, "step": parse_step, "pins": parse_pins, "edits": parse_edits,
}


def parse(ctx: AppContext, text: Any) -> tuple[dict, list[str]]:
    """(the fields the address sets, what was refused: one "field: why" each). Bad fields are left out and
    the others kept; an address for another run, too long or not a query string sets nothing."""
    if text is None or text == "":
        return {}, []
    if not isinstance(text, str):
        return {}, ["address: not text"]
    text = text.removeprefix("#")
    if len(text) > MAX_HASH:
        return {}, [f"address: longer than {MAX_HASH:,} characters; nothing was applied"]
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return {}, [f"address: more than {MAX_FIELDS} fields; nothing was applied"]
    state: dict[str, Any] = {}
    problems: list[str] = []
    seen: set[str] = set()
    for name, value in pairs:
        if name not in PARSERS:
            problems.append(f"{_short(name)}: not a field of this page's address ({', '.join(FIELDS)})")
            continue
        if name in seen:
            problems.append(f"{name}: given more than once")
            state.pop(name, None)
            continue
        seen.add(name)
        try:
            state[name] = PARSERS[name](ctx, value)
        except ValueError as e:
            problems.append(f"{name}: {e}")
    if "run" in seen and "run" not in state:
        return {}, [p for p in problems if p.startswith("run:")] + ["nothing else was applied"]
    if ("seed" in state) != ("class" in state):
        missing = "class" if "seed" in state else "seed"
        if missing in seen:          # refused above: already said
            state.pop("seed", None), state.pop("class", None)
        else:
            problems.append(f"{missing}: missing (a sample needs its seed and class)")
            state.pop("seed", None), state.pop("class", None)
    return state, problems


def _compact_edit(edit: Mapping) -> dict:
    """An edit as the address writes it: fields at their default left out."""
    return {k: v for k, v in edit.items() if v is not None and not (k == "factor" and v == 1.0)}


def encode(state: Mapping[str, Any]) -> str:
    """The hash (without '#') for a view: FIELDS in order, JSON where a field holds a list of objects."""
    parts = []
    for name in FIELDS + tuple(k for k in state if k not in FIELDS):
        if state.get(name) is None:
            continue
        value = state[name]
        if name == "layers":
            text = ",".join(value)
        elif name == "reduction":
            reduction, arg = value
            text = reduction if arg is None else f"{reduction}:{arg}"
        elif name == "edits":
            if not value:
                continue
            text = json.dumps([_compact_edit(e) for e in value], separators=(",", ":"))
        elif name == "pins":
            if not value:
                continue
            text = json.dumps([{"seed": p["seed"], "class": p["class_label"],
                                **({"step": p["step"]} if p.get("step") is not None else {}),
                                **({"edits": [_compact_edit(e) for e in p["edits"]]} if p.get("edits") else {})}
                               for p in value], separators=(",", ":"))
        else:
            text = str(value)
        parts.append(f"{name}={urllib.parse.quote(text, safe=',:[]{}')}")
    return "&".join(parts)


# -- the page's state as a view -----------------------------------------------------------------------

def view_of(ctx: AppContext, clicked, reduction, arg, step, pins, edits,
            wired: Mapping[str, Any] | None = None) -> dict:
    """The view the stores hold, as `parse` returns it (the address's fields); what `to_url` writes.
    `wired`: the WIRED fields' values ({"layers": [...]})."""
    state: dict[str, Any] = {}
    runs = run_ids(ctx)
    if runs:
        state["run"] = runs[0]
    if isinstance(clicked, dict) and "seed" in clicked and "class_label" in clicked:
        state["seed"], state["class"] = int(clicked["seed"]), int(clicked["class_label"])
        if ctx.teacher is not None and isinstance(step, int) and not isinstance(step, bool) and step >= 1:
            state["step"] = step
    for name, value in (wired or {}).items():
        if name == "layers" and value:
            state["layers"] = [canonical_name(n, ctx.inspector.aliases()) for n in value]
        elif name != "layers" and value is not None:
            state[name] = value
    if reduction in REDUCTIONS:
        state["reduction"] = (reduction, (arg if isinstance(arg, int) and not isinstance(arg, bool)
                                          else PARAMETRIC[reduction][1]) if reduction in PARAMETRIC else None)
    state["pins"] = [{"seed": p["seed"], "class_label": p["class_label"], "step": p.get("step"),
                      "edits": [EditSpec.from_dict(e).to_dict() for e in p.get("edits") or []]} for p in pins or []]
    state["edits"] = [EditSpec.from_dict(e).to_dict() for e in edits or []]
    return state


def _keys(state: Mapping) -> tuple[str, str]:
    """(hash, hash without the step): a write that changes only the step replaces the history entry."""
    return encode(state), encode({k: v for k, v in state.items() if k != "step"})


def to_url(ctx: AppContext, clicked, reduction, arg, step, pins, edits, wired: Mapping[str, Any], previous,
           pending_step=None, pending_arg=None) -> dict:
    """`url-out` for the page's state: {hash, key (the hash without the step), replace (only the step moved)}.

    `previous`: the last `url-out` (None until an address was read, so nothing overwrites a link before it
    is applied); `pending_step`, `pending_arg`: a step or argument from the address still waiting to be set
    (`url-step`, `url-arg`): the address keeps them meanwhile.
    """
    if not isinstance(previous, dict):
        raise PreventUpdate
    if isinstance(pending_step, dict):
        step = pending_step.get("step", step)
    if pending_arg is not None:
        arg = pending_arg
    full, key = _keys(view_of(ctx, clicked, reduction, arg, step, pins, edits, wired))
    if full == previous.get("hash"):
        raise PreventUpdate
    return {"hash": full, "key": key, "replace": key == previous.get("key")}


def _pin_store(pins: Sequence[dict], layers: Sequence[str] | None, reduction: str | None) -> list[dict]:
    return [{**p, "layers": list(layers or []), "reduction": reduction or "l2"} for p in pins]


def apply(ctx: AppContext, url_in, clicked, reduction, arg, step, pins, edits,
          wired: Mapping[str, Any]) -> tuple[tuple, str | None]:
    """The stores an address sets (read when the page opens and on back/forward), each no_update where it
    already holds that value; what is refused is said in the notice bar, naming the field.

    Returns the outputs (clicked, seed picker, class picker, reduction, reduction argument, step slider,
    pins, edits, url-step, url-arg, url-out, then the WIRED fields) and the notice's message (or None). A
    step for a sample still to be computed waits in url-step (its run resets the slider first), an argument
    for a new reduction in url-arg (the reduction's default is set first). url-out gets the view's
    canonical hash, which replaces the address.
    """
    if not isinstance(url_in, dict) or not isinstance(url_in.get("hash"), str):
        raise PreventUpdate
    got, problems = parse(ctx, url_in["hash"])
    message = ("The page's address was not applied in full: " + "; ".join(problems)) if problems else None
    wired = {name: wired.get(name) for name in WIRED}
    out = {k: no_update for k in ("clicked", "seed", "class", "reduction", "arg", "slider", "pins", "edits",
                                  "url_step", "url_arg")}
    wired_out = {name: no_update for name in WIRED}
    same_sample = True
    current = clicked if isinstance(clicked, dict) else {}
    if "seed" in got and (got["seed"], got["class"]) != (current.get("seed"), current.get("class_label")):
        clicked = {"seed": got["seed"], "class_label": got["class"], "sample_id": None, "model": None,
                   "clicked_at": time.time()}
        out.update(clicked=clicked, seed=got["seed"], **{"class": got["class"]})
        same_sample = False
    for name in WIRED:
        if name in got and got[name] != wired[name]:
            wired[name] = wired_out[name] = got[name]
            same_sample = same_sample and name != "layers"
    if "reduction" in got:
        name, value = got["reduction"]
        if name != reduction:
            out["reduction"], reduction = name, name
            same_sample = False
            if value is not None:
                out["url_arg"] = value          # the reduction's own reset comes first (restore_arg)
        elif value is not None and value != arg:
            out["arg"] = value
            same_sample = False
        arg = value if value is not None else arg
    if "edits" in got and got["edits"] != view_of(ctx, None, None, None, None, None, edits)["edits"]:
        out["edits"] = edits = got["edits"]
    if "pins" in got and got["pins"] != view_of(ctx, None, None, None, None, pins, None)["pins"]:
        spec = reduction if reduction not in PARAMETRIC else f"{reduction}:{arg}"
        out["pins"] = pins = _pin_store(got["pins"], wired.get("layers"), spec)
    if "step" in got and got["step"] != step and isinstance(clicked, dict) and "seed" in clicked:
        if same_sample:
            out["slider"] = got["step"]
        else:
            out["url_step"] = {"step": got["step"], "seed": clicked["seed"], "class_label": clicked["class_label"]}
        step = got["step"]
    full, key = _keys(view_of(ctx, clicked, reduction, arg, step, pins, edits, wired))
    return (out["clicked"], out["seed"], out["class"], out["reduction"], out["arg"], out["slider"], out["pins"],
            out["edits"], out["url_step"], out["url_arg"], {"hash": full, "key": key, "replace": True},
            *wired_out.values()), message


def restore_step(ctx: AppContext, auto, pending) -> tuple:
    """(slider value, url-step): the address's step, once the run of its sample is on the slider (the slider
    resets to step 1 for a new run; `auto` is the step-auto store, {run, step})."""
    if not isinstance(pending, dict):
        raise PreventUpdate
    try:
        run = json.loads(auto["run"]) if isinstance(auto, dict) else None
    except (ValueError, TypeError, RecursionError):
        run = None
    if not isinstance(run, dict):
        raise PreventUpdate
    if (run.get("seed"), run.get("class_label")) != (pending.get("seed"), pending.get("class_label")):
        raise PreventUpdate          # the slider of another sample (a run still ending): wait for ours
    return pending["step"], None


def restore_arg(ctx: AppContext, disabled, pending) -> tuple:
    """(reduction argument, url-arg): the address's argument, after a new reduction reset it to its default."""
    if pending is None:
        raise PreventUpdate
    return (no_update if disabled else pending), None


# -- the page ----------------------------------------------------------------------------------------

# Read the hash when the page opens and on back/forward (a `popstate`): the only ways in. `at` makes two
# visits to the same address two changes.
READ_JS = """
function(_id) {
    const read = function() { return {hash: window.location.hash.slice(1), at: Date.now()}; };
    if (window.__vizUrlRead) { return window.dash_clientside.no_update; }
    window.__vizUrlRead = true;
    window.addEventListener('popstate', function() { window.dash_clientside.set_props('url-in', {data: read()}); });
    return read();
}
"""

# Write the hash into the browser's history: a new view pushes an entry, a new step replaces the current one
# (`replace`). Neither fires `popstate`, so nothing the page writes is read back. Not through a dcc.Location:
# in Dash 4.4 a Location re-applies the address it last knew when it re-renders, which undid these writes.
# The hidden element's title keeps the last hash written (for tests and curious users).
WRITE_JS = """
function(out) {
    if (!out || typeof out.hash !== 'string') { return window.dash_clientside.no_update; }
    const want = out.hash ? '#' + out.hash : '';
    if (window.location.hash !== want) {
        const url = window.location.pathname + window.location.search + want;
        if (out.replace) { window.history.replaceState(window.history.state, '', url); }
        else { window.history.pushState(null, '', url); }
    }
    return out.hash;
}
"""


def layout(info: LayoutInfo) -> list:
    """The address's stores and the hidden element the writer marks (nothing visible)."""
    if not info.has_models:
        return []
    return [html.Div(id=ID.url, hidden=True),
            dcc.Store(id=ID.url_in, storage_type="memory"), dcc.Store(id=ID.url_out, storage_type="memory"),
            dcc.Store(id=ID.url_step, storage_type="memory"), dcc.Store(id=ID.url_arg, storage_type="memory")]


def register(app: dash.Dash, c: AppContext) -> None:
    if not c.inspector.slots:
        return
    wired_inputs = [Input(i, p) for i, p in WIRED.values()]
    wired_states = [State(i, p) for i, p in WIRED.values()]
    wired_outputs = [Output(i, p, allow_duplicate=True) for i, p in WIRED.values()]
    app.clientside_callback(READ_JS, Output(ID.url_in, "data"), Input(ID.url_in, "id"))
    app.callback(
        Output(ID.clicked, "data", allow_duplicate=True), Output(ID.seed_input, "value", allow_duplicate=True),
        Output(ID.class_input, "value", allow_duplicate=True), Output(ID.reduction, "value", allow_duplicate=True),
        Output(ID.reduction_arg, "value", allow_duplicate=True), Output(ID.slider, "value", allow_duplicate=True),
        Output(ID.pins, "data", allow_duplicate=True), Output(ID.edits, "data", allow_duplicate=True),
        Output(ID.url_step, "data", allow_duplicate=True), Output(ID.url_arg, "data", allow_duplicate=True),
        Output(ID.url_out, "data", allow_duplicate=True), *wired_outputs,
        Input(ID.url_in, "data"), State(ID.clicked, "data"), State(ID.reduction, "value"),
        State(ID.reduction_arg, "value"), State(ID.slider, "value"), State(ID.pins, "data"), State(ID.edits, "data"),
        *wired_states, prevent_initial_call=True,
    )(bind(_apply_in_order, c))
    app.callback(Output(ID.url_out, "data"),
                 Input(ID.clicked, "data"), Input(ID.reduction, "value"), Input(ID.reduction_arg, "value"),
                 Input(ID.slider, "value"), Input(ID.pins, "data"), Input(ID.edits, "data"), *wired_inputs,
                 State(ID.url_out, "data"), State(ID.url_step, "data"), State(ID.url_arg, "data"),
                 prevent_initial_call=True)(bind(_to_url_in_order, c))
    app.clientside_callback(WRITE_JS, Output(ID.url, "title"), Input(ID.url_out, "data"), prevent_initial_call=True)
    app.callback(Output(ID.slider, "value", allow_duplicate=True), Output(ID.url_step, "data"),
                 Input(ID.step_auto, "data"), State(ID.url_step, "data"),
                 prevent_initial_call=True)(bind(restore_step, c))
    app.callback(Output(ID.reduction_arg, "value", allow_duplicate=True), Output(ID.url_arg, "data"),
                 Input(ID.reduction_arg, "disabled"), State(ID.url_arg, "data"),
                 prevent_initial_call=True)(bind(restore_arg, c))


# Dash passes the WIRED fields as separate values; the module-level functions take them as one mapping.

def _apply_in_order(c: AppContext, url_in, clicked, reduction, arg, step, pins, edits, *wired):
    outputs, message = apply(c, url_in, clicked, reduction, arg, step, pins, edits,
                             dict(zip(WIRED, wired, strict=True)))
    if message:
        guard.notify(message)
    return outputs


def _to_url_in_order(c: AppContext, clicked, reduction, arg, step, pins, edits, *rest):
    wired, (previous, pending_step, pending_arg) = rest[:len(WIRED)], rest[len(WIRED):]
    return to_url(c, clicked, reduction, arg, step, pins, edits, dict(zip(WIRED, wired, strict=True)), previous,
                  pending_step, pending_arg)
