"""Exploring the map: switch maps, find and zoom, and the clicked sample's teacher trajectory on the map.

Layout: one box under the scatter with
- the map switcher (`map-pick`): the maps the run holds (`inspection.maps.RunMaps`: the main map, then
  the per-layer and per-step maps of `embed --maps per-layer`), and one line saying what the current
  map embeds. The choice lives in the `map-choice` store, which the scatter draws from (and which the
  address, or a later probe map, can set): any list of named maps fits it;
- find (`find-text`: seeds and sample ids, comma-separated) with "find" (or Enter), "zoom to selection"
  (the box/lasso rows) and "reset zoom": the found points are ringed and the view zooms to them
  (`map-zoom` store: {map, rev, x, y}); a text that is neither a seed nor a sample id is refused in
  the notice bar and beside the box, naming the field;
- the teacher's trajectory: once the panels' teacher run has finished, each of its steps is placed on
  the current map (`RunMaps.place`: the run's layers recorded at every step, pooled as the run pooled
  them, projected into the run's PCA space and placed from their nearest rows; no refit) and drawn
  as a path with step markers; the current step (the panels' slider) is a large marker. Play and the
  step buttons move the slider (in the browser); moving the slider moves the marker. Both are Patches
  of the figure's last two traces: a click or a step never redraws the scatter's points.

The scatter's `draw` (visualizer.app.scatter) calls `decorate` to add the found ring, the path and the
marker, always as its last three traces, and to apply the zoom.
"""

from __future__ import annotations

import contextlib
import re

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, Patch, State, dcc, html, no_update
from dash.exceptions import MissingCallbackContextException, PreventUpdate

from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.guard import notify
from visualizer.app.ids import ID
from visualizer.app.ui import BOX, ERROR, SMALL, parse_seed
from visualizer.embeddings.maps import MAIN
from visualizer.errors import UserError
from visualizer.inspection import Request

MAX_FIND_TERMS = 100
PLAY_MS = 700
FOUND = "found"
PATH = "teacher trajectory"
MARKER = "current step"


# -- find and zoom ------------------------------------------------------------------------------------

def parse_find(text, frame: pd.DataFrame) -> tuple[list[int], str]:
    """(table rows of the seeds and sample ids in `text`, "") or ([], why) naming the field and the term.

    Terms are separated by commas or spaces; a whole number is a seed (every model and step of it),
    anything else must be a sample id of the table (`teacher-12-0`). At most MAX_FIND_TERMS terms.
    """
    if text is None or not isinstance(text, str) or not text.strip():
        return [], "find: type a seed or a sample id"
    terms = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if len(terms) > MAX_FIND_TERMS:
        return [], f"find: at most {MAX_FIND_TERMS} seeds or sample ids at once, got {len(terms)}"
    rows: list[int] = []
    seeds = frame["seed"].to_numpy()
    ids = frame["sample_id"].to_numpy()
    for term in terms:
        if re.fullmatch(r"[+-]?\d+(\.\d*)?", term):
            seed, why = parse_seed(term)
            if seed is None:
                return [], f"find: {term[:30]!r}: {why}"
            hit = np.flatnonzero(seeds == seed)
            if not len(hit):
                return [], f"find: seed {seed} is not in this run ({len(np.unique(seeds)):,} seeds, " \
                           f"{int(seeds.min())} .. {int(seeds.max())})"
        else:
            hit = np.flatnonzero(ids == term)
            if not len(hit):
                return [], f"find: {term[:40]!r} is neither a seed nor a sample id of this run (e.g. {ids[0]})"
        rows.extend(int(r) for r in hit)
    return sorted(set(rows)), ""


def zoom_box(xy: np.ndarray, extent: np.ndarray) -> tuple[list[float], list[float]]:
    """x and y ranges around points `xy` [n, 2]: their box, padded by 30% and to at least 8% of the map's
    `extent` ([[xmin, ymin], [xmax, ymax]]), so one point gets a readable neighbourhood."""
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(extent[1] - extent[0], 1e-9)
    half = np.maximum((hi - lo) * 0.65, span * 0.04)
    centre = (lo + hi) / 2
    return [float(centre[0] - half[0]), float(centre[0] + half[0])], [float(centre[1] - half[1]),
                                                                        float(centre[1] + half[1])]


def map_frame(c: AppContext, map_id) -> pd.DataFrame | None:
    if c.frame is None:
        return None
    return c.maps.frame(map_id) if c.maps is not None else c.frame


def current_map(c: AppContext, map_id) -> str:
    return c.maps.get(map_id).id if c.maps is not None else MAIN


