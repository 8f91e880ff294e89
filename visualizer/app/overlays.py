"""What the scatter draws over a map's points: real images on a probe map, and density contours per model (issue 16).

- **Real images** (a probe map made with `embed --probe ... --real`): one more group of points, black
  crosses, beside the models' points. They are not rows of the table: each carries customdata -(i + 1)
  for real image i (the guard allows exactly that range), so the table's callbacks (click, selection)
  skip them; hovering shows the real image, and clicking one shows it under the map (a real image has
  nothing to regenerate).
- **Density contours** ("density contours" toggle): per visible model, the contours of a smoothed 2-D
  histogram of its points on the current map (numpy's histogram2d, scipy's gaussian_filter with Scott's
  bandwidth, at most 2% of the map's width), drawn at the levels that enclose 20%, 50% and 80% of that
  model's points, in the model's colour. Descriptive: where each model's points concentrate on this 2-D
  layout, which distorts distances (UMAP), so compare the shapes, not the areas.

`traces(...)` returns the traces the scatter's `draw` adds before `explore.decorate` (whose three traces
stay last).
"""

from __future__ import annotations

from collections.abc import Sequence

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dcc, html
from scipy.ndimage import gaussian_filter

from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.thumbs import thumb_url
from visualizer.app.ui import SMALL
from visualizer.embeddings.maps import RealSet

GRID = 96                     # histogram cells per axis
MASS = (0.2, 0.5, 0.8)        # each contour encloses this share of the model's points
MAX_SMOOTH = 2.0              # the Gaussian's sd, in cells, at most (2% of the map's width)
REAL_COLOUR = "#111111"
DENSITY = "density"


# -- real images ----------------------------------------------------------------------------------------

def real_set(c: AppContext, map_id=None) -> RealSet | None:
    """The real images of map `map_id` (or, with None, of the run's first map that has any)."""
    if c.maps is None:
        return None
    if map_id is not None:
        return c.maps.get(map_id).real
    return next((m.real for m in c.maps.maps.values() if m.real is not None), None)


def real_count(c: AppContext) -> int:
    """The most real images any map of the run holds (the guard's bound on negative customdata)."""
    if c.maps is None:
        return 0
    return max((len(m.real.labels) for m in c.maps.maps.values() if m.real is not None), default=0)


def real_index(c: AppContext, customdata) -> int | None:
    """Real image i for a point's customdata -(i + 1); None for anything else."""
    real = real_set(c)
    if real is None or type(customdata) is not int or not -len(real.labels) <= customdata < 0:
        return None
    return -customdata - 1


def real_traces(c: AppContext, map_id, classes: Sequence[int] | None) -> list[go.Scattergl]:
    real = real_set(c, map_id)
    if real is None:
        return []
    keep = np.isin(real.labels, [int(v) for v in classes]) if classes else np.ones(len(real.labels), bool)
    idx = np.flatnonzero(keep)
    return [go.Scattergl(x=real.xy[idx, 0], y=real.xy[idx, 1], customdata=[-int(i) - 1 for i in idx],
                         mode="markers", hoverinfo="none", name=f"real images ({len(idx):,})",
                         marker=dict(symbol="cross-thin", size=8, color=REAL_COLOUR, opacity=0.8,
                                     line=dict(width=1.5, color=REAL_COLOUR)))]


def real_card(c: AppContext, customdata) -> html.Div | None:
    """The tooltip of a real point: its image and class (None when `customdata` is no real point)."""
    i = real_index(c, customdata)
    if i is None:
        return None
    real = real_set(c)
    label = int(real.labels[i])
    return html.Div([
        html.Img(src=thumb_url(real.thumbnail(i)), style={"width": "96px", "height": "96px",
                                                          "imageRendering": "pixelated", "display": "block"}),
        html.Div(f"{label} · {c.class_name(label)}", style={"fontWeight": "600", "fontSize": "12px"}),
        html.Div(f"real image #{i}", style={"fontSize": "11px", "color": "#555"}),
    ], className="hover-card")


def show_real(c: AppContext, click) -> list:
    """A clicked real point's image under the map (a real image has nothing to regenerate); empty otherwise."""
    point = (click or {}).get("points", [{}])[0]
    i = real_index(c, point.get("customdata"))
    if i is None:
        return []
    real = real_set(c)
    label = int(real.labels[i])
    return [html.Img(src=thumb_url(real.thumbnail(i)), id="real-view-image",
                     style={"width": "96px", "height": "96px", "imageRendering": "pixelated"}),
            html.Div(f"real image #{i}, class {label} · {c.class_name(label)} ({real.source}): a real image, so "
                     "there is nothing to regenerate", style=SMALL)]


