"""What the browser may send: one declared type per component property that a server callback reads.

The browser is not trusted. Every callback request names the component properties it carries
(`clicked.data`, `scatter.clickData`, `seed-input.value`, ...); `property_types(ctx, layout)` gives
each of them a pydantic type, and `visualizer.app.guard` checks every value of every request
against it before Dash calls any callback. A property means the same thing whichever callback reads
it, so its type is declared once, here, for every callback that reads it now or later; a server
callback reading a property declared nowhere is caught by the tests (`undeclared`).

Types follow what the app loaded: a class is one of the loaded classes, a layer one the models
know, a row one of the table, and a control with options (radio items, dropdowns, checklists) holds
one of the options its layout offers. Stores the server writes itself (`clicked`, `first-ready`,
`trajectory-ready`, `step-auto`, `selection`) have their exact shape, extra keys refused. Typed
text is only bounded here (a number box: a number within its min and max): its callback says what
is wrong with it.
"""

# No `from __future__ import annotations`: the TypedDicts below are built inside a function from its
# local types, which pydantic can read only as real objects, not as strings.
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any

from dash.development.base_component import Component
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from visualizer.app import overlays
from visualizer.app.context import AppContext
from visualizer.app.ids import ID
from visualizer.app.ui import MAX_SEED
from visualizer.trace.reductions import REDUCTIONS

MAX_STEPS = 100_000         # sampler steps of any run the page can show
MAX_POINTS = 2_000_000      # points in one plot event (a box selection of every point)
MAX_TEXT = 10_000

NClicks = Annotated[int, Field(strict=True, ge=0, le=10**9)] | None
Finite = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]


def _one_of(allowed: set, what: str) -> Callable[[Any], Any]:
    def check(value):
        try:
            known = value in allowed
        except TypeError:          # a list or a dict: never an option
            known = False
        if not known:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ValueError(f"{shown} is not {what}")
        return value
    return check


def _typed(box: Component):
    """A dcc.Input's value: a number box holds a finite number within its min and max (or nothing); any
    other box text of at most its maxLength (or a number a callback put there). Its callback judges the rest."""
    low, high = getattr(box, "min", None), getattr(box, "max", None)
    numeric = getattr(box, "type", "text") == "number"
    longest = int(getattr(box, "maxLength", None) or 1000)

    def check(value):
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError("expected a finite number")
            if numeric and (low is not None and value < low or high is not None and value > high):
                raise ValueError(f"expected a number from {low if low is not None else '-inf'} to "
                                 f"{high if high is not None else 'inf'}")
            return value
        if isinstance(value, str) and not numeric:
            if len(value) > longest:
                raise ValueError(f"expected at most {longest} characters")
            return value
        raise ValueError("expected a number" if numeric else "expected text")

    return Annotated[Any, PlainValidator(check)]


def _edits(value):
    """The edits store: at most 8 edits, each one `EditSpec.from_dict` accepts."""
    from visualizer.errors import UserError
    from visualizer.inspection.edits import EditSpec

    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 8:
        raise ValueError("expected a list of at most 8 edits")
    for i, item in enumerate(value):
        try:
            EditSpec.from_dict(item)
        except UserError as e:
            raise ValueError(f"{i}: {e}") from None
    return value


def _region(value):
    """A painted region: nothing, or [r0, c0, r1, c1] whole numbers with r0 < r1 and c0 < c1."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 4 and all(type(v) is int and 0 <= v <= 4096 for v in value)
            and value[0] < value[2] and value[1] < value[3]):
        raise ValueError("expected [r0, c0, r1, c1] with r0 < r1 and c0 < c1")
    return value


def _progress_value(value):
    """A progress bar's value: nothing, a number, or a number as text."""
    if value is None or isinstance(value, str) and re.fullmatch(r"\d{1,9}", value):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return value
    raise ValueError("expected a step count")


