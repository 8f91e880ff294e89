"""The UMAP scatter: colouring, class and model filters, seed links, hover thumbnails, and the click.

Layout: the controls box (colour by, class filter, the classes to colour and the palette, model
toggle, seed links) and the scatter box (the WebGL graph and its tooltip). Figures: `scatter_figure`
(every point carries its row number as customdata) and `hover_card`. Callbacks, each
`fn(ctx, *inputs) -> outputs`:

- `draw`: the figure for the chosen colouring and filters. Class colours: stable per class while the
  visible classes fit the palette (94 colours, or 8 colour-blind-safe ones); the classes the user picks
  to colour get distinct colours and the rest turn grey, and so do all of them when there are more
  classes than colours and none is picked (repeated colours would pair unrelated classes);
- `hover`: the tooltip (thumbnail from `/thumbs/`, class name, seed) of the point under the mouse (the
  scatter's hoverData through the `hover-point` store, which drops the hovers of a mouse that did not
  move); a click, a zoom or a resize hides it (`HIDE_TOOLTIP_JS`), so it never outlives its point;
- `choose`: a clicked point, or the seed and class typed in the panels' box with "generate", goes
  into the tab's `clicked` store, which the panels (`visualizer.app.panels`) regenerate.

Row numbers coming from the browser are checked (`AppContext.row`) before use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate
from plotly.colors import qualitative

from visualizer.app import explore, overlays, overview
from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.thumbs import thumb_url
from visualizer.app.ui import BOX, SMALL, empty_figure, parse_seed

# Stable colours: class c gets PALETTE[c % len] whatever is filtered, so colours do not reshuffle (unless two
# visible classes would share one: then they go by rank).
PALETTE: tuple[str, ...] = tuple(dict.fromkeys(
    qualitative.Plotly + qualitative.D3 + qualitative.Dark24 + qualitative.Light24 + qualitative.Alphabet
))
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
PALETTES = {"default": PALETTE, "colour-blind": OKABE_ITO}     # Okabe & Ito (2008): safe for colour-blind eyes
PALETTE_LABELS = {"default": f"many ({len(PALETTE)})", "colour-blind": "colour-blind safe (8)"}
GREY = "rgba(160, 160, 160, 0.45)"
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
MODEL_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x")
MAX_LEGEND_CLASSES = 40     # up to this many visible classes get one legend entry each
COLOUR_MODES = {"class": "class", "model": "model", "sigma": "noise level σ"}
TOOLTIP_FALLBACK_BBOX = {"x0": 0, "x1": 0, "y0": 0, "y1": 0}


# -- figures ------------------------------------------------------------------------------------------

def class_colour(label: int, palette: str = "default") -> str:
    colours = PALETTES.get(palette, PALETTE)
    return colours[int(label) % len(colours)]


def class_colours(visible: Sequence[int], picked: Sequence[int] | None = None,
                  palette: str = "default") -> tuple[dict[int, str], str]:
    """(class -> colour for the `visible` classes, a note for the title).

    Picked classes get the palette in pick order and the rest grey; with nothing picked, every class keeps
    its stable colour while they fit the palette, and all are grey when they do not.
    """
    colours = PALETTES.get(palette, PALETTE)
    visible = [int(v) for v in visible]
    picked = [int(p) for p in dict.fromkeys(picked or []) if int(p) in set(visible)]
    if picked:
        out = dict.fromkeys(visible, GREY)
        out.update({p: colours[i % len(colours)] for i, p in enumerate(picked)})
        note = "" if len(picked) <= len(colours) else f"; more classes picked than the {len(colours)} colours"
        return out, note
    if len(visible) > len(colours):
        return dict.fromkeys(visible, GREY), (f"; {len(visible):,} classes, {len(colours)} colours: pick classes "
                                               "to colour them")
    if len({v % len(colours) for v in visible}) == len(visible):
        return {v: colours[v % len(colours)] for v in visible}, ""
    return {v: colours[i] for i, v in enumerate(sorted(visible))}, ""


def _model_style(models: Sequence[str]) -> dict[str, tuple[str, str]]:
    return {m: (MODEL_COLOURS[i % len(MODEL_COLOURS)], MODEL_SYMBOLS[i % len(MODEL_SYMBOLS)])
            for i, m in enumerate(models)}


def filter_rows(frame: pd.DataFrame, classes: Sequence[int] | None, models: Sequence[str] | None) -> pd.DataFrame:
    """Rows of the visible classes (all when None or empty) and models (none when an empty list)."""
    keep = np.ones(len(frame), dtype=bool)
    if classes:
        keep &= frame["class_label"].isin([int(c) for c in classes]).to_numpy()
    if models is not None:
        keep &= frame["model"].isin(list(models)).to_numpy()
    return frame[keep]


def link_segments(rows: pd.DataFrame, model_order: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """x, y of line segments joining each seed's points across models (first recorded step of each), NaN-separated."""
    first = rows.sort_values("step").drop_duplicates(["model", "seed"])
    rank = {m: i for i, m in enumerate(model_order)}
    first = first.assign(_rank=first["model"].map(rank)).sort_values(["seed", "_rank"])
    groups = first.groupby("seed", sort=False)
    counts = groups.size()
    shared = counts.index[counts >= 2]
    if not len(shared):
        return np.empty(0), np.empty(0)
    chained = first[first["seed"].isin(shared)]
    xs, ys = [], []
    for _, g in chained.groupby("seed", sort=False):
        xs.append(np.append(g["umap_x"].to_numpy(float), np.nan))
        ys.append(np.append(g["umap_y"].to_numpy(float), np.nan))
    return np.concatenate(xs), np.concatenate(ys)


