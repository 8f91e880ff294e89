"""Pure figure builders: plain values in, a Plotly figure (or Dash components) out.

Nothing here touches a model, a request or a session, so tests build every view without a browser.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import html
from PIL import Image
from plotly.colors import qualitative
from plotly.subplots import make_subplots

# Stable colours: class c always gets PALETTE[c % len], whatever is filtered, so colours never reshuffle.
PALETTE: tuple[str, ...] = tuple(dict.fromkeys(
    qualitative.Plotly + qualitative.D3 + qualitative.Dark24 + qualitative.Light24 + qualitative.Alphabet
))
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
MODEL_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x")
MAX_LEGEND_CLASSES = 40     # up to this many visible classes get one legend entry each
COLOUR_MODES = {"class": "class", "model": "model", "sigma": "noise level σ"}


def class_colour(label: int) -> str:
    return PALETTE[int(label) % len(PALETTE)]


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
) -> go.Figure:
    """WebGL scatter of the embeddings; every point carries its row number (frame position) as customdata.

    Hover labels are off: the app shows its own tooltip with the thumbnail. The model order fixes
    each model's symbol and colour, so they do not change when models are hidden.
    """
    order = list(model_order or dict.fromkeys(frame["model"]))
    style = _model_style(order)
    rows = filter_rows(frame, classes, models)
    traces: list[go.Scattergl] = []
    if link and len(rows):
        lx, ly = link_segments(rows, order)
        if len(lx):
            traces.append(go.Scattergl(x=lx, y=ly, mode="lines", name="same seed", hoverinfo="skip",
                                       line=dict(color="rgba(90,90,90,0.35)", width=1)))
    common = dict(mode="markers", hoverinfo="none")
    if colour_by == "class" and rows["class_label"].nunique() <= MAX_LEGEND_CLASSES:
        for label, g in rows.groupby("class_label", sort=True):
            name = f"{label} · {g['class_name'].iloc[0]}"
            traces.append(go.Scattergl(
                x=g["umap_x"].to_numpy(), y=g["umap_y"].to_numpy(), customdata=g.index.tolist(), name=name,
                marker=dict(color=class_colour(label), size=7, opacity=0.85,
                            symbol=[style[m][1] for m in g["model"]] if len(order) > 1 else "circle"),
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
                marker["color"] = [class_colour(c) for c in g["class_label"]]
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
        title=dict(text=f"{len(rows):,} of {len(frame):,} points", font=dict(size=13), x=0.01),
        xaxis=dict(showticklabels=False, zeroline=False, title=None),
        yaxis=dict(showticklabels=False, zeroline=False, title=None),
        plot_bgcolor="white",
    )
    return fig


# -- the comparison panels ----------------------------------------------------------------------

@dataclass
class Panel:
    """One model's column at one step: its image and one heatmap [H, W] per layer."""

    label: str
    image: np.ndarray | None                      # uint8 [H, W, C]
    maps: Mapping[str, np.ndarray] = field(default_factory=dict)


def png_data_uri(image: np.ndarray) -> str:
    array = np.asarray(image)
    mode_image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    mode_image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _as_display_map(m: np.ndarray) -> np.ndarray:
    """[H, W] heatmaps as they are; RGB reductions (pca_rgb, [3, H, W] in [0, 1]) as [H, W, 3] floats."""
    a = np.asarray(m, dtype=np.float32)
    return a.transpose(1, 2, 0) if a.ndim == 3 else a


def _rgb_trace(rgb: np.ndarray, label: str) -> go.Image:
    pixels = (np.clip(np.nan_to_num(rgb), 0, 1) * 255).astype(np.uint8)
    return go.Image(source=png_data_uri(pixels), hoverinfo="skip", name=label)