# -- density contours -----------------------------------------------------------------------------------

def density_grid(xy: np.ndarray, extent: np.ndarray, grid: int = GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x centres, y centres, z [y, x]) of a Gaussian-smoothed 2-D histogram of `xy` over `extent`
    ([[xmin, ymin], [xmax, ymax]]), z summing to 1; the bandwidth is Scott's rule, n^(-1/6) sd per axis, at most
    MAX_SMOOTH cells."""
    xy = np.asarray(xy, float)
    edges = [np.linspace(extent[0][k], extent[1][k], grid + 1) for k in range(2)]
    counts, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=edges)
    cell = (np.asarray(extent[1], float) - np.asarray(extent[0], float)) / grid
    sd = xy.std(0) if len(xy) > 1 else cell
    # Scott's rule over the whole map oversmooths a map of separate clusters into one blob: at most MAX_SMOOTH cells
    sigma = np.clip(len(xy) ** (-1 / 6) * sd / np.maximum(cell, 1e-12), 0.5, MAX_SMOOTH)
    z = gaussian_filter(counts, sigma=sigma, mode="constant").T
    z = z / max(z.sum(), 1e-12)
    centres = [(e[:-1] + e[1:]) / 2 for e in edges]
    return centres[0], centres[1], z


def enclosed_mass(z: np.ndarray) -> np.ndarray:
    """Each cell's share of the mass in cells at least as dense: a contour of this at p encloses a share p."""
    order = np.argsort(z, axis=None)[::-1]
    mass = np.empty(z.size)
    mass[order] = np.cumsum(z.ravel()[order])
    return mass.reshape(z.shape)


def density_traces(frame: pd.DataFrame, models: Sequence[str] | None, model_colours: dict[str, str],
                   classes: Sequence[int] | None = None) -> list[go.Contour]:
    """Contour lines enclosing MASS of each visible model's points (its colour), on `frame`'s map."""
    if not len(frame):
        return []
    all_xy = frame[["umap_x", "umap_y"]].to_numpy(float)
    lo, hi = all_xy.min(0), all_xy.max(0)
    pad = (hi - lo) * 0.08 + 1e-6
    extent = np.stack([lo - pad, hi + pad])
    rows = frame[frame["class_label"].isin([int(v) for v in classes])] if classes else frame
    out = []
    for model in model_colours:
        if models is not None and model not in models:
            continue
        xy = rows.loc[rows["model"] == model, ["umap_x", "umap_y"]].to_numpy(float)
        if len(xy) < 10:
            continue
        x, y, z = density_grid(xy, extent)
        out.append(go.Contour(
            x=x, y=y, z=enclosed_mass(z), name=f"{model} {DENSITY} ({', '.join(f'{m:.0%}' for m in MASS)})",
            contours=dict(coloring="lines", start=MASS[0], end=MASS[-1], size=MASS[1] - MASS[0], showlabels=False),
            line=dict(color=model_colours[model], width=2), showscale=False, hoverinfo="skip", showlegend=True,
            colorscale=[[0, model_colours[model]], [1, model_colours[model]]],     # "lines" colours by the scale
            legendgroup=f"{DENSITY}-{model}"))
    return out


def traces(c: AppContext, frame: pd.DataFrame, map_id, models, classes, contours, model_colours: dict[str, str]):
    """Every overlay for the current map: real points (probe maps), then density contours when toggled on."""
    extra: list = real_traces(c, map_id, classes) if map_id is not None else []
    if contours and "on" in contours:
        extra += density_traces(frame, models, model_colours, classes)
    return extra


# -- layout and callbacks -------------------------------------------------------------------------------

def layout(info: LayoutInfo) -> list:
    return [html.Div([
        dcc.Checklist(id=ID.density_toggle, options=[
            {"label": "density contours per model (enclosing 20%, 50%, 80% of its points; descriptive)",
             "value": "on"}], value=[], inline=True, inputStyle={"marginRight": "4px"}, style=SMALL),
        html.Div(id=ID.real_view, style={"display": "flex", "gap": "8px", "alignItems": "center",
                                         "marginTop": "4px"}),
    ], style={"margin": "-4px 0 10px 0"})]


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.real_view, "children"), Input(ID.scatter, "clickData"),
                 prevent_initial_call=True)(bind(show_real, c))