def _plot_event(least: int, most: int, rows: int, real: int = 0):
    """A Plotly click, hover or selection: {"points": [...]}, each point's row number (customdata) in the table,
    or -(i + 1) for real image i of a probe map (`overlays`: `real` is how many the run's maps hold).

    Checked by hand, not by a pydantic model: a box selection can hold 100k points, and a model
    copies each of them (0.6 s for 100k, against a few ms here).
    """
    def check(value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("expected an object with 'points'")
        points = value.get("points", None if least else [])
        if not isinstance(points, list):
            raise ValueError("points: expected a list")
        if not least <= len(points) <= most:
            raise ValueError(f"points: expected {least} to {most} points, got {len(points)}")
        for i, p in enumerate(points):
            if not isinstance(p, dict):
                raise ValueError(f"points.{i}: expected an object")
            if "customdata" in p and (type(p["customdata"]) is not int or not -real <= p["customdata"] < rows):
                raise ValueError(f"points.{i}.customdata: expected a row number (0 to {rows - 1})"
                                 + (f" or a real image (-{real} to -1)" if real else ""))
            for key in ("curveNumber", "pointNumber", "pointIndex"):
                if key in p and not (_index(p[key]) or key != "curveNumber" and _cell(p[key])):
                    raise ValueError(f"points.{i}.{key}: expected a whole number >= 0")
            box = p.get("bbox", {})
            if not isinstance(box, dict) or any(not _finite(box[k]) for k in ("x0", "x1", "y0", "y1") if k in box):
                raise ValueError(f"points.{i}.bbox: expected finite x0, x1, y0, y1")
        _geometry(value)
        return value

    return Annotated[Any, PlainValidator(check)]


MAX_LASSO = 20_000      # vertices of a lasso (selection thins one of more than LASSO_VERTICES)


def _index(v) -> bool:
    return type(v) is int and v >= 0


def _cell(v) -> bool:
    """A heatmap cell's point number, [row, column] (the overview's hover cells, issue 21)."""
    return isinstance(v, list) and len(v) == 2 and all(_index(k) for k in v)


def _geometry(value: dict) -> None:
    """A selection's geometry: `range` {x: [a, b], y: [c, d]} and `lassoPoints` {x: [...], y: [...]} of finite
    numbers (a large map's selection is resolved from it on the server, issue 21)."""
    box = value.get("range")
    if box is not None and not (isinstance(box, dict) and all(
            isinstance(box.get(a), list) and len(box[a]) == 2 and all(_finite(v) for v in box[a]) for a in "xy")):
        raise ValueError("range: expected {x: [a, b], y: [c, d]} of finite numbers")
    lasso = value.get("lassoPoints")
    if lasso is not None and not (isinstance(lasso, dict) and all(
            isinstance(lasso.get(a), list) and len(lasso[a]) <= MAX_LASSO and all(_finite(v) for v in lasso[a])
            for a in "xy") and len(lasso["x"]) == len(lasso["y"])):
        raise ValueError(f"lassoPoints: expected x and y lists of equal length (at most {MAX_LASSO:,}) of finite "
                         "numbers")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def options_in(layout: Component) -> dict[str, tuple[set, bool]]:
    """{component id: (the values its options offer, multi?)} for every control with options in the layout."""
    found = {}
    for comp in _walk(layout):
        options = getattr(comp, "options", None)
        ident = getattr(comp, "id", None)
        if options is None or not isinstance(ident, str):
            continue
        if isinstance(options, Mapping):
            values = set(options)
        else:
            values = {o.get("value") if isinstance(o, Mapping) else o for o in options}
        multi = bool(getattr(comp, "multi", False)) or type(comp).__name__ == "Checklist"
        found[ident] = (values, multi)
    return found


def _walk(node) -> Iterator[Component]:
    if isinstance(node, Component):
        yield node
        node = getattr(node, "children", None)
    if isinstance(node, (list, tuple)):
        for child in node:
            yield from _walk(child)
    elif isinstance(node, Component):
        yield from _walk(node)


def property_types(ctx: AppContext, layout: Component) -> dict[str, TypeAdapter]:
    """{"<component id>.<property>": TypeAdapter} for every property a server callback may read."""
    rows = len(ctx.frame) if ctx.frame is not None else 0
    labels = {c for c, _ in ctx.classes}
    real = overlays.real_count(ctx)         # real images on a probe map: customdata -real .. -1 (issue 16)
    layers = set(ctx.inspector.layers())
    model_keys = set(ctx.inspector.slots) | set(ctx.model_order)

    Row = Annotated[int, Field(strict=True, ge=0, lt=rows)]
    Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]
    Label = Annotated[int, Field(strict=True), AfterValidator(_one_of(labels, "a class of the loaded models"))] \
        if labels else Annotated[int, Field(strict=True, ge=0, lt=100_000)]
    Layer = Annotated[str, AfterValidator(_one_of(layers, "a layer of the loaded models"))]
    Model = Annotated[str, AfterValidator(_one_of(model_keys, "a loaded model"))]
    spec = re.compile(rf"(?:{'|'.join(map(re.escape, REDUCTIONS))})(?::\d{{1,7}})?")
    Reduction = Annotated[str, Field(max_length=64),
                          AfterValidator(lambda s: s if spec.fullmatch(s) else _refuse("not a reduction"))]
    Layers = Annotated[list[Layer], Field(min_length=1, max_length=max(len(layers), 1))]

    class Clicked(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        seed: Seed
        class_label: Label
        sample_id: NotRequired[Annotated[str, Field(max_length=500)] | None]
        model: NotRequired[Annotated[str, Field(max_length=200)] | None]
        row: NotRequired[Row]
        clicked_at: NotRequired[Finite]

    class FirstReady(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        seed: Seed
        class_label: Label
        layers: Layers
        reduction: Reduction
        models: NotRequired[Annotated[list[Model], Field(max_length=len(model_keys))]]

    class TrajectoryReady(FirstReady):
        model: Model
        num_steps: Annotated[int, Field(strict=True, ge=1, le=MAX_STEPS)]
        sigmas: Annotated[list[Annotated[float, Field(allow_inf_nan=False, ge=0)]], Field(max_length=MAX_STEPS)]
        seconds: Annotated[float, Field(allow_inf_nan=False, ge=0)]

    def one_sigma_per_step(ready):
        if ready is not None and len(ready["sigmas"]) != ready["num_steps"]:
            raise ValueError(f"{len(ready['sigmas'])} sigmas for num_steps {ready['num_steps']}")
        return ready

    class Neighbours(TypedDict):            # the clicked point's row and its neighbours' rows (issue 17)
        __pydantic_config__ = ConfigDict(extra="forbid")
        query: Row
        rows: Annotated[list[Row], Field(max_length=64)]

    class NeighbourPick(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        row: Row
        at: Finite

    map_ids = set(ctx.maps.ids()) if getattr(ctx, "maps", None) is not None else {"main"}
    MapId = Annotated[str, AfterValidator(_one_of(map_ids, "a map of this run"))]
    Range = Annotated[list[Finite], Field(min_length=2, max_length=2)]

    class Box(TypedDict):      # a map's axis ranges: find's zoom, and the view the overview is drawn for
        __pydantic_config__ = ConfigDict(extra="forbid")
        map: MapId
        rev: Annotated[int, Field(strict=True, ge=0, le=10**9)]
        x: Range | None
        y: Range | None

    class StepAuto(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        run: Text
        step: Annotated[int, Field(strict=True, ge=0, le=MAX_STEPS)]

    declared: dict[str, Any] = {
        f"{ID.scatter}.clickData": _plot_event(1, 100, rows, real),    # the point(s) under the mouse
        f"{ID.scatter}.hoverData": _plot_event(1, 100, rows, real),
        f"{ID.hover_point}.data": _plot_event(1, 100, rows, real),     # hoverData a moving mouse made (or null)
        f"{ID.scatter}.selectedData": _plot_event(0, MAX_POINTS, rows, real),  # a box or lasso: any number
        f"{ID.scatter}.relayoutData": dict[str, Any] | None,
        f"{ID.reduction_arg}.value": Annotated[int, Field(strict=True, ge=0, le=10**6)] | None,
        f"{ID.slider}.value": Annotated[int, Field(strict=True, ge=0, le=MAX_STEPS)] | None,
        f"{ID.progress}.value": Annotated[Any, BeforeValidator(_progress_value)],
        f"{ID.clicked}.data": Clicked | None,
        f"{ID.first_ready}.data": FirstReady | None,
        f"{ID.trajectory_ready}.data": Annotated[TrajectoryReady | None, AfterValidator(one_sigma_per_step)],
        f"{ID.trajectory_done}.data": dict[str, Finite] | None,
        f"{ID.selection}.data": Annotated[list[Row], Field(max_length=MAX_POINTS)] | None,
        "step-auto.data": StepAuto | None,                  # the panels' own stores and ids
        "panel-width.data": Annotated[float, Field(allow_inf_nan=False, ge=0, le=100_000)] | None,
        "results.id": Text | None,
        f"{ID.edits}.data": Annotated[Any, PlainValidator(_edits)],        # the page's edits (issue 17)
        f"{ID.edit_region}.data": Annotated[Any, PlainValidator(_region)],
        f"{ID.edit_region_graph}.selectedData": _plot_event(0, 65_536, 0),  # cells of the region map (no rows)
        f"{ID.map_choice}.data": MapId | None,                          # the map shown (issue 19, explore)
        f"{ID.map_zoom}.data": Box | None,
        f"{ID.scatter_view}.data": Box | None,                         # the view shown (issue 21, overview)
        f"{ID.found}.data": Annotated[list[Row], Field(max_length=MAX_POINTS)] | None,
        f"{ID.find_text}.n_submit": NClicks,
        f"{ID.neighbours}.data": Neighbours | None,
        f"{ID.neighbour_pick}.data": NeighbourPick | None,    # a neighbour's card clicked: its row
        f"{ID.collapse_chart}.clickData": _plot_event(1, 10, max(labels, default=0) + 1),  # a class's bar (issue 16)
    }
    for ident, (values, multi) in options_in(layout).items():   # the controls with options
        one = Annotated[Any, AfterValidator(_one_of(values, f"one of the options of {ident}"))]
        declared.setdefault(f"{ident}.value", (Annotated[list[one], Field(max_length=len(values))] if multi
                                               else one) | None)
    for ident in _clickable(layout):
        declared.setdefault(f"{ident}.n_clicks", NClicks)
    for comp in _walk(layout):                                  # boxes the user types into
        if type(comp).__name__ == "Input" and isinstance(getattr(comp, "id", None), str):
            declared.setdefault(f"{comp.id}.value", _typed(comp))
    declared.update(_view_types(Seed, Label, Row, Annotated[list[Layer], Field(max_length=max(len(layers), 1))],
                                Reduction))        # pins, history, the address, keys, gallery pages (issue 19)
    return {name: TypeAdapter(t) for name, t in declared.items()}


def _view_types(Seed, Label, Row, Layers, Reduction) -> dict[str, Any]:   # noqa: N803 - types as arguments
    """Issue 19's stores and properties: pins, history, the address (url-*), the key listener, gallery pages."""
    from typing import Literal

    from visualizer.app.pins import MAX_HISTORY, MAX_PINS, POINT_ACTIONS, STEP_ACTIONS
    from visualizer.app.ui import MAX_ADDRESS

    Step = Annotated[int, Field(strict=True, ge=1, le=MAX_STEPS)]
    Hash = Annotated[str, Field(max_length=4 * MAX_ADDRESS)]       # urlstate.parse says what is too long

    class Pin(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        seed: Seed
        class_label: Label
        layers: Layers
        reduction: Reduction
        step: Step | None
        edits: Annotated[Any, PlainValidator(_edits)]

    class Entry(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        seed: Seed
        class_label: Label
        sample_id: NotRequired[Annotated[str, Field(max_length=500)] | None]
        model: NotRequired[Annotated[str, Field(max_length=200)] | None]
        row: NotRequired[Row]

    class Key(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        action: Literal[tuple(POINT_ACTIONS) + tuple(STEP_ACTIONS)]
        at: Finite

    class UrlIn(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        hash: Hash
        at: Finite

    class UrlOut(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        hash: Hash
        key: Hash
        replace: bool

    class UrlStep(TypedDict):
        __pydantic_config__ = ConfigDict(extra="forbid")
        step: Step
        seed: Seed
        class_label: Label

    return {
        f"{ID.pins}.data": Annotated[list[Pin], Field(max_length=MAX_PINS)] | None,
        f"{ID.history}.data": Annotated[list[Entry], Field(max_length=MAX_HISTORY)] | None,
        f"{ID.pin_strip}.value": Annotated[int, Field(strict=True, ge=0, lt=MAX_PINS)] | None,    # a pin's index
        f"{ID.history_pick}.value": Annotated[int, Field(strict=True, ge=0, lt=MAX_HISTORY)] | None,
        f"{ID.key_action}.data": Key | None,
        f"{ID.gallery_page}.data": Annotated[int, Field(strict=True, ge=0, le=MAX_POINTS)] | None,
        f"{ID.slider}.max": Annotated[int, Field(strict=True, ge=1, le=MAX_STEPS)] | None,
        f"{ID.slider}.disabled": bool | None,
        f"{ID.reduction_arg}.disabled": bool | None,
        f"{ID.url_in}.data": UrlIn | None,
        f"{ID.url_out}.data": UrlOut | None,
        f"{ID.url_step}.data": UrlStep | None,
        f"{ID.url_arg}.data": Annotated[int, Field(strict=True, ge=0, le=10**6)] | None,
    }


def _clickable(layout: Component) -> list[str]:
    return [c.id for c in _walk(layout) if isinstance(getattr(c, "id", None), str) and "n_clicks" in c._prop_names]


def _refuse(why: str):
    raise ValueError(why)


def problem(name: str, adapter: TypeAdapter, value: Any) -> str | None:
    """None when `value` fits the type of property `name`; else a short message naming the field inside it."""
    try:
        adapter.validate_python(value)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join([name, *(str(p) for p in first["loc"] if not _is_tag(p))])
        message = first["msg"].removeprefix("Value error, ")
        inner = re.match(r"([\w]+(?:\.[\w]+)*): (.*)", message)   # a checker's own "points.3.customdata: ..."
        if inner:
            where, message = f"{where}.{inner.group(1)}", inner.group(2)
        return f"{where}: {message}"
    return None


def _is_tag(part) -> bool:
    """Pydantic's names of the branch of a type it tried ('function-after[...]', 'list[...]'), not data keys."""
    return isinstance(part, str) and ("[" in part or part in ("int", "str", "float", "none", "dict", "list"))


def undeclared(callback_map: Mapping[str, dict], types: Mapping[str, Any]) -> list[str]:
    """Properties that a server callback reads but no type declares (each once, sorted)."""
    missing = set()
    for entry in callback_map.values():
        if "callback" not in entry:
            continue
        for dep in [*entry.get("inputs", []), *entry.get("state", [])]:
            name = f"{dep['id']}.{dep['property']}"
            if name not in types:
                missing.add(name)
    return sorted(missing)
