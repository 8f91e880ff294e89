"""Large maps (issue 21): an overview image above EXACT_LIMIT points, exact markers when zoomed in.

A million markers would take the page a minute to draw and hold gigabytes; so when the visible points
(after the class filter and the model toggle, on the current map) in the current view number more
than `AppContext.exact_limit` (EXACT_LIMIT by default), the scatter is:

- an image of the points (`inspection.density.render`: datashader aggregation, coloured as the
  markers would be: class colours, grey for unpicked classes with the picked ones on top, model
  colours, or mean log10 sigma through Viridis), placed as a layout image over the view's extent
  on the same axes as the markers;
- an invisible heatmap over it, one cell per few pixels, whose customdata is the row nearest each
  cell's centre (`density.cell_points`, on the server): hovering shows that row's thumbnail, and a
  click regenerates it, through the scatter's own hover and click callbacks;
- box and lasso selections send their geometry (plotly's `range` / `lassoPoints`), and the selection
  callback resolves the rows inside on the server (`density.in_box` / `in_lasso`,
  `selection.select`).

Zooming in (a drag, the wheel, find's zoom) sends the new view to the server (the `scatter-view`
store, written in the browser from `relayoutData` and `map-zoom`); once the view holds at most the
limit, the scatter draws the exact markers of the view (and a margin around it), hoverable and
selectable as on a small map. Find's ring, the teacher's trajectory and the map switcher draw over
both (`explore.decorate`), and the seed links are drawn only with markers.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc

from visualizer.app.context import EXACT_LIMIT, AppContext, LayoutInfo
from visualizer.app.ids import ID
from visualizer.inspection.density import View, cell_points, render, render_values

__all__ = ["EXACT_LIMIT", "View", "figure", "layout", "register", "view_of", "warm_up"]

IMAGE_SIZE = (720, 520)    # pixels of the overview image (the plot area is about this size)
CELL_PX = 4                # pixels per side of a hover cell
MARGIN = 0.1               # markers are sent for the view widened by this much each side (a pan shows them)
VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
           "#fde725"]


def view_of(view, map_id: str, whole: View) -> View | None:
    """The `scatter-view` store as a View of map `map_id`; None (the whole map) when it is of another map or
    says autorange on both axes. An axis without a range (autoranged) spans the whole map (`whole`). The
    store was checked by the guard (finite ranges of two numbers); reversed ranges are put in order."""
    if not isinstance(view, dict) or view.get("map") != map_id or not (view.get("x") or view.get("y")):
        return None
    x0, x1 = sorted(view["x"]) if view.get("x") else (whole.x0, whole.x1)
    y0, y1 = sorted(view["y"]) if view.get("y") else (whole.y0, whole.y1)
    if not (x1 > x0 and y1 > y0):
        return None
    return View(float(x0), float(x1), float(y0), float(y1))


def overview_needed(c: AppContext, visible: int) -> bool:
    return visible > c.exact_limit


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def colour_codes(keys: np.ndarray, colour_of: dict, order: Sequence) -> tuple[np.ndarray, list[str]]:
    """(int code per point, colours by code) for points keyed by `keys` (class or model), so that keys listed
    later in `order` get higher codes (they lie on top in a pixel); grey first."""
    colours: list[str] = []
    code_of_key = {}
    for k in order:                       # each distinct colour one code, in the order given
        col = colour_of[k]
        if col not in colours:
            colours.append(col)
        code_of_key[k] = colours.index(col)
    if np.issubdtype(np.asarray(keys).dtype, np.integer):      # class labels: a lookup table
        table = np.zeros(max([int(k) for k in code_of_key] + [int(np.max(keys, initial=0))]) + 1, np.int64)
        for k, code in code_of_key.items():
            table[int(k)] = code
        codes = table[np.asarray(keys, np.int64)]
    else:                                                      # model keys: one comparison per model
        codes = np.zeros(len(keys), np.int64)
        for k, code in code_of_key.items():
            codes[np.asarray(keys) == k] = code
    return codes, colours


def figure(rows: pd.DataFrame, total: int, view: View | None, codes: np.ndarray | None, colours: list[str] | None,
           legend: Sequence[tuple[str, str]] = (), sigma: tuple[np.ndarray, float, float] | None = None,
           note: str = "", limit: int = EXACT_LIMIT) -> go.Figure:
    """The overview of `rows` (the visible points of the map, umap_x/umap_y, row numbers as index) in `view`
    (None: the whole map): the image, the hover cells, legend entries (name, colour) without points."""
    x = rows["umap_x"].to_numpy(np.float64)
    y = rows["umap_y"].to_numpy(np.float64)
    whole = View.around(x, y)
    v = view or whole
    width, height = IMAGE_SIZE
    if sigma is not None:
        values, low, high = sigma
        png = render_values(x, y, values, VIRIDIS, low, high, v, width, height)
    else:
        png = render(x, y, codes, colours, v, width, height)
    nx, ny = width // CELL_PX, height // CELL_PX
    counts, rep = cell_points(x, y, rows.index.to_numpy(), v, nx, ny)
    dx, dy = (v.x1 - v.x0) / nx, (v.y1 - v.y0) / ny
    z = np.where(counts > 0, counts, np.nan).astype(np.float32)
    # empty cells get no hover (hoverongaps off); their customdata, one past the table, is refused if sent
    custom = np.where(rep >= 0, rep, total).astype(np.int32)
    catcher = go.Heatmap(z=z, x0=v.x0 + dx / 2, dx=dx, y0=v.y0 + dy / 2, dy=dy, customdata=custom,
                         hoverinfo="none", hoverongaps=False, showscale=False, opacity=0, zsmooth=False,
                         colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]], name="overview", showlegend=False)
    traces: list = [catcher]
    for name, colour in legend:
        traces.append(go.Scattergl(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                   marker=dict(color=colour, size=8)))
    if sigma is not None:
        traces.append(go.Scattergl(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                                   marker=dict(color=[sigma[1]], colorscale="Viridis", cmin=sigma[1], cmax=sigma[2],
                                               showscale=True, colorbar=dict(title="log10 σ", thickness=12))))
    fig = go.Figure(traces)
    shown = int(counts.sum())
    where = "" if view is None else f", {shown:,} in view"
    fig.update_layout(
        images=[dict(source=_data_uri(png), xref="x", yref="y", x=v.x0, y=v.y1, sizex=v.x1 - v.x0,
                     sizey=v.y1 - v.y0, sizing="stretch", layer="below")],
        margin=dict(l=10, r=10, t=30, b=10), hovermode="closest", clickmode="event", dragmode="zoom",
        uirevision="scatter", legend=dict(itemsizing="constant", font=dict(size=11), itemclick=False,
                                          itemdoubleclick=False),
        title=dict(text=f"{len(rows):,} of {total:,} points{where} · overview image: zoom in to under "
                        f"{limit:,} points for markers{note}", font=dict(size=13), x=0.01),
        xaxis=dict(showticklabels=False, zeroline=False, title=None, showgrid=False),
        yaxis=dict(showticklabels=False, zeroline=False, title=None, showgrid=False),
        plot_bgcolor="white",
    )
    if view is not None:
        fig.update_xaxes(range=[v.x0, v.x1], autorange=False)
        fig.update_yaxes(range=[v.y0, v.y1], autorange=False)
    else:
        fig.update_xaxes(range=[whole.x0, whole.x1])
        fig.update_yaxes(range=[whole.y0, whole.y1])
    return fig


def warm_up() -> None:
    """Compiles datashader's aggregation (numba, about 10 s once per process) before the first page asks."""
    x = np.linspace(0, 1, 64)
    render(x, x, np.zeros(64, np.int64), ["#000000"], View(0.0, 1.0, 0.0, 1.0), 16, 16)