def find(c: AppContext, trigger, _go, _submit, _sel, _reset, text, selection, map_id, zoom) -> tuple:
    """(found rows, zoom store, message) for find / Enter, "zoom to selection" or "reset zoom"."""
    frame = map_frame(c, map_id)
    if frame is None:
        raise PreventUpdate
    mid = current_map(c, map_id)
    rev = int((zoom or {}).get("rev", 0)) + 1
    if trigger == ID.zoom_reset:
        return [], {"map": mid, "rev": rev, "x": None, "y": None}, ""
    if trigger == ID.zoom_selection:
        rows = [r for r in c.valid_rows(selection or []) if r in frame.index]
        if not rows:
            return no_update, no_update, "zoom to selection: select points with the box or lasso first"
        message = f"zoomed to the {len(rows):,} selected points"
        found = no_update
    else:
        rows, why = parse_find(text, c.frame)
        if why:
            _notify(why)
            return [], no_update, why
        held = [r for r in rows if r in frame.index]
        if not held:
            return [], no_update, f"found {len(rows)} point(s), none of them on this map: switch to the main map"
        message = f"found {len(held)} point(s)" + (f" ({len(rows) - len(held)} not on this map)"
                                                   if len(held) < len(rows) else "")
        rows = found = held
    xy = frame.loc[rows, ["umap_x", "umap_y"]].to_numpy(float)
    all_xy = frame[["umap_x", "umap_y"]].to_numpy(float)
    x, y = zoom_box(xy, np.stack([all_xy.min(0), all_xy.max(0)]))
    return found, {"map": mid, "rev": rev, "x": x, "y": y}, message


def _notify(message: str) -> None:
    """The notice bar too (as the guard says what it refuses), when called by Dash; a direct call just returns."""
    with contextlib.suppress(MissingCallbackContextException):
        notify(message)


# -- the trajectory -----------------------------------------------------------------------------------

def placed_trajectory(c: AppContext, ready, map_id):
    """(Placed, Trajectory) of the teacher run in `ready` on the map, or (None, why) when there is none."""
    if not ready or c.teacher is None or c.maps is None or ready.get("model") != c.teacher:
        return None, None
    why = c.maps.why_not()
    if why:
        return None, why
    req = Request.make(ready["seed"], ready["class_label"], ready["layers"], ready["reduction"])
    traj = c.inspector.cached_trajectory(c.teacher, req)
    if traj is None:
        return None, "the teacher's run is no longer in the server's cache: click the point again to draw it"
    if not traj.pooled:
        return None, "the teacher does not know the run's layers: its trajectory cannot be placed on this map"
    try:
        return (c.maps.place(current_map(c, map_id), traj, c.inspector.trajectory_key(c.teacher, req)), traj), None
    except UserError as e:
        return None, str(e)


def trajectory_traces(placed, traj, step: int | None) -> list[go.Scattergl]:
    """The path with a marker per step (hollow: beyond the map's data) and the current step's marker."""
    n = len(placed.xy)
    k = min(max(int(step or 1), 1), n) - 1
    text = [f"step {i + 1} · σ {traj.steps[i].sigma:.3g}<br>nearest row at {placed.distance[i]:.3g} "
            f"(map rows: {placed.typical:.3g})" + (" · beyond the map's data" if placed.far[i] else "")
            for i in range(n)]
    path = go.Scattergl(
        x=placed.xy[:, 0], y=placed.xy[:, 1], mode="lines+markers", name=PATH, text=text, hoverinfo="text",
        line=dict(color="rgba(20,20,20,0.75)", width=2),
        marker=dict(size=9, color=list(range(1, n + 1)), colorscale="Viridis", cmin=1, cmax=max(n, 2),
                    symbol=["circle-open" if f else "circle" for f in placed.far], line=dict(width=1.5,
                                                                                               color="#111")))
    marker = go.Scattergl(x=[placed.xy[k, 0]], y=[placed.xy[k, 1]], mode="markers", name=MARKER, hoverinfo="skip",
                          marker=dict(size=20, symbol="star", color="#ffd400", line=dict(width=2, color="#111")))
    return [path, marker]