def scatter_figure(
    frame: pd.DataFrame,
    colour_by: str = "class",
    classes: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    link: bool = False,
    model_order: Sequence[str] | None = None,
    highlight: Sequence[int] | None = None,
    palette: str = "default",
    visible_classes: Sequence[int] | None = None,
) -> go.Figure:
    """WebGL scatter of the embeddings; every point carries its row number (frame position) as customdata.

    Hover labels are off: the app shows its own tooltip with the thumbnail. The model order fixes
    each model's symbol and colour, so they do not change when models are hidden. `highlight`: the
    classes to colour (the rest grey, drawn underneath); `palette`: a key of PALETTES. `visible_classes`: the
    classes the colours are chosen for (default: those of the rows drawn; a large map's zoomed-in markers pass
    all its visible classes, so they keep the overview's colours).
    """
    order = list(model_order or dict.fromkeys(frame["model"]))
    style = _model_style(order)
    rows = filter_rows(frame, classes, models)
    visible = sorted(int(v) for v in (rows["class_label"].unique() if visible_classes is None else visible_classes))
    colours, note = class_colours(visible, highlight, palette)
    picked = [v for v in dict.fromkeys(int(h) for h in highlight or []) if v in set(visible)]
    traces: list[go.Scattergl] = []
    if link and len(rows):
        lx, ly = link_segments(rows, order)
        if len(lx):
            traces.append(go.Scattergl(x=lx, y=ly, mode="lines", name="same seed", hoverinfo="skip",
                                       line=dict(color="rgba(90,90,90,0.35)", width=1)))
    common = dict(mode="markers", hoverinfo="none")
    symbols = (lambda g: [style[m][1] for m in g["model"]] if len(order) > 1 else "circle")  # noqa: E731
    if colour_by == "class" and (picked or len(visible) > len(PALETTES.get(palette, PALETTE))):
        rest = rows[~rows["class_label"].isin(picked)]
        for model in order:            # grey underneath, one trace per model (its symbol)
            g = rest[rest["model"] == model]
            if len(g):
                name = model if not picked else "other classes" if len(order) == 1 else f"{model} · other classes"
                traces.append(go.Scattergl(
                    x=g["umap_x"].to_numpy(), y=g["umap_y"].to_numpy(), customdata=g.index.tolist(), name=name,
                    marker=dict(color=GREY, size=5, symbol=style[model][1]), **common))
        for label in picked:
            g = rows[rows["class_label"] == label]
            traces.append(go.Scattergl(
                x=g["umap_x"].to_numpy(), y=g["umap_y"].to_numpy(), customdata=g.index.tolist(),
                name=f"{label} · {g['class_name'].iloc[0]}", legendgroup=str(label), **common,
                marker=dict(color=colours[label], size=8, opacity=0.95, symbol=symbols(g),
                            line=dict(width=0.5, color="#333"))))
    elif colour_by == "class" and rows["class_label"].nunique() <= MAX_LEGEND_CLASSES:
        for label, g in rows.groupby("class_label", sort=True):
            name = f"{label} · {g['class_name'].iloc[0]}"
            traces.append(go.Scattergl(
                x=g["umap_x"].to_numpy(), y=g["umap_y"].to_numpy(), customdata=g.index.tolist(), name=name,
                marker=dict(color=colours[int(label)], size=7, opacity=0.85, symbol=symbols(g)),
                legendgroup=str(label), **common))
    else:
        shared_range = None
        if colour_by == "sigma" and len(rows):
            logs = np.log10(rows["sigma"].clip(lower=1e-6).to_numpy())
            shared_range = (float(logs.min()), float(max(logs.max(), logs.min() + 1e-6)))
        for i, (model, g) in enumerate((m, rows[rows["model"] == m]) for m in order):
            if not len(g):
                continue
            colour, symbol = style[model]
            marker = dict(size=6, opacity=0.8, symbol=symbol, color=colour)
            if colour_by == "class":
                marker["color"] = [colours[int(c)] for c in g["class_label"]]
            elif colour_by == "sigma":
                marker.update(color=np.log10(g["sigma"].clip(lower=1e-6).to_numpy()), colorscale="Viridis",
                              cmin=shared_range[0], cmax=shared_range[1],
                              showscale=i == 0, colorbar=dict(title="log10 σ", thickness=12))
            traces.append(go.Scattergl(x=g["umap_x"].to_numpy(), y=g["umap_y"].to_numpy(),
                                       customdata=g.index.tolist(), name=model, marker=marker, **common))
    fig = go.Figure(traces)
    fig.update_layout(
        margin=dict(l=10, r=10, t=30, b=10), hovermode="closest", clickmode="event", dragmode="zoom",
        uirevision="scatter", legend=dict(itemsizing="constant", font=dict(size=11)),
        title=dict(text=f"{len(rows):,} of {len(frame):,} points" + (note if colour_by == "class" else ""),
                   font=dict(size=13), x=0.01),
        xaxis=dict(showticklabels=False, zeroline=False, title=None),
        yaxis=dict(showticklabels=False, zeroline=False, title=None),
        plot_bgcolor="white",
    )
    return fig