# -- the view, kept in the browser ------------------------------------------------------------------

# The view the user looks at, for the server: from a zoom or pan (relayoutData: ranges, or autorange after
# a double click or "reset axes") and from find's zoom (map-zoom). Other relayouts (a drag mode, a
# selection drawn, the first autosize) change nothing.
VIEW_JS = """
function(relayout, zoom, mapId, view) {
    const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
    const rev = ((view && view.rev) || 0) + 1;
    const map = mapId || 'main';
    if (trig.some(p => p.startsWith('map-zoom'))) {
        if (!zoom) { return window.dash_clientside.no_update; }
        return {map: zoom.map, x: zoom.x, y: zoom.y, rev: rev};
    }
    if (!relayout) { return window.dash_clientside.no_update; }
    let x = view && view.map === map ? view.x : null, y = view && view.map === map ? view.y : null;
    let changed = false;
    const pair = (a, b) => (typeof a === 'number' && typeof b === 'number') ? [a, b] : null;
    const got = {x: x, y: y};
    for (const ax of ['x', 'y']) {
        const k = ax + 'axis.range';
        if ((k + '[0]') in relayout) { got[ax] = pair(relayout[k + '[0]'], relayout[k + '[1]']); changed = true; }
        if (Array.isArray(relayout[k])) { got[ax] = pair(relayout[k][0], relayout[k][1]); changed = true; }
        if (relayout[ax + 'axis.autorange']) { got[ax] = null; changed = true; }
    }
    x = got.x; y = got.y;
    if (!changed) { return window.dash_clientside.no_update; }
    return {map: map, x: x, y: y, rev: rev};
}
"""


def layout(info: LayoutInfo) -> list:
    """The view store (the page's stores hold the rest)."""
    return [dcc.Store(id=ID.scatter_view, storage_type="memory")]


def register(app: dash.Dash, c: AppContext) -> None:
    app.clientside_callback(VIEW_JS, Output(ID.scatter_view, "data"), Input(ID.scatter, "relayoutData"),
                            Input(ID.map_zoom, "data"), State(ID.map_choice, "data"), State(ID.scatter_view, "data"),
                            prevent_initial_call=True)