def decorate(c: AppContext, fig: go.Figure, frame: pd.DataFrame, map_id, found=None, zoom=None, ready=None,
             step=None) -> go.Figure:
    """The scatter's last three traces (found ring, trajectory path, current-step marker; empty when there is
    nothing to show) and the zoom; the view's uirevision follows the map and the zoom's revision."""
    rows = [r for r in c.valid_rows(found or []) if r in frame.index]
    ring = go.Scattergl(x=frame.loc[rows, "umap_x"].to_numpy(), y=frame.loc[rows, "umap_y"].to_numpy(),
                        mode="markers", name=FOUND, hoverinfo="skip", showlegend=bool(rows),
                        marker=dict(size=18, symbol="circle-open", color="#e4007c", line=dict(width=3)))
    got, _ = placed_trajectory(c, ready, map_id)
    traces = trajectory_traces(*got, step) if got else [
        go.Scattergl(x=[], y=[], name=PATH, showlegend=False), go.Scattergl(x=[], y=[], name=MARKER, showlegend=False)]
    fig.add_traces([ring, *traces])
    mid = current_map(c, map_id)
    if zoom and zoom.get("map") == mid:
        fig.update_layout(uirevision=f"{mid}-{zoom.get('rev', 0)}")
        if zoom.get("x") and zoom.get("y"):
            fig.update_xaxes(range=zoom["x"], autorange=False)
            fig.update_yaxes(range=zoom["y"], autorange=False)
    else:
        fig.update_layout(uirevision=mid)
    if mid != MAIN:
        fig.update_layout(title_text=f"{fig.layout.title.text} · map {c.maps.get(mid).name}")
    return fig


def draw_trajectory(c: AppContext, ready, step, map_id):
    """A Patch of the figure's last two traces (the path, and the marker on the slider's step) when a teacher run
    finishes (or is reset by a new click) and when the slider moves: the scatter itself is not redrawn. One
    callback for both, so the marker cannot be left on the step a run ended on when the slider moved meanwhile
    (two Patches of the same trace could arrive in either order)."""
    if c.frame is None:
        raise PreventUpdate      # no scatter, no traces to patch
    got, _ = placed_trajectory(c, ready, map_id)
    traces = trajectory_traces(*got, step) if got else [
        go.Scattergl(x=[], y=[], name=PATH, showlegend=False), go.Scattergl(x=[], y=[], name=MARKER, showlegend=False)]
    patch = Patch()
    patch["data"][-2] = traces[0].to_plotly_json()
    patch["data"][-1] = traces[1].to_plotly_json()
    return patch


def trajectory_note(c: AppContext, step, ready, map_id) -> str:
    """One line on the drawn trajectory: what it is, how it was placed, the current step's nearest row."""
    got, why = placed_trajectory(c, ready, map_id)
    if not got:
        return why or ("The teacher's trajectory appears on the map when its run finishes (click a point)."
                       if c.teacher else "")
    placed, traj = got
    n = len(placed.xy)
    k = min(max(int(step or 1), 1), n) - 1
    near = c.frame.iloc[int(placed.nearest[k])]
    far = int(placed.far.sum())
    return (f"Teacher trajectory of seed {ready['seed']} (class {ready['class_label']}), {n} steps, placed by "
            f"their nearest rows of this map in the run's PCA space (no refit; one sample: descriptive). "
            f"Step {k + 1} (σ {traj.steps[k].sigma:.3g}): nearest row {near['sample_id']} at distance "
            f"{placed.distance[k]:.3g}; the map's rows lie within {placed.typical:.3g} of a neighbour (95%)."
            + (f" {far} step(s) lie beyond that (hollow markers): the map was not made from rows like them."
               if far else ""))


def choose_map(c: AppContext, value) -> tuple[str, str]:
    """(map-choice store, the line saying what the map embeds) for the switcher's value."""
    if c.maps is None:
        return MAIN, ""
    m = c.maps.get(value)
    return m.id, f"{m.about} ({len(m.rows):,} points)."


# -- layout -------------------------------------------------------------------------------------------

BUTTON = {"marginRight": "6px"}