def hover_card(row: Mapping, url: str) -> html.Div:
    """The tooltip of a scatter point: thumbnail (the model's final sample), class, seed, and where the point's
    activations come from (steps counted from 1, as the panels count them)."""
    return html.Div([
        html.Img(src=url, style={"width": "96px", "height": "96px", "imageRendering": "pixelated",
                                 "display": "block"}),
        html.Div(f"{row['class_label']} · {row['class_name']}", style={"fontWeight": "600", "fontSize": "12px"}),
        html.Div(f"seed {row['seed']} · {row['model']} · final image",
                 style={"fontSize": "11px", "color": "#555"}),
        html.Div(f"point: activations at step {int(row['step']) + 1} (σ {row['sigma']:.3g})",
                 style={"fontSize": "11px", "color": "#555"}),
    ], className="hover-card")


# -- layout -------------------------------------------------------------------------------------------

def _controls(info: LayoutInfo) -> html.Div:
    class_options = [{"label": f"{c} · {name}", "value": c} for c, name in info.classes]
    return html.Div([
        html.Div([
            html.Label("colour by", style=SMALL),
            dcc.RadioItems(id=ID.colour_by, options=[{"label": v, "value": k} for k, v in COLOUR_MODES.items()],
                           value="class", inline=True, inputStyle={"marginRight": "4px"},
                           labelStyle={"marginRight": "12px"}),
        ]),
        html.Div([
            html.Label("classes (search by name or index; empty = all)", style=SMALL),
            dcc.Dropdown(id=ID.class_filter, options=class_options, multi=True, placeholder="all classes",
                         optionHeight=28),
        ], style={"marginTop": "6px"}),
        html.Div([
            html.Div([
                html.Label("colour these classes (the rest grey)", style=SMALL),
                dcc.Dropdown(id=ID.class_highlight, options=class_options, multi=True, optionHeight=28,
                             placeholder="none: every class its colour while they fit the palette"),
            ], style={"flex": "3 1 220px", "minWidth": "0"}),
            html.Div([
                html.Label("palette", style=SMALL),
                dcc.RadioItems(id=ID.palette, options=[{"label": v, "value": k} for k, v in PALETTE_LABELS.items()],
                               value="default", inputStyle={"marginRight": "4px"},
                               labelStyle={"display": "block", "fontSize": "12px"}),
            ], style={"flex": "1 1 140px"}),
        ], style={"display": "flex", "gap": "10px", "marginTop": "6px", "flexWrap": "wrap"}),
        html.Div([
            dcc.Checklist(id=ID.model_toggle, options=[{"label": m, "value": m} for m in info.embedding_models],
                          value=list(info.embedding_models), inline=True, inputStyle={"marginRight": "4px"},
                          labelStyle={"marginRight": "12px"}),
            dcc.Checklist(id=ID.link_seeds, options=[{"label": "link points of the same seed", "value": "link"}],
                          value=[], inline=True, inputStyle={"marginRight": "4px"}),
        ], style={"display": "flex", "gap": "20px", "marginTop": "6px", "flexWrap": "wrap"}),
    ], style=BOX)


