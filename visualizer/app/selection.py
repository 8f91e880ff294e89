"""The selection: box or lasso on the scatter fills a gallery with class counts; export it as CSV.

Layout: one box with the summary line, the export button, the gallery and the class-counts chart.
Figures: `gallery` (thumbnail cards) and `class_counts_figure`. Callbacks, each `fn(ctx, *inputs)`:

- `select(ctx, selected)`: the scatter's selectedData -> (the tab's `selection` store of row
  numbers, gallery, class counts, summary, export button disabled?);
- `export_csv(ctx, n_clicks, rows)`: the selected rows of the table as `selection.csv`.

Row numbers coming from the browser are checked (`AppContext.valid_rows`) before use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.thumbs import thumb_url
from visualizer.app.ui import BOX, SMALL, empty_figure

MAX_COUNTED_CLASSES = 30     # the class-counts chart shows the most frequent ones


# -- figures ------------------------------------------------------------------------------------------

def class_counts_figure(counts: Mapping[str, int]) -> go.Figure:
    names = list(counts)[::-1]
    fig = go.Figure(go.Bar(x=[counts[n] for n in names], y=names, orientation="h", marker_color="#4c78a8",
                           hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_layout(height=max(160, 22 * len(names) + 60), margin=dict(l=10, r=10, t=30, b=30),
                      title=dict(text="selected points per class", font=dict(size=13), x=0.01),
                      yaxis=dict(automargin=True), plot_bgcolor="white")
    return fig


def gallery(items: Sequence[Mapping], limit: int = 120) -> list:
    """Thumbnails of selected points: dicts with url, caption and title (the hover text)."""
    cards = [
        html.Figure([
            html.Img(src=it["url"], title=it.get("title", ""), className="thumb",
                     style={"width": "60px", "height": "60px", "imageRendering": "pixelated", "display": "block"}),
            html.Figcaption(it.get("caption", ""), style={"fontSize": "10px", "color": "#444"}),
        ], className="gallery-item", style={"margin": "0", "width": "64px", "textAlign": "center"})
        for it in items[:limit]
    ]
    if len(items) > limit:
        cards.append(html.Div(f"… and {len(items) - limit:,} more (export the CSV for all)", className="more"))
    return cards


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
            html.Div(id=ID.gallery, style={"display": "flex", "flexWrap": "wrap", "gap": "4px", "flex": "3",
                                           "alignContent": "flex-start", "maxHeight": "420px", "overflowY": "auto"}),
            html.Div(dcc.Graph(id=ID.class_counts, figure=empty_figure("class counts of the selection", 160),
                               config={"displayModeBar": False}), style={"flex": "2"}),
        ], style={"display": "flex", "gap": "10px", "marginTop": "8px"}),
    ], style=BOX)]


# -- callbacks ----------------------------------------------------------------------------------------

def select(c: AppContext, selected) -> tuple:
    """(rows, gallery, class counts, summary, export disabled) for the scatter's box or lasso selection."""
    rows = c.valid_rows(p.get("customdata") for p in (selected or {}).get("points", []))
    if not rows:
        return [], [], empty_figure("class counts of the selection", 160), "Nothing selected.", True
    picked = c.frame.iloc[rows]
    items = [{"url": thumb_url(r.image_path), "caption": f"{r.class_label} · seed {r.seed}",
              "title": f"{r.class_name} · {r.model} · seed {r.seed}"} for r in picked.itertuples()]
    counts = picked.groupby(["class_label", "class_name"]).size().sort_values(ascending=False)
    shown = {f"{label} · {name}": int(n) for (label, name), n in counts.head(MAX_COUNTED_CLASSES).items()}
    summary = f"{len(rows):,} points selected, {len(counts)} classes"
    return rows, gallery(items), class_counts_figure(shown), summary, False


def export_csv(c: AppContext, _n, rows) -> dict:
    """The download (dcc.Download data) of the selected rows as selection.csv; PreventUpdate when none."""
    rows = c.valid_rows(rows or [])
    if not rows:
        raise PreventUpdate
    picked = c.frame.iloc[rows]
    return dcc.send_data_frame(picked.to_csv, "selection.csv", index=False)


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.selection, "data"), Output(ID.gallery, "children"), Output(ID.class_counts, "figure"),
                 Output(ID.selection_summary, "children"), Output(ID.export_csv, "disabled"),
                 Input(ID.scatter, "selectedData"), prevent_initial_call=True)(bind(select, c))
    app.callback(Output(ID.csv_download, "data"), Input(ID.export_csv, "n_clicks"), State(ID.selection, "data"),
                 prevent_initial_call=True)(bind(export_csv, c))
