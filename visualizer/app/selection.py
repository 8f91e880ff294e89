"""The selection: box or lasso on the scatter fills a gallery with class counts; export it as CSV.

Layout: one box with the summary line, the export button, the gallery with its pager (previous / next,
"121-240 of 873") and the class-counts chart. Figures: `gallery` (thumbnail cards, each saying which
model drew it: teacher or student) and `class_counts_figure`. Callbacks, each `fn(ctx, *inputs)`:

- `select(ctx, selected, classes, models, map_id)`: the scatter's selectedData -> (the tab's `selection`
  store of row numbers, class counts, summary, export button disabled?). The rows are the selected
  markers' customdata; a large map's overview image has no markers, so there the rows inside the box
  or lasso (selectedData's `range` / `lassoPoints`) among the visible points of the map (class filter,
  model toggle) are found on the server (`inspection.density`, issue 21);
- `page(ctx, trigger, rows, _prev, _next, shown)`: the gallery's page of PAGE_SIZE thumbnails (the first
  one for a new selection), the pager's line and buttons;
- `export_csv(ctx, n_clicks, rows)`: the selected rows of the table as `selection.csv`.

Row numbers coming from the browser are checked (`AppContext.valid_rows`) before use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from visualizer.app import explore
from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.thumbs import thumb_url
from visualizer.app.ui import BOX, SMALL, empty_figure
from visualizer.inspection.density import in_box, in_lasso

MAX_COUNTED_CLASSES = 30     # the class-counts chart shows the most frequent ones
LASSO_VERTICES = 2_000       # a longer lasso is thinned to this many evenly spaced vertices (bounded work)
PAGE_SIZE = 120              # thumbnails per gallery page


# -- figures ------------------------------------------------------------------------------------------

def class_counts_figure(counts: Mapping[str, int]) -> go.Figure:
    names = list(counts)[::-1]
    fig = go.Figure(go.Bar(x=[counts[n] for n in names], y=names, orientation="h", marker_color="#4c78a8",
                           hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_layout(height=max(160, 22 * len(names) + 60), margin=dict(l=10, r=10, t=30, b=30),
                      title=dict(text="selected points per class", font=dict(size=13), x=0.01),
                      yaxis=dict(automargin=True), plot_bgcolor="white")
    return fig


def gallery(items: Sequence[Mapping], limit: int | None = PAGE_SIZE) -> list:
    """Thumbnails of selected points: dicts with url, caption, model (the line under the caption: which
    model drew it) and title (the hover text); at most `limit` (None: all), with a line for the rest."""
    shown = items if limit is None else items[:limit]
    cards = [
        html.Figure([
            html.Img(src=it["url"], title=it.get("title", ""), className="thumb",
                     style={"width": "60px", "height": "60px", "imageRendering": "pixelated", "display": "block"}),
            html.Figcaption(it.get("caption", ""), style={"fontSize": "10px", "color": "#444"}),
            *([html.Figcaption(it["model"], className="gallery-model",
                               style={"fontSize": "10px", "color": "#777"})] if it.get("model") else []),
        ], className="gallery-item", style={"margin": "0", "width": "64px", "textAlign": "center"})
        for it in shown
    ]
    if limit is not None and len(items) > limit:
        cards.append(html.Div(f"… and {len(items) - limit:,} more (export the CSV for all)", className="more"))
    return cards


def pager_text(start: int, shown: int, total: int) -> str:
    """'121-240 of 873' (numbered from 1), or '' when one page holds them all."""
    if total <= PAGE_SIZE:
        return ""
    return f"{start + 1:,}-{start + shown:,} of {total:,}"


# -- layout -------------------------------------------------------------------------------------------

def layout(info: LayoutInfo) -> list:
    """The selection box (it needs nothing from `info`: it fills from the scatter)."""
    return [html.Div([
        html.Div([
            html.Div(id=ID.selection_summary, style=SMALL, children="Nothing selected."),
            html.Button("export selection (CSV)", id=ID.export_csv, n_clicks=0, disabled=True),
            dcc.Download(id=ID.csv_download),
        ], style={"display": "flex", "gap": "10px", "alignItems": "center"}),
        html.Div([
            html.Button("previous", id=ID.gallery_prev, n_clicks=0, disabled=True),
            html.Span(id=ID.gallery_pager, style=SMALL),
            html.Button("next", id=ID.gallery_next, n_clicks=0, disabled=True),
            dcc.Store(id=ID.gallery_page, storage_type="memory", data=0),
        ], className="viz-toolbar", style={"marginTop": "6px"}),
        html.Div([
            html.Div(id=ID.gallery, style={"display": "flex", "flexWrap": "wrap", "gap": "4px", "flex": "3",
                                           "alignContent": "flex-start", "maxHeight": "420px", "overflowY": "auto"}),
            html.Div(dcc.Graph(id=ID.class_counts, figure=empty_figure("class counts of the selection", 160),
                               config={"displayModeBar": False}), style={"flex": "2"}),
        ], style={"display": "flex", "gap": "10px", "marginTop": "8px"}),
    ], style=BOX)]


# -- callbacks ----------------------------------------------------------------------------------------

def geometry_rows(c: AppContext, selected, classes=None, models=None, map_id=None) -> list[int]:
    """Table rows inside a selection's box (`range`) or lasso (`lassoPoints`) among the visible points of the
    map: what an overview image's selection holds (issue 21). [] without geometry or on a small map, whose
    markers are all drawn (their customdata says what was selected)."""
    selected = selected or {}
    if c.frame is None or not (selected.get("range") or selected.get("lassoPoints")):
        return []
    frame = explore.map_frame(c, map_id)
    keep = np.ones(len(frame), bool)
    if classes:
        keep &= frame["class_label"].isin([int(k) for k in classes]).to_numpy()
    if models is not None:
        keep &= frame["model"].isin(list(models)).to_numpy()
    if int(keep.sum()) <= c.exact_limit:
        return []
    x, y = frame["umap_x"].to_numpy(float), frame["umap_y"].to_numpy(float)
    if selected.get("lassoPoints"):
        lx, ly = np.asarray(selected["lassoPoints"]["x"], float), np.asarray(selected["lassoPoints"]["y"], float)
        if len(lx) > LASSO_VERTICES:      # a mouse's lasso has a vertex per move: thinning barely moves its edge
            keep_at = np.linspace(0, len(lx) - 1, LASSO_VERTICES).round().astype(int)
            lx, ly = lx[keep_at], ly[keep_at]
        keep &= in_lasso(x, y, lx, ly)
    else:
        keep &= in_box(x, y, selected["range"]["x"], selected["range"]["y"])
    return frame.index.to_numpy()[keep].tolist()


def select(c: AppContext, selected, classes=None, models=None, map_id=None) -> tuple:
    """(rows, class counts, summary, export disabled) for the scatter's box or lasso selection."""
    rows = c.valid_rows(p.get("customdata") for p in (selected or {}).get("points", []))
    if not rows:
        rows = geometry_rows(c, selected, classes, models, map_id)
    if not rows:
        return [], empty_figure("class counts of the selection", 160), "Nothing selected.", True
    picked = c.frame.iloc[rows]
    counts = picked.groupby(["class_label", "class_name"]).size().sort_values(ascending=False)
    shown = {f"{label} · {name}": int(n) for (label, name), n in counts.head(MAX_COUNTED_CLASSES).items()}
    summary = f"{len(rows):,} points selected, {len(counts)} classes"
    return rows, class_counts_figure(shown), summary, False