def _graph(info: LayoutInfo) -> html.Div:
    return html.Div([
        dcc.Graph(id=ID.scatter, figure=empty_figure("loading…" if info.num_points else "no embeddings loaded"),
                  style={"height": "560px"}, clear_on_unhover=True,
                  config={"scrollZoom": True, "displaylogo": False,
                          "modeBarButtonsToAdd": ["select2d", "lasso2d"]}),
        dcc.Tooltip(id=ID.tooltip, direction="right", loading_text="", style={"padding": "4px"}),
        html.Div("Hover a point for its thumbnail; click it to regenerate it with the loaded models; "
                 "use box or lasso select (toolbar) for a gallery.", style=SMALL),
    ], style=BOX)


def layout(info: LayoutInfo) -> list:
    """The controls box, then the scatter box."""
    return [_controls(info), _graph(info)]


# -- callbacks ----------------------------------------------------------------------------------------

def draw(c: AppContext, colour_by, classes, models, link, highlight=None, palette="default", map_id=None, found=None,
         zoom=None, ready=None, step=None, contours=None, view=None) -> go.Figure:
    """The scatter for the chosen colouring, classes, models, seed links, coloured classes and palette, on the
    chosen map (`map-choice`), with the page's found points, zoom and teacher trajectory (`explore.decorate`:
    always the last three traces). `map_id` None (a caller outside the page): the main map, undecorated. Before
    those: the map's real images and, with `contours` ["on"], each model's density contours (`overlays`).
    More visible points than the context's `exact_limit`: the overview image of the `view` (the `scatter-view`
    store), or the markers of a view that holds at most the limit (`_large_map`, `visualizer.app.overview`)."""
    if c.frame is None:
        return empty_figure("no embeddings loaded: start with --embeddings CSV", 400)
    frame = explore.map_frame(c, map_id)
    fig = _large_map(c, frame, colour_by, classes, models, link, highlight, palette, map_id, view)
    if fig is None and _view_only():
        raise PreventUpdate          # a small map's markers are all drawn: a zoom changes nothing here
    if fig is None:
        fig = scatter_figure(frame, colour_by, classes, models, bool(link), c.model_order, highlight,
                             palette if palette in PALETTES else "default")
    fig.add_traces(overlays.traces(c, frame, map_id, models, classes, contours,
                                   {m: s[0] for m, s in _model_style(c.model_order).items()}))
    return fig if map_id is None else explore.decorate(c, fig, frame, map_id, found, zoom, ready, step)