def layout(info: LayoutInfo) -> list:
    maps = list(info.maps) or [(MAIN, "main")]
    return [html.Div([
        html.Div([
            html.Label("map", style={**SMALL, "marginRight": "6px"}),
            dcc.Dropdown(id=ID.map_pick, options=[{"label": name, "value": ident} for ident, name in maps],
                         value=maps[0][0], clearable=False, style={"flex": "1 1 260px", "minWidth": "0"}),
        ], style={"display": "flex", "alignItems": "center"}),
        html.Div(id=ID.map_about, style={**SMALL, "margin": "4px 0 8px 0"}),
        html.Div([
            dcc.Input(id=ID.find_text, type="text", placeholder="find: seed(s) or sample id", maxLength=2000,
                      debounce=False, n_submit=0, style={"width": "210px", "marginRight": "6px"}),
            html.Button("find", id=ID.find_go, n_clicks=0, style=BUTTON),
            html.Button("zoom to selection", id=ID.zoom_selection, n_clicks=0, style=BUTTON),
            html.Button("reset zoom", id=ID.zoom_reset, n_clicks=0, style=BUTTON),
        ], style={"display": "flex", "flexWrap": "wrap", "gap": "4px 0"}),
        html.Div(id=ID.find_message, style={**ERROR, "color": "#555", "marginTop": "4px"}),
        html.Div([
            html.Span("teacher trajectory:", style={**SMALL, "marginRight": "6px"}),
            html.Button("◀ step", id=ID.traj_prev, n_clicks=0, style=BUTTON),
            html.Button("▶ play", id=ID.traj_play, n_clicks=0, style=BUTTON),
            html.Button("step ▶", id=ID.traj_next, n_clicks=0, style=BUTTON),
            dcc.Interval(id=ID.traj_timer, interval=PLAY_MS, disabled=True),
        ], style={"display": "flex", "alignItems": "center", "marginTop": "8px", "flexWrap": "wrap"}),
        html.Div(id=ID.traj_note, style={**SMALL, "marginTop": "4px"}),
        html.Div("Highlight classes in context with \"colour these classes\" above (the rest stay, in grey).",
                 style={**SMALL, "marginTop": "4px"}),
        dcc.Store(id=ID.map_choice, storage_type="memory", data=maps[0][0]),
        dcc.Store(id=ID.map_zoom, storage_type="memory"),
        dcc.Store(id=ID.found, storage_type="memory", data=[]),
    ], style=BOX, id=ID.explore)]


# -- the browser's part: play and step move the slider ------------------------------------------------

STEP_JS = """
function(_prev, _next, _tick, value, max, disabled) {
    const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
    if (disabled) { return window.dash_clientside.no_update; }
    const v = value || 1, top = max || 1;
    if (trig.some(p => p.startsWith('traj-prev'))) { return Math.max(1, v - 1); }
    if (trig.some(p => p.startsWith('traj-next'))) { return Math.min(top, v + 1); }
    return v >= top ? window.dash_clientside.no_update : v + 1;
}
"""

PLAY_JS = """
function(_n, _tick, disabled, value, max) {
    const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
    const top = max || 1;
    if (trig.some(p => p.startsWith('traj-timer'))) {
        return (value || 1) >= top ? [true, '▶ play'] : window.dash_clientside.no_update;
    }
    if (disabled) { return [false, '❚❚ pause']; }
    return [true, '▶ play'];
}
"""

RESTART_JS = """
function(n, value, max) {
    return n && (value || 1) >= (max || 1) ? 1 : window.dash_clientside.no_update;
}
"""


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.map_choice, "data"), Output(ID.map_about, "children"),
                 Input(ID.map_pick, "value"))(bind(choose_map, c))
    app.callback(Output(ID.found, "data"), Output(ID.map_zoom, "data"), Output(ID.find_message, "children"),
                 Input(ID.find_go, "n_clicks"), Input(ID.find_text, "n_submit"), Input(ID.zoom_selection, "n_clicks"),
                 Input(ID.zoom_reset, "n_clicks"), State(ID.find_text, "value"), State(ID.selection, "data"),
                 State(ID.map_choice, "data"), State(ID.map_zoom, "data"),
                 prevent_initial_call=True)(bind(find, c, triggered=True))
    app.callback(Output(ID.scatter, "figure", allow_duplicate=True), Input(ID.trajectory_ready, "data"),
                 Input(ID.slider, "value"), State(ID.map_choice, "data"),
                 prevent_initial_call=True)(bind(draw_trajectory, c))
    app.callback(Output(ID.traj_note, "children"), Input(ID.slider, "value"), Input(ID.trajectory_ready, "data"),
                 Input(ID.map_choice, "data"))(bind(trajectory_note, c))
    app.clientside_callback(PLAY_JS, Output(ID.traj_timer, "disabled"), Output(ID.traj_play, "children"),
                            Input(ID.traj_play, "n_clicks"), Input(ID.traj_timer, "n_intervals"),
                            State(ID.traj_timer, "disabled"), State(ID.slider, "value"), State(ID.slider, "max"),
                            prevent_initial_call=True)
    app.clientside_callback(RESTART_JS, Output(ID.slider, "value", allow_duplicate=True),
                            Input(ID.traj_play, "n_clicks"), State(ID.slider, "value"), State(ID.slider, "max"),
                            prevent_initial_call=True)
    app.clientside_callback(STEP_JS, Output(ID.slider, "value", allow_duplicate=True),
                            Input(ID.traj_prev, "n_clicks"), Input(ID.traj_next, "n_clicks"),
                            Input(ID.traj_timer, "n_intervals"), State(ID.slider, "value"), State(ID.slider, "max"),
                            State(ID.slider, "disabled"), prevent_initial_call=True)