def gallery_items(c: AppContext, rows: Sequence[int]) -> list[dict]:
    """The gallery's cards for table rows: thumbnail, class and seed, and the model that drew it."""
    picked = c.frame.iloc[list(rows)]
    return [{"url": thumb_url(r.image_path), "caption": f"{r.class_label} · seed {r.seed}", "model": str(r.model),
             "title": f"{r.class_name} · {r.model} · seed {r.seed}"} for r in picked.itertuples()]


def page(c: AppContext, trigger, rows, _prev=None, _next=None, shown=0) -> tuple:
    """(gallery, page, pager line, previous disabled, next disabled): PAGE_SIZE thumbnails of the selection;
    a new selection starts at its first page, the buttons move one page."""
    rows = c.valid_rows(rows or [])
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    at = shown if isinstance(shown, int) and not isinstance(shown, bool) else 0
    if trigger == ID.gallery_next:
        at += 1
    elif trigger == ID.gallery_prev:
        at -= 1
    else:
        at = 0
    at = min(max(at, 0), pages - 1)
    start = at * PAGE_SIZE
    chunk = rows[start:start + PAGE_SIZE]
    return (gallery(gallery_items(c, chunk), limit=None), at, pager_text(start, len(chunk), len(rows)),
            at == 0, at >= pages - 1)


def export_csv(c: AppContext, _n, rows) -> dict:
    """The download (dcc.Download data) of the selected rows as selection.csv; PreventUpdate when none."""
    rows = c.valid_rows(rows or [])
    if not rows:
        raise PreventUpdate
    picked = c.frame.iloc[rows]
    return dcc.send_data_frame(picked.to_csv, "selection.csv", index=False)


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.selection, "data"), Output(ID.class_counts, "figure"),
                 Output(ID.selection_summary, "children"), Output(ID.export_csv, "disabled"),
                 Input(ID.scatter, "selectedData"), State(ID.class_filter, "value"), State(ID.model_toggle, "value"),
                 State(ID.map_choice, "data"), prevent_initial_call=True)(bind(select, c))
    app.callback(Output(ID.gallery, "children"), Output(ID.gallery_page, "data"), Output(ID.gallery_pager, "children"),
                 Output(ID.gallery_prev, "disabled"), Output(ID.gallery_next, "disabled"),
                 Input(ID.selection, "data"), Input(ID.gallery_prev, "n_clicks"), Input(ID.gallery_next, "n_clicks"),
                 State(ID.gallery_page, "data"), prevent_initial_call=True)(bind(page, c, triggered=True))
    app.callback(Output(ID.csv_download, "data"), Input(ID.export_csv, "n_clicks"), State(ID.selection, "data"),
                 prevent_initial_call=True)(bind(export_csv, c))