def _view_only() -> bool:
    """True when the scatter-view store alone triggered this callback (a zoom or pan); False outside Dash."""
    try:
        ids = dash.ctx.triggered_prop_ids
    except Exception:  # noqa: BLE001 - no callback context: a direct call
        return False
    return bool(ids) and all(k == f"{ID.scatter_view}.data" for k in ids)


def _large_map(c: AppContext, frame: pd.DataFrame, colour_by, classes, models, link, highlight, palette, map_id,
               view) -> go.Figure | None:
    """None when the visible points fit as markers (drawn as ever); else the markers of a view holding at most
    `c.exact_limit` of them (and a margin around it), or the overview image of the view (issue 21)."""
    rows = filter_rows(frame, classes, models)
    if not overview.overview_needed(c, len(rows)):
        return None
    palette = palette if palette in PALETTES else "default"
    x, y = rows["umap_x"].to_numpy(float), rows["umap_y"].to_numpy(float)
    v = overview.view_of(view, explore.current_map(c, map_id), overview.View.around(x, y))
    visible = sorted(int(k) for k in rows["class_label"].unique())
    if v is not None:
        near = v.grown(overview.MARGIN).holds(x, y)
        if int(near.sum()) <= c.exact_limit:
            fig = scatter_figure(rows[near], colour_by, classes, models, bool(link), c.model_order, highlight, palette,
                                 visible_classes=visible)
            fig.update_layout(title_text=f"{int(near.sum()):,} points around this view, of {len(rows):,} shown "
                                         f"({len(frame):,} in all) · markers: zoom out for the overview")
            fig.update_xaxes(range=[v.x0, v.x1], autorange=False)
            fig.update_yaxes(range=[v.y0, v.y1], autorange=False)
            return fig
    order = list(c.model_order or dict.fromkeys(frame["model"]))
    note = "; seed links are drawn with the markers (zoom in)" if link else ""
    if colour_by == "sigma":
        logs = np.log10(rows["sigma"].clip(lower=1e-6).to_numpy())
        low, high = float(logs.min()), float(max(logs.max(), logs.min() + 1e-6))
        return overview.figure(rows, len(frame), v, None, None, sigma=(logs, low, high), note=note,
                               limit=c.exact_limit)
    if colour_by == "model":
        style = _model_style(order)
        colour_of = {m: style[m][0] for m in order}
        codes, colours = overview.colour_codes(rows["model"].to_numpy(), colour_of, order)
        legend = [(m, colour_of[m]) for m in order if models is None or m in models]
        return overview.figure(rows, len(frame), v, codes, colours, legend, note=note, limit=c.exact_limit)
    colour_of, extra = class_colours(visible, highlight, palette)
    picked = [p for p in dict.fromkeys(int(h) for h in highlight or []) if p in set(visible)]
    layered = [k for k in visible if k not in set(picked)] + picked          # picked classes on top
    codes, colours = overview.colour_codes(rows["class_label"].to_numpy(), colour_of, layered)
    named = picked or (visible if len(visible) <= MAX_LEGEND_CLASSES and not extra else [])
    legend = [(f"{k} · {c.class_name(k)}", colour_of[k]) for k in named]
    return overview.figure(rows, len(frame), v, codes, colours, legend, note=extra + note, limit=c.exact_limit)


def hover(c: AppContext, hover_data) -> tuple:
    """(show, bbox, children) of the tooltip for the point under the mouse; hidden when there is none."""
    point = (hover_data or {}).get("points", [{}])[0]
    r = c.row(point.get("customdata"))
    if r is None:
        card = overlays.real_card(c, point.get("customdata"))      # a real image on a probe map, or nothing
        return (True, point.get("bbox", TOOLTIP_FALLBACK_BBOX), card) if card else (False, no_update, no_update)
    return True, point.get("bbox", TOOLTIP_FALLBACK_BBOX), hover_card(r, thumb_url(r["image_path"]))