def comparison_figure(panels: Sequence[Panel], layers: Sequence[str], columns: int = 6, cell: int = 118,
                      title: str | None = None) -> go.Figure:
    """Images on top, then the layers in bands of `columns`: one row per model and, for two models, their difference.

    Within a layer both models share one colour scale (zmin/zmax over both); the difference row is
    diverging and symmetric around 0. With two models the top row also shows |image A − image B|.
    """
    panels = [p for p in panels if p is not None]
    layers = [name for name in layers if any(name in p.maps for p in panels)]
    pair = len(panels) == 2
    rows_per_band = len(panels) + (1 if pair else 0)
    cols = max(1, min(columns, max(len(layers), len(panels) + (1 if pair else 0))))
    bands = math.ceil(len(layers) / cols) if layers else 0
    nrows = 1 + bands * rows_per_band
    titles: list[str] = [""] * (nrows * cols)
    for j, p in enumerate(panels):
        titles[j] = p.label
    if pair:
        titles[2] = "|A − B| pixels"
    for k, name in enumerate(layers):
        band, col = divmod(k, cols)
        titles[(1 + band * rows_per_band) * cols + col] = name
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.012,
                        vertical_spacing=min(0.3 / max(nrows, 1), 0.06))
    for j, p in enumerate(panels):
        if p.image is not None:
            fig.add_trace(go.Image(source=png_data_uri(p.image), hoverinfo="skip", name=p.label), row=1, col=j + 1)
    if pair and panels[0].image is not None and panels[1].image is not None:
        diff = np.abs(panels[0].image.astype(np.float32) - panels[1].image.astype(np.float32)).mean(-1)
        fig.add_trace(go.Heatmap(z=diff, colorscale="Greys", reversescale=True, showscale=False, zmin=0,
                                 hovertemplate="|A−B| %{z:.1f}<extra></extra>"), row=1, col=3)
    for k, name in enumerate(layers):
        band, col = divmod(k, cols)
        top = 2 + band * rows_per_band
        maps = [_as_display_map(p.maps[name]) if name in p.maps else None for p in panels]
        present = [m for m in maps if m is not None]
        lo = float(min(np.nanmin(m) for m in present))
        hi = float(max(np.nanmax(m) for m in present))
        hi = hi if hi > lo else lo + 1e-6
        for j, (p, m) in enumerate(zip(panels, maps, strict=True)):
            if m is None:
                continue
            trace = _rgb_trace(m, p.label) if m.ndim == 3 else go.Heatmap(
                z=m, zmin=lo, zmax=hi, colorscale="Viridis", showscale=False,
                hovertemplate=f"{p.label.split(' ')[0]} {name}<br>%{{z:.4g}}<extra></extra>")
            fig.add_trace(trace, row=top + j, col=col + 1)
        if pair and maps[0] is not None and maps[1] is not None and maps[0].shape == maps[1].shape:
            d = maps[0] - maps[1] if maps[0].ndim == 2 else np.abs(maps[0] - maps[1]).mean(-1)
            bound = float(np.nanmax(np.abs(d))) or 1e-6
            fig.add_trace(go.Heatmap(z=d, zmin=-bound, zmax=bound, zmid=0, colorscale="RdBu", reversescale=True,
                                     showscale=False, hovertemplate=f"A − B {name}<br>%{{z:.4g}}<extra></extra>"),
                          row=top + 2, col=col + 1)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    for i in range(1, nrows * cols + 1):   # square cells: every y axis follows its own x axis
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    for band in range(bands):
        labels = [p.label.split(" ")[0] for p in panels] + (["A − B"] if pair else [])
        for r, text in enumerate(labels):
            row = 2 + band * rows_per_band + r
            ref = "" if (row - 1) * cols + 1 == 1 else str((row - 1) * cols + 1)
            domain = fig.layout[f"yaxis{ref}"].domain
            fig.add_annotation(text=text, textangle=-90, xref="paper", yref="paper", x=-0.004,
                               y=(domain[0] + domain[1]) / 2, showarrow=False, xanchor="right", font=dict(size=11))
    fig.update_annotations(font_size=10)
    fig.update_layout(height=60 + nrows * (cell + 22), width=40 + cols * cell, margin=dict(l=30, r=10, t=40, b=10),
                      title=dict(text=title or "", font=dict(size=13), x=0.01), plot_bgcolor="white")
    return fig


def similarity_figure(similarity: Mapping[str, Mapping[str, float]] | None, title: str | None = None) -> go.Figure:
    """Cosine and linear CKA per layer, in network order, at the shared first input."""
    fig = go.Figure()
    if similarity:
        names = list(similarity)
        for metric, colour in (("cosine", "#1f77b4"), ("cka", "#d62728")):
            values = [similarity[n].get(metric, math.nan) for n in names]
            fig.add_trace(go.Scatter(x=names, y=[None if v is None or math.isnan(v) else v for v in values],
                                     mode="lines+markers", name="CKA" if metric == "cka" else metric,
                                     line=dict(color=colour), hovertemplate="%{x}<br>%{y:.4f}<extra></extra>"))
    fig.update_layout(
        height=300, margin=dict(l=50, r=10, t=40, b=110), hovermode="x unified",
        title=dict(text=title or "teacher vs student similarity per layer", font=dict(size=13), x=0.01),
        yaxis=dict(title="similarity", range=[-0.05, 1.05] if _in_unit(similarity) else None),
        xaxis=dict(tickangle=-60, tickfont=dict(size=9)), legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
        plot_bgcolor="white",
    )
    return fig


def _in_unit(similarity) -> bool:
    if not similarity:
        return True
    values = [v for s in similarity.values() for v in s.values() if v is not None and not math.isnan(v)]
    return all(-0.05 <= v <= 1.05 for v in values)


def empty_figure(message: str, height: int = 240) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(height=height, xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white",
                      margin=dict(l=10, r=10, t=10, b=10),
                      annotations=[dict(text=message, showarrow=False, font=dict(size=13, color="#666"))])
    return fig


# -- selection ------------------------------------------------------------------------------------

def class_counts_figure(counts: Mapping[str, int]) -> go.Figure:
    names = list(counts)[::-1]
    fig = go.Figure(go.Bar(x=[counts[n] for n in names], y=names, orientation="h", marker_color="#4c78a8",
                           hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_layout(height=max(160, 22 * len(names) + 60), margin=dict(l=10, r=10, t=30, b=30),
                      title=dict(text="selected points per class", font=dict(size=13), x=0.01),
                      yaxis=dict(automargin=True), plot_bgcolor="white")
    return fig


def hover_card(row: Mapping, url: str) -> html.Div:
    """The tooltip of a scatter point: thumbnail, class and seed."""
    return html.Div([
        html.Img(src=url, style={"width": "96px", "height": "96px", "imageRendering": "pixelated",
                                 "display": "block"}),
        html.Div(f"{row['class_label']} · {row['class_name']}", style={"fontWeight": "600", "fontSize": "12px"}),
        html.Div(f"seed {row['seed']} · {row['model']} · step {row['step']} (σ {row['sigma']:.3g})",
                 style={"fontSize": "11px", "color": "#555"}),
    ], className="hover-card")


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