def choose(c: AppContext, trigger, click_data, _n, seed, class_label) -> tuple[dict, int, int]:
    """(the `clicked` store, seed picker, class picker) for a click on the scatter (`trigger` = ID.scatter)
    or for "generate" with the typed seed and class; PreventUpdate when there is nothing to regenerate."""
    if trigger == ID.scatter:
        point = (click_data or {}).get("points", [{}])[0]
        r = c.row(point.get("customdata"))
        if r is None:
            raise PreventUpdate
        chosen = {"seed": int(r["seed"]), "class_label": int(r["class_label"]), "sample_id": r["sample_id"],
                  "model": r["model"], "row": int(point["customdata"])}
    else:
        seed, _ = parse_seed(seed)     # the panels' box says why a seed is refused
        if seed is None or class_label is None:
            raise PreventUpdate
        chosen = {"seed": seed, "class_label": int(class_label), "sample_id": None, "model": None}
    chosen["clicked_at"] = time.time()
    return chosen, chosen["seed"], chosen["class_label"]


# A click, a zoom/pan (relayout) or a window resize moves the points under a tooltip, or means the user is
# done pointing: the tooltip goes, with the hover it showed (so a hover the server answers late, a request
# still in flight at the click, is superseded rather than shown), and hovers are not passed on until the
# mouse really moves (to a new position: the browser's own re-hover after a layout change comes at the
# same one; HOVER_JS). A tooltip only names a point the user points at.
HIDE_TOOLTIP_JS = """
function(_click, relayout) {
    const gone = [false, null];
    if (!window.__vizTooltip) {
        window.__vizTooltip = true;
        let last = null;
        document.addEventListener('mousemove', function(e) {
            if (!last || e.clientX !== last[0] || e.clientY !== last[1]) { window.__vizStill = false; }
            last = [e.clientX, e.clientY];
        }, true);
        window.addEventListener('resize', function() {
            window.__vizStill = true;
            window.dash_clientside.set_props('hover-point', {data: null});
            window.dash_clientside.set_props('hover-tip', {show: false});
        });
    }
    const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
    const sizing = relayout && Object.keys(relayout).every(k => k === 'autosize');   // the plot's own first layout
    if (trig.every(p => p.endsWith('.relayoutData')) && sizing) { return window.dash_clientside.no_update; }
    window.__vizStill = true;
    return gone;
}
"""

HOVER_JS = """
function(hover) {
    if (hover && window.__vizStill) { return window.dash_clientside.no_update; }
    return hover;
}
"""


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.scatter, "figure"), Input(ID.colour_by, "value"), Input(ID.class_filter, "value"),
                 Input(ID.model_toggle, "value"), Input(ID.link_seeds, "value"), Input(ID.class_highlight, "value"),
                 Input(ID.palette, "value"), Input(ID.map_choice, "data"), Input(ID.found, "data"),
                 Input(ID.map_zoom, "data"), State(ID.trajectory_ready, "data"),
                 State(ID.slider, "value"), Input(ID.density_toggle, "value"),
                 Input(ID.scatter_view, "data"))(bind(draw, c))
    app.clientside_callback(HOVER_JS, Output(ID.hover_point, "data"), Input(ID.scatter, "hoverData"))
    app.callback(Output(ID.tooltip, "show"), Output(ID.tooltip, "bbox"), Output(ID.tooltip, "children"),
                 Input(ID.hover_point, "data"))(bind(hover, c))
    app.clientside_callback(HIDE_TOOLTIP_JS, Output(ID.tooltip, "show", allow_duplicate=True),
                            Output(ID.hover_point, "data", allow_duplicate=True),
                            Input(ID.scatter, "clickData"), Input(ID.scatter, "relayoutData"),
                            prevent_initial_call=True)
    app.callback(Output(ID.clicked, "data"), Output(ID.seed_input, "value"), Output(ID.class_input, "value"),
                 Input(ID.scatter, "clickData"), Input(ID.generate, "n_clicks"),
                 State(ID.seed_input, "value"), State(ID.class_input, "value"),
                 prevent_initial_call=True)(bind(choose, c, triggered=True))
