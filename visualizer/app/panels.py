"""The inspector panels: the regenerated sample, teacher and student side by side, layer by layer.

Layout: a controls box (the models line, the seed/class picker with its message, the layer naming, the
layer and reduction pickers, the colour-scale choice) and a results box (a spinner while the first
look computes, the status line, the teacher's progress bar with its cancel button, the step slider,
the downloads, the comparison panels and the similarity chart). Figures: `comparison_figure` (images,
a heatmap grid per layer with a colour bar per layer, a difference row with its legend) and
`similarity_figure` (cosine and CKA per layer, the layers shown highlighted). Callbacks, each a
module-level function from inputs to outputs:

- `first_look(ctx, clicked, layers, reduction, arg, shown, naming)`: every shown model at the shared
  first input (the fast path); fills `first-ready` and the status line, and puts a placeholder in the
  similarity chart. A model hidden with the scatter's model toggle is neither computed nor drawn;
- `teacher_run(ctx, set_progress, first, should_stop)`: the multi-step teacher's whole run, the body
  of a background callback (a thread of `ThreadedJobManager`, chained on `first-ready` so the fast
  path always gets the teacher's lock first) with a progress bar and a cancel button; a new click or
  new layers cancel it too, so the next first look gets the lock at once. Its steps stream: the engine
  keeps them as they come (`Inspector.partial_trajectory`), the progress value says how many there
  are, and the slider covers them while the run goes on. Its result goes to `trajectory-ready`
  through `set_props`: a declared output would make Dash hold `render` until the teacher finished;
- `slider(ctx, first, ready, done, value, auto)`: the step slider (steps 1..N, the number box and the
  label agree): the computed steps while the run goes on, the final step once it ends, unless the
  user chose a step meanwhile (a value other than the one the server set, kept in `step-auto`);
- `render(ctx, first, ready, step, naming, scale, width)`: the panels from the server cache, drawn to
  the measured width of their column (`panel-width`, measured in the page);
- `pick_layers(ctx, trigger, naming, ...)`: one naming per page (legacy or native layer names), the
  pickers' buttons; `relabel_similarity(ctx, naming, first)`: the per-sample chart with its baselines
  (`sample_report`, after the first look, so the panels never wait for it), redrawn in the page's naming
  from the cache; `reduction_arg(reduction)`;
  `seed_message(value)`: why a typed seed is refused, next to the box;
- `download_maps(ctx, n, first, ready, step)`: the maps shown, as `seed-S-class-C-<reduction>.npz`;
  the PNG has the same name, drawn by Plotly in the browser (a clientside callback, `DOWNLOAD_PNG_JS`).

Requests name their layers canonically (the legacy names where the models have them), so switching the
page's naming changes labels only and never recomputes.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update, set_props
from dash.exceptions import PreventUpdate
from PIL import Image
from plotly.subplots import make_subplots

from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.jobs import current_job
from visualizer.app.ui import BOX, ERROR, HIDDEN, SMALL, empty_figure, parse_seed, radio
from visualizer.errors import UserError
from visualizer.inspection import Request
from visualizer.inspection.comparison import Comparisons
from visualizer.trace.reductions import PARAMETRIC, reduction_spec

PROGRESS_EVERY_S = 0.1
PROGRESS_VISIBLE = {"display": "flex", "alignItems": "center", "gap": "8px", "margin": "6px 0", "flexWrap": "wrap"}
STATUS = {**SMALL, "margin": "8px 0"}
BUSY_VISIBLE = {"display": "block"}
NAMINGS = {"legacy": "legacy (encoder_block_0, midblock, ...)", "native": "native (enc.32x32_conv, dec.8x8_in0, ...)"}
SCALES = {"shared": "one scale per layer for both models", "per-model": "one scale per model"}

# The comparison grid, in pixels.
CELL_MIN = 92        # the smallest heatmap cell a narrow column gets before it drops a column
BAR_GAP = 56         # right of each cell: its colour bar and tick labels
TITLE_GAP = 24       # above each row: the subplot titles
MARGIN = {"l": 34, "r": 4, "t": 46, "b": 8}
LEGEND_H = 40        # under the grid: what the difference row means


def request_data(req: Request, models: Sequence[str] | None = None) -> dict:
    data = {"seed": req.seed, "class_label": req.class_label, "layers": list(req.layers), "reduction": req.reduction}
    if models is not None:
        data["models"] = list(models)
    return data


def request_from(data: dict) -> Request:
    return Request.make(data["seed"], data["class_label"], data["layers"], data["reduction"])


def models_of(data: dict) -> list[str] | None:
    """The model keys a `first-ready` store computed (None: all loaded models)."""
    models = data.get("models")
    return None if models is None else [str(m) for m in models]


def export_stem(data: Mapping) -> str:
    """One name for every export of a sample: `seed-S-class-C-<reduction>` (the PNG, the maps)."""
    reduction = str(data["reduction"]).replace(":", "-")
    return f"seed-{int(data['seed'])}-class-{int(data['class_label'])}-{reduction}"


# -- layer names --------------------------------------------------------------------------------------

def is_native(name: str) -> bool:
    return name.startswith(("enc.", "dec."))


def shown_name(name: str, naming: str | None, aliases: Mapping[str, str]) -> str:
    """`name` as the page's naming shows it (None: as given)."""
    if naming is None or (naming == "native") == is_native(name):
        return name
    return aliases.get(name, name)


def canonical_name(name: str, aliases: Mapping[str, str]) -> str:
    """The name requests use: the legacy one where the module has one, so the naming never changes a cache key."""
    return aliases[name] if is_native(name) and name in aliases else name


def layer_options(c: AppContext, naming: str | None) -> list[dict]:
    """Every module once: its canonical name as the value, labelled in the page's naming (both searchable)."""
    aliases = c.inspector.aliases()
    names = [n for n in c.inspector.layers() if canonical_name(n, aliases) == n]
    return [{"label": shown_name(n, naming, aliases), "value": n, "search": f"{n} {aliases.get(n, '')}"}
            for n in names]


# -- figures ------------------------------------------------------------------------------------------

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


def _short(label: str) -> str:
    return label.split(" ")[0]


def _axis(fig: go.Figure, letter: str, row: int, col: int, cols: int):
    n = (row - 1) * cols + col
    return fig.layout[f"{letter}axis{'' if n == 1 else n}"]


def _colour_bar(fig: go.Figure, rows: tuple[int, int], col: int, cols: int, plot_w: float, **extra) -> dict:
    """A thin colour bar right of the cell in column `col`, spanning rows `rows[0]..rows[1]`."""
    x_end = _axis(fig, "x", rows[0], col, cols).domain[1]
    y_top = _axis(fig, "y", rows[0], col, cols).domain[1]
    y_bottom = _axis(fig, "y", rows[1], col, cols).domain[0]
    return dict(x=x_end + 4 / plot_w, xanchor="left", y=(y_top + y_bottom) / 2, yanchor="middle",
                len=y_top - y_bottom, lenmode="fraction", thickness=9, outlinewidth=0, nticks=4,
                tickformat=".3~g", tickfont=dict(size=10), **extra)


def difference_legend(a: str, b: str, rgb: bool, per_model: bool) -> str:
    """What the difference row means, under the grid."""
    if rgb:
        first = f"{a} − {b} rows: |{a} − {b}| of the PCA colours (white = equal, dark red = most different)."
    else:
        first = (f"{a} − {b} rows: <span style='color:#b2182b'>red where the {a} is higher</span>, "
                 f"<span style='color:#2166ac'>blue where the {b} is</span>, white where equal.")
    second = ("Each layer has one colour scale for both models (bar right of the cell)." if not per_model else
              "Each model has its own colour scale per layer (bar right of each cell).")
    return f"{first}<br>{second}"


def comparison_figure(panels: Sequence[Panel], layers: Sequence[str], columns: int = 6, cell: int = 118,
                      title: str | None = None, *, width: float | None = None, per_model: bool = False,
                      names: Mapping[str, str] | None = None, aliases: Mapping[str, str] | None = None) -> go.Figure:
    """Images on top, then the layers in bands of columns: one row per model and, for two models, their difference.

    Every layer gets a colour bar: by default both models share it (zmin/zmax over both), with
    `per_model` each has its own. The difference row is diverging and symmetric around 0 (red = first
    model higher), or, for RGB reductions, |A − B| on a sequential scale from 0; a legend under the grid
    says so. `width` (pixels): the grid fits it, dropping columns (down to `CELL_MIN` wide cells) rather
    than overflowing; without it cells are `cell` pixels. `names`: a layer's shown name (the page's
    naming); `aliases`: its other name, shown in the hover. With two models the top row also shows
    |image A − image B|.
    """
    panels = [p for p in panels if p is not None]
    layers = [name for name in layers if any(name in p.maps for p in panels)]
    names, aliases = dict(names or {}), dict(aliases or {})
    pair = len(panels) == 2
    top = len(panels) + (1 if pair else 0)
    rows_per_band = len(panels) + (1 if pair else 0)
    cols = max(1, min(columns, max(len(layers), top)))
    side = MARGIN["l"] + MARGIN["r"]
    if width:
        fit = int((width - side + BAR_GAP) // (CELL_MIN + BAR_GAP))
        cols = max(min(cols, fit), top, 1)
        cell = max(24.0, (width - side - (cols - 1) * BAR_GAP) / cols)
    else:
        width = side + cols * cell + (cols - 1) * BAR_GAP
    bands = math.ceil(len(layers) / cols) if layers else 0
    nrows = 1 + bands * rows_per_band
    plot_w = width - side
    plot_h = nrows * cell + (nrows - 1) * TITLE_GAP
    titles: list[str] = [""] * (nrows * cols)
    for j, p in enumerate(panels):
        titles[j] = p.label
    if pair:
        titles[2] = "|A − B| pixels"
    for k, name in enumerate(layers):
        band, col = divmod(k, cols)
        titles[(1 + band * rows_per_band) * cols + col] = names.get(name, name)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=BAR_GAP / plot_w,
                        vertical_spacing=TITLE_GAP / plot_h if nrows > 1 else 0.0)
    a_name, b_name = (_short(panels[0].label), _short(panels[1].label)) if pair else ("A", "B")
    for j, p in enumerate(panels):
        if p.image is not None:
            fig.add_trace(go.Image(source=png_data_uri(p.image), hoverinfo="skip", name=p.label), row=1, col=j + 1)
    if pair and panels[0].image is not None and panels[1].image is not None:
        diff = np.abs(panels[0].image.astype(np.float32) - panels[1].image.astype(np.float32)).mean(-1)
        fig.add_trace(go.Heatmap(z=diff, colorscale="Greys", reversescale=True, zmin=0, showscale=True,
                                 colorbar=_colour_bar(fig, (1, 1), 3, cols, plot_w),
                                 hovertemplate="|A−B| %{z:.1f}<extra></extra>"), row=1, col=3)
    rgb_diff = False
    for k, name in enumerate(layers):
        band, col = divmod(k, cols)
        first_row = 2 + band * rows_per_band
        shown = names.get(name, name)
        other = name if shown != name else aliases.get(name)
        alias = f" ({other})" if other else ""
        maps = [_as_display_map(p.maps[name]) if name in p.maps else None for p in panels]
        flat = [m for m in maps if m is not None and m.ndim == 2]
        lo = float(min(np.nanmin(m) for m in flat)) if flat else 0.0
        hi = float(max(np.nanmax(m) for m in flat)) if flat else 1.0
        hi = hi if hi > lo else lo + 1e-6
        bar_shown = False
        for j, (p, m) in enumerate(zip(panels, maps, strict=True)):
            if m is None:
                continue
            if m.ndim == 3:
                fig.add_trace(_rgb_trace(m, p.label), row=first_row + j, col=col + 1)
                continue
            z_lo, z_hi = (float(np.nanmin(m)), float(np.nanmax(m))) if per_model else (lo, hi)
            z_hi = z_hi if z_hi > z_lo else z_lo + 1e-6
            show = per_model or not bar_shown
            span = (first_row + j, first_row + j) if per_model else (first_row, first_row + len(panels) - 1)
            fig.add_trace(go.Heatmap(
                z=m, zmin=z_lo, zmax=z_hi, colorscale="Viridis", showscale=show,
                colorbar=_colour_bar(fig, span, col + 1, cols, plot_w) if show else None,
                hovertemplate=f"{_short(p.label)} · {shown}{alias}<br>row %{{y}}, col %{{x}}<br>"
                              "value %{z:.4g}<extra></extra>"), row=first_row + j, col=col + 1)
            bar_shown = True
        if pair and maps[0] is not None and maps[1] is not None and maps[0].shape == maps[1].shape:
            row = first_row + 2
            bar = _colour_bar(fig, (row, row), col + 1, cols, plot_w)
            if maps[0].ndim == 2:
                d = maps[0] - maps[1]
                bound = float(np.nanmax(np.abs(d))) or 1e-6
                trace = go.Heatmap(z=d, zmin=-bound, zmax=bound, zmid=0, colorscale="RdBu", reversescale=True,
                                   showscale=True, colorbar=bar,
                                   hovertemplate=f"{a_name} − {b_name} · {shown}{alias}<br>row %{{y}}, col %{{x}}"
                                                 "<br>%{z:.4g}<extra></extra>")
            else:
                rgb_diff = True
                d = np.abs(maps[0] - maps[1]).mean(-1)
                trace = go.Heatmap(z=d, zmin=0, zmax=float(np.nanmax(d)) or 1e-6, colorscale="OrRd", showscale=True,
                                   colorbar=bar,
                                   hovertemplate=f"|{a_name} − {b_name}| · {shown}{alias}<br>row %{{y}}, col %{{x}}"
                                                 "<br>%{z:.4g}<extra></extra>")
            fig.add_trace(trace, row=row, col=col + 1)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    for i in range(1, nrows * cols + 1):   # square cells: every y axis follows its own x axis
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_annotations(font_size=11)
    row_labels = [_short(p.label) for p in panels] + ([f"{a_name} − {b_name}"] if pair else [])
    for band in range(bands):
        for r, text in enumerate(row_labels):
            domain = _axis(fig, "y", 2 + band * rows_per_band + r, 1, cols).domain
            fig.add_annotation(text=text, textangle=-90, xref="paper", yref="paper", x=-4 / plot_w,
                               y=(domain[0] + domain[1]) / 2, showarrow=False, xanchor="right",
                               font=dict(size=11, color="#333"))
    legend = pair and bands > 0
    if legend:
        fig.add_annotation(text=difference_legend(a_name, b_name, rgb_diff, per_model), xref="paper", yref="paper",
                           x=0, y=-10 / plot_h, xanchor="left", yanchor="top", align="left", showarrow=False,
                           font=dict(size=11, color="#333"))
    bottom = MARGIN["b"] + (LEGEND_H if legend else 0)
    fig.update_layout(height=round(MARGIN["t"] + plot_h + bottom), width=round(width),
                      margin=dict(l=MARGIN["l"], r=MARGIN["r"], t=MARGIN["t"], b=bottom),
                      title=dict(text=title or "", font=dict(size=13), x=0.01), plot_bgcolor="white")
    return fig


def similarity_figure(similarity: Mapping[str, Mapping[str, float]] | None, title: str | None = None, *,
                      names: Mapping[str, str] | None = None, aliases: Mapping[str, str] | None = None,
                      chosen: Sequence[str] = ()) -> go.Figure:
    """Per layer, in network order, at the shared first input (one sample: descriptive).

    `similarity`: a `sample_report`'s layers ({layer: {cosine_centred, cka, baselines: {noise, other_seed_a,
    other_seed_b}}}, what the page shows): centred cosine and spatial CKA, one panel each, teacher vs
    student beside what noise of the layer's shape scores (a band) and what each model scores against
    itself on another seed of the class; or plain {layer: {cosine, cka}} scores (drawn as two lines).
    `names`: a layer's shown name (the page's naming), `aliases`: its other name (in the hover);
    `chosen`: the layers the panels show, shaded and in bold.
    """
    names, aliases = dict(names or {}), dict(aliases or {})
    if similarity and any("baselines" in v for v in similarity.values()):
        return _report_figure(similarity, title, names, aliases, chosen)
    fig = go.Figure()
    layers = list(similarity or {})
    x = [names.get(n, n) for n in layers]
    chosen_set = set(chosen)
    if similarity:
        other = [aliases.get(n, "-") for n in layers]
        for metric, colour in (("cosine", "#1f77b4"), ("cka", "#d62728")):
            values = [similarity[n].get(metric, math.nan) for n in layers]
            hover = "also %{customdata}<br>cosine %{y:.4f}<extra></extra>" if metric == "cosine" else \
                "CKA %{y:.4f}<extra></extra>"
            fig.add_trace(go.Scatter(x=x, y=[None if v is None or math.isnan(v) else v for v in values],
                                     customdata=other, mode="lines+markers",
                                     name="CKA" if metric == "cka" else metric, line=dict(color=colour),
                                     hovertemplate=hover))
        for i, n in enumerate(layers):
            if n in chosen_set:
                fig.add_vrect(x0=i - 0.45, x1=i + 0.45, fillcolor="rgba(255, 190, 0, 0.22)", line_width=0,
                              layer="below")
    ticktext = [f"<b>{t}</b>" if n in chosen_set else t for n, t in zip(layers, x, strict=True)]
    fig.update_layout(
        height=340, margin=dict(l=50, r=10, t=56, b=10), hovermode="x unified",
        title=dict(text=title or "teacher vs student similarity per layer", font=dict(size=13), x=0.01),
        yaxis=dict(title="similarity", range=[-0.05, 1.05] if _in_unit(similarity) else None,
                   tickfont=dict(size=11)),
        xaxis=dict(tickangle=-45, tickfont=dict(size=11), automargin=True, tickmode="array", tickvals=x,
                   ticktext=ticktext, categoryorder="array", categoryarray=x),
        legend=dict(orientation="h", y=1.1, x=1, xanchor="right", font=dict(size=11)),
        plot_bgcolor="white",
    )
    if similarity and chosen_set:
        fig.add_annotation(text="shaded, bold: the layers in the panels", xref="paper", yref="paper", x=0, y=1.02,
                           xanchor="left", yanchor="bottom", showarrow=False, font=dict(size=11, color="#555"))
    return fig


REPORT_TRACES = (("cosine_centred", "centred cosine (each model's mean over 32 reference seeds removed)"),
                 ("cka", "linear CKA, spatial positions as examples"))


def _report_figure(report: Mapping[str, Mapping], title: str | None, names: Mapping[str, str],
                   aliases: Mapping[str, str], chosen: Sequence[str]) -> go.Figure:
    """`similarity_figure` for a `sample_report`: two panels (centred cosine, CKA), each score with its baselines."""
    layers = list(report)
    x = [names.get(n, n) for n in layers]
    other = [aliases.get(n, "-") for n in layers]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=[t for _, t in REPORT_TRACES])

    def value(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    for row, (metric, _) in enumerate(REPORT_TRACES, start=1):
        noise = [report[n]["baselines"].get("noise", {}).get(metric, {}) for n in layers]
        first = row == 1
        fig.add_trace(go.Scatter(x=x, y=[value(b.get("lo")) for b in noise], mode="lines", line=dict(width=0),
                                 hoverinfo="skip", showlegend=False, legendgroup="noise"), row=row, col=1)
        fig.add_trace(go.Scatter(x=x, y=[value(b.get("hi")) for b in noise], mode="lines", line=dict(width=0),
                                 fill="tonexty", fillcolor="rgba(120,120,120,0.3)", legendgroup="noise",
                                 name="baseline: noise of the layer's shape (95% of 32 draws)", showlegend=first,
                                 customdata=[b.get("mean") for b in noise],
                                 hovertemplate="noise: %{customdata:.3f}<extra></extra>"), row=row, col=1)
        for key, label, colour, symbol in (
                ("other_seed_a", "baseline: teacher vs itself, another seed of the class", "#1f77b4", "diamond"),
                ("other_seed_b", "baseline: student vs itself, another seed of the class", "#2ca02c", "square")):
            fig.add_trace(go.Scatter(
                x=x, y=[value(report[n]["baselines"].get(key, {}).get(metric)) for n in layers], mode="markers",
                marker=dict(symbol=symbol, size=7, color=colour), name=label, legendgroup=key, showlegend=first,
                hovertemplate=label.removeprefix("baseline: ") + ": %{y:.3f}<extra></extra>"), row=row, col=1)
        fig.add_trace(go.Scatter(
            x=x, y=[value(report[n].get(metric)) for n in layers], mode="lines+markers", customdata=other,
            line=dict(color="#d62728"), name="teacher vs student, same seed", legendgroup="pair", showlegend=first,
            hovertemplate="also %{customdata}<br>teacher vs student %{y:.3f}<extra></extra>"), row=row, col=1)
    chosen_set = set(chosen)
    for i, n in enumerate(layers):
        if n in chosen_set:      # one band across both panels per layer shown in the panels
            fig.add_shape(type="rect", xref="x", yref="paper", x0=i - 0.45, x1=i + 0.45, y0=0, y1=1,
                          fillcolor="rgba(255, 190, 0, 0.22)", line_width=0, layer="below")
    ticktext = [f"<b>{t}</b>" if n in chosen_set else t for n, t in zip(layers, x, strict=True)]
    fig.update_xaxes(tickangle=-45, tickfont=dict(size=11), automargin=True, tickmode="array", tickvals=x,
                     ticktext=ticktext, categoryorder="array", categoryarray=x)
    fig.update_yaxes(tickfont=dict(size=11))
    fig.update_annotations(font_size=11)
    fig.update_layout(
        height=560, margin=dict(l=50, r=10, t=110, b=10), hovermode="x unified", plot_bgcolor="white",
        title=dict(text=title or "teacher vs student per layer — one sample: descriptive", font=dict(size=13),
                   x=0.01),
        legend=dict(orientation="h", y=1.09, yanchor="bottom", x=0, font=dict(size=10)))
    if chosen_set:
        fig.add_annotation(text="shaded, bold: the layers in the panels", xref="paper", yref="paper", x=1, y=1.0,
                           xanchor="right", yanchor="bottom", yshift=14, showarrow=False,
                           font=dict(size=11, color="#555"))
    return fig


def _in_unit(similarity) -> bool:
    if not similarity:
        return True
    values = [v for s in similarity.values() for v in s.values() if v is not None and not math.isnan(v)]
    return all(-0.05 <= v <= 1.05 for v in values)


# -- layout -------------------------------------------------------------------------------------------

def _manual(info: LayoutInfo) -> html.Div:
    class_options = [{"label": f"{c} · {name}", "value": c} for c, name in info.classes]
    return html.Div([
        html.Span("or pick a seed", style=SMALL),
        dcc.Input(id=ID.seed_input, type="text", inputMode="numeric", value="0", debounce=False,
                  style={"width": "110px"}),
        html.Span("and class", style=SMALL),
        html.Div(dcc.Dropdown(id=ID.class_input, options=class_options,
                              value=class_options[0]["value"] if class_options else None, clearable=False),
                 style={"width": "220px"}),
        html.Button("generate", id=ID.generate, n_clicks=0, disabled=not info.has_models),
        html.Span(id=ID.seed_message, style=ERROR, role="status"),
    ], className="viz-toolbar")


def _controls(info: LayoutInfo) -> html.Div:
    layer_options = [{"label": n, "value": n} for n in info.layers if not n.startswith(("enc.", "dec."))] or \
        [{"label": n, "value": n} for n in info.layers]
    naming = "legacy" if any(not n.startswith(("enc.", "dec.")) for n in info.layers) else "native"
    return html.Div([
        html.Div(info.models_line, style={**SMALL, "marginBottom": "6px"}),
        _manual(info),
        html.Div([
            html.Div([
                html.Div([
                    html.Label("layers", style=SMALL),
                    radio(ID.naming, {k: f"{k} names" for k in NAMINGS}, naming),
                ], className="viz-toolbar"),
                dcc.Dropdown(id=ID.layer_pick, options=layer_options, value=list(info.default_layers), multi=True,
                             placeholder="pick layers"),
                html.Div([
                    html.Button("a few", id=ID.layers_default, n_clicks=0),
                    html.Button("all (legacy names)", id=ID.layers_legacy, n_clicks=0),
                    html.Button("all (native names)", id=ID.layers_native, n_clicks=0),
                ], className="viz-toolbar", style={"marginTop": "4px"}),
            ], className="viz-grow"),
            html.Div([
                html.Label("reduction", style=SMALL),
                dcc.Dropdown(id=ID.reduction, options=[{"label": r, "value": r} for r in info.reductions],
                             value="l2", clearable=False),
                dcc.Input(id=ID.reduction_arg, type="number", min=0, step=1, placeholder="channel / k",
                          disabled=True, style={"width": "100%", "marginTop": "4px"}),
                html.Label("colour scale", style={**SMALL, "display": "block", "marginTop": "6px"}),
                dcc.RadioItems(id=ID.scale_mode, options=[{"label": v, "value": k} for k, v in SCALES.items()],
                               value="shared", inputStyle={"marginRight": "4px"},
                               labelStyle={"display": "block", "fontSize": "12px"}),
            ], className="viz-side"),
        ], className="viz-row", style={"marginTop": "8px"}),
    ], style=BOX)


def _results(info: LayoutInfo) -> html.Div:
    steps = max(2, info.teacher_steps or 2)
    return html.Div([
        html.Div([html.Span(className="viz-spinner"), html.Span("regenerating ...", id=ID.busy_text)],
                 id=ID.busy, className="viz-busy", style=HIDDEN),
        html.Div(id=ID.status, style=STATUS,
                 children="Click a point (or pick a seed) to regenerate it." if info.has_models
                 else "No model loaded: start with --teacher/--student or --adapter/--checkpoint_path to regenerate."),
        html.Div([
            html.Span(f"{info.teacher or 'teacher'}:", style=SMALL),
            html.Progress(id=ID.progress, max="1", style={"width": "260px"}),
            html.Span(id=ID.progress_text, style=SMALL, children="starting the run ..."),
            html.Button("cancel", id=ID.cancel, n_clicks=0, disabled=True),
        ], id=ID.progress_row, style=HIDDEN),
        html.Div([
            html.Div(id=ID.step_label, style=SMALL,
                     children="step slider: its steps appear as the teacher's run computes them" if info.teacher
                     else ""),
            dcc.Slider(id=ID.slider, min=1, max=steps, step=1, value=1, disabled=True, marks=None,
                       tooltip={"placement": "top", "always_visible": False, "template": "step {value}"},
                       updatemode="drag"),
        ], style={"paddingRight": "8px"} if info.teacher else HIDDEN),
        html.Div([
            html.Button("download panels (PNG)", id=ID.download_png, n_clicks=0),
            html.Button("download maps (.npz)", id=ID.download_npz, n_clicks=0),
            dcc.Download(id=ID.npz_download),
            html.Span(id=ID.png_done, style=SMALL),
        ], className="viz-toolbar"),
        dcc.Graph(id=ID.panels, figure=empty_figure("no sample yet"), config={"displaylogo": False},
                  style={"width": "100%"}),
        dcc.Graph(id=ID.similarity, figure=empty_figure("similarity per layer appears with two models", 160),
                  config={"displaylogo": False}),
    ], id=ID.results, style=BOX)


def layout(info: LayoutInfo) -> list:
    """The controls box, then the results box."""
    return [_controls(info), _results(info)]


# -- callbacks ----------------------------------------------------------------------------------------

def visible_models(c: AppContext, shown) -> list[str] | None:
    """The model keys to compute: all (None) unless the scatter's toggle hides some of the embeddings' models."""
    if shown is None:
        return None
    hidden = {m for m in c.model_order if m not in set(shown)}
    keys = [k for k in c.inspector.slots if k not in hidden]
    return None if len(keys) == len(c.inspector.slots) else keys


def first_look(c: AppContext, clicked, layers, reduction, reduction_arg, shown=None, naming=None) -> tuple:
    """(first-ready, trajectory-ready, similarity figure, status) for the sample in the `clicked` store.

    Regenerates every shown model at the shared first input (a cache hit when seen before); a request
    the models refuse (unknown layer, class out of range) leaves everything as it was and says why.
    """
    if not clicked or not c.inspector.slots:
        raise PreventUpdate
    aliases = c.inspector.aliases()
    models = visible_models(c, shown)
    if models == []:
        return (no_update, no_update, empty_figure("every model is hidden", 160),
                "Every model is hidden: tick one above the scatter to regenerate it.")
    try:
        names = [canonical_name(n, aliases) for n in (layers or c.default_layers)]
        req = Request.make(clicked["seed"], clicked["class_label"], names,
                           reduction_spec(reduction, reduction_arg if reduction in PARAMETRIC else None))
        look = c.inspector.first_look(req, models=models)
    except UserError as e:
        return no_update, no_update, no_update, html.Span(f"error: {e}", style={"color": "#b00"})
    where = f"sample {clicked['sample_id']}" if clicked.get("sample_id") else "sample"
    teacher_runs = c.teacher is not None and (models is None or c.teacher in models)
    status = (f"{where}: seed {req.seed}, class {req.class_label} · {c.class_name(req.class_label)} — "
              f"shared first input computed in {look.seconds:.2f} s"
              + (f"; the {c.teacher}'s full run follows" if teacher_runs else "")
              + (f"; hidden: {', '.join(k for k in c.inspector.slots if k not in models)}" if models else ""))
    chart = empty_figure("per-layer similarity with its baselines: computing ...", 160) if look.similarity else \
        empty_figure("similarity per layer needs two models", 160)
    return request_data(req, models), None, chart, status


def similarity_for(c: AppContext, look, req: Request, naming) -> go.Figure:
    """The per-sample chart: `sample_report`'s centred cosine and CKA per layer with their two baselines
    (from the engine, cached: the models' reference means once per model, the noise once per shape)."""
    if not look.similarity:
        return empty_figure("similarity per layer needs two models", 160)
    aliases = c.inspector.aliases()
    try:
        report = Comparisons.of(c.inspector, c.root).sample_report(req.seed, req.class_label)
    except UserError as e:
        return empty_figure(f"per-layer similarity: {e}", 160)
    layers = report["layers"]
    names = {n: shown_name(n, naming, aliases) for n in layers}
    chosen = {shown_name(n, "native", aliases) for n in req.layers} | set(req.layers)
    title = (f"{look.pair[0]} vs {look.pair[1]} per layer at the shared first input (σ 80) — one sample: "
             f"descriptive (baselines: seed {report['other_seed']} of the class; noise)")
    return similarity_figure(layers, title, names=names, aliases=aliases, chosen=chosen)


def relabel_similarity(c: AppContext, naming, first) -> go.Figure:
    """The similarity chart for the sample in `first-ready`, in the page's naming: its own callback after the
    first look (the report traces the pair and the next seed once, then comes from the cache)."""
    if not first:
        raise PreventUpdate
    req = request_from(first)
    return similarity_for(c, c.inspector.first_look(req, models=models_of(first)), req, naming)


def teacher_run(c: AppContext, set_progress: Callable[[tuple[str, str, str]], None], first,
                should_stop: Callable[[], None] | None = None) -> dict:
    """The teacher's whole trajectory for the request in `first-ready`: what goes into `trajectory-ready`.

    `set_progress((value, max, text))` is called at once (step 0, so the bar speaks from the start),
    then at most every PROGRESS_EVERY_S seconds and at the last step; the value is the number of steps
    computed, which the slider covers. `should_stop()` before every network evaluation (it raises to
    abandon the run). A teacher the page hides does not run.
    """
    if not first or c.teacher is None:
        raise PreventUpdate
    models = models_of(first)
    if models is not None and c.teacher not in models:
        raise PreventUpdate
    req = request_from(first)
    last = [0.0]
    total = c.inspector.slots[c.teacher].num_steps()
    set_progress((None, str(total), f"step 0 / {total}: the first step is running"))

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            set_progress((str(done), str(total), f"step {done} / {total}"))

    traj = c.inspector.trajectory(c.teacher, req, progress=progress, should_stop=should_stop)
    return {**first, "model": c.teacher, "num_steps": len(traj.steps), "sigmas": traj.sigmas,
            "seconds": round(traj.seconds, 3)}


def _run_key(first: Mapping) -> str:
    return json.dumps({k: first.get(k) for k in ("seed", "class_label", "layers", "reduction", "models")},
                      sort_keys=True)


def _marks(sigmas: Sequence[float], upto: int) -> dict[int, str]:
    """About six sigma marks over the whole run (`sigmas`, one per step), those of the first `upto` steps."""
    n = len(sigmas)
    if not n:
        return {}
    picks = sorted({0, n - 1, *range(0, n, max(1, n // 5))})
    return {i + 1: f"σ {sigmas[i]:.3g}" for i in picks if i < upto}


def step_sigmas(c: AppContext) -> list[float]:
    """The sigma of the teacher's every step (its first evaluation), known before it runs."""
    slot = c.inspector.slots[c.teacher]
    firsts: dict[int, float] = {}
    for ev in slot.adapter.evaluations(slot.settings()):
        firsts.setdefault(ev.step, float(ev.sigma))
    return list(firsts.values())


def _ready_for(first, ready) -> bool:
    return bool(first and ready and request_from(ready) == request_from(first)
                and models_of(ready) == models_of(first))


def slider(c: AppContext, first, ready, done=None, value=None, auto=None) -> tuple:
    """(max, disabled, marks, value, auto) of the step slider; steps count from 1, as the label says.

    While the teacher runs, the slider covers the steps computed so far (`done`, the progress value;
    the engine keeps them); once it finishes, it moves to the last step unless the user chose a step
    meanwhile, which it keeps. `auto` (the `step-auto` store) is {run, step}: the step the server last
    set for this run, so a value that differs from it is the user's choice.
    """
    if not first or c.teacher is None:
        return no_update, True, None, no_update, no_update
    models = models_of(first)
    if models is not None and c.teacher not in models:
        return no_update, True, None, 1, None
    key = _run_key(first)
    fresh = not auto or auto.get("run") != key
    chose = not fresh and value is not None and value != auto.get("step")
    if _ready_for(first, ready):
        n = int(ready["num_steps"])
        marks = _marks(ready["sigmas"], n)
        if chose:
            return n, False, marks, no_update, no_update
        return n, False, marks, n, {"run": key, "step": n}
    partial = c.inspector.partial_trajectory(c.teacher, request_from(first))
    available = len(partial) if partial is not None else 0
    marks = _marks(step_sigmas(c), available) or None
    top = max(available, 2)
    if fresh:
        return top, available < 2, marks, 1, {"run": key, "step": 1}
    return top, available < 2, marks, no_update, no_update


def render(c: AppContext, first, ready, step, naming=None, scale="shared", width=None) -> tuple[go.Figure, str]:
    """(panels figure, step label): every shown model at the first input, the teacher at `step` (counted
    from 1) once its run has reached it."""
    if not first:
        raise PreventUpdate
    inspector = c.inspector
    req = request_from(first)
    look = inspector.first_look(req, models=models_of(first))   # a cache hit unless evicted, then recomputed
    teacher = c.teacher if c.teacher in look.views else None
    traj = inspector.cached_trajectory(teacher, req) if teacher and _ready_for(first, ready) else None
    partial = inspector.partial_trajectory(teacher, req) if teacher and traj is None else None
    available = len(traj.steps) if traj else len(partial) if partial is not None else 0
    k = min(max(int(step or 1), 1), max(available, 1)) - 1
    panels = []
    for key in [k_ for k_ in inspector.shown() if k_ in look.views]:
        slot = inspector.slots[key]
        if key == teacher and available:
            view = traj.steps[k] if traj else partial.view(k)
            label = f"{key} · step {k + 1}/{slot.num_steps()} · σ {view.sigma:.3g}"
        else:
            view = look.views[key]
            label = f"{key} · step 1/{slot.num_steps()} · σ {view.sigma:.3g}" if slot.multi_step else \
                f"{key} · {slot.num_steps()} step · σ {view.sigma:.3g}"
        panels.append(Panel(label, view.image, view.maps))
    aliases = inspector.aliases()
    title = f"seed {req.seed} · class {req.class_label} ({c.class_name(req.class_label)}) · {req.reduction}"
    fig = comparison_figure(panels, req.layers, title=title, width=width if width and width > 200 else None,
                            per_model=scale == "per-model",
                            names={n: shown_name(n, naming, aliases) for n in req.layers}, aliases=aliases)
    fig.update_layout(meta={"export": export_stem(first)})
    n = inspector.slots[c.teacher].num_steps() if c.teacher else 0
    if traj is not None:
        label = f"{c.teacher}: step {k + 1} of {traj.num_steps}, σ = {traj.steps[k].sigma:.4g} " \
                f"({traj.seconds:.1f} s run); the first step is the student's input"
    elif teacher and available:
        label = f"{c.teacher}: step {k + 1} of {n}, σ = {partial.view(k).sigma:.4g}; the run is in progress: " \
                "the slider covers the steps computed so far, the last step shows when it ends"
    elif teacher:
        label = f"{c.teacher}: showing the first step (the student's input); the run is in progress or cancelled"
    elif c.teacher:
        label = f"{c.teacher} is hidden: tick it above the scatter to run it"
    else:
        label = ""
    return fig, label


def panels_config(first) -> dict:
    """The panels graph's config: its camera button saves the same file name as the PNG button."""
    config = {"displaylogo": False}
    if first:
        config["toImageButtonOptions"] = {"format": "png", "filename": export_stem(first)}
    return config


def layer_preset(c: AppContext, trigger, *_n_clicks) -> list[str]:
    """The layers of the preset button `trigger` (its id): a few, all legacy names, or all native names."""
    return {ID.layers_default: c.default_layers, ID.layers_legacy: c.inspector.legacy_layers(),
            ID.layers_native: c.inspector.native_layers()}[trigger]


def pick_layers(c: AppContext, trigger, naming, _few=None, _legacy=None, _native=None, current=None) -> tuple:
    """(layers, layer options, naming): the picker labelled in the page's naming, and the preset buttons
    (the "all" ones switch the naming to theirs). Values stay canonical, so a new naming is only new
    labels: nothing is recomputed and a running teacher goes on."""
    aliases = c.inspector.aliases()
    if trigger == ID.layers_legacy:
        naming = "legacy"
    elif trigger == ID.layers_native:
        naming = "native"
    naming = naming if naming in NAMINGS else None
    if trigger in (ID.layers_default, ID.layers_legacy, ID.layers_native):
        value = list(dict.fromkeys(canonical_name(n, aliases) for n in layer_preset(c, trigger)))
    else:
        value = no_update
    return value, layer_options(c, naming), naming if naming else no_update


def reduction_arg(reduction) -> tuple[bool, int | None]:
    """(disabled, value) of the reduction's argument: enabled with its default for channel and topk."""
    if reduction in PARAMETRIC:
        return False, PARAMETRIC[reduction][1]
    return True, None


def seed_message(value) -> str:
    """Why a typed seed cannot be generated ('' when it can)."""
    seed, why = parse_seed(value)
    return "" if seed is not None else why


def shown_views(c: AppContext, first, ready, step) -> tuple[dict, dict[str, float]]:
    """{model: StepView} as the panels show them (the teacher at `step`), and each view's step number."""
    req = request_from(first)
    look = c.inspector.first_look(req, models=models_of(first))
    views = dict(look.views)
    steps = dict.fromkeys(views, 1)
    teacher = c.teacher if c.teacher in views else None
    if teacher:
        traj = c.inspector.cached_trajectory(teacher, req) if _ready_for(first, ready) else None
        partial = c.inspector.partial_trajectory(teacher, req) if traj is None else None
        available = len(traj.steps) if traj else len(partial) if partial is not None else 0
        if available:
            k = min(max(int(step or 1), 1), available) - 1
            views[teacher] = traj.steps[k] if traj else partial.view(k)
            steps[teacher] = k + 1
    return views, steps


def download_maps(c: AppContext, _n, first, ready, step) -> dict:
    """The maps the panels show, with the images, as `seed-S-class-C-<reduction>.npz` (dcc.Download data).

    Arrays `<model>/image` (uint8 [H, W, C]) and `<model>/<layer>` (float32, [H, W] or [3, H, W] for
    pca_rgb), in the request's layer names; `meta` is a JSON string (seed, class, reduction, each model's
    step and sigma, both names of every layer).
    """
    if not first:
        raise PreventUpdate
    views, steps = shown_views(c, first, ready, step)
    aliases = c.inspector.aliases()
    arrays: dict[str, np.ndarray] = {}
    for key, view in views.items():
        arrays[f"{key}/image"] = np.asarray(view.image)
        for name, m in view.maps.items():
            arrays[f"{key}/{name}"] = np.asarray(m, dtype=np.float32)
    meta = {"seed": first["seed"], "class_label": first["class_label"], "reduction": first["reduction"],
            "layers": {n: aliases.get(n) for n in first["layers"]},
            "models": {k: {"step": steps[k], "sigma": float(v.sigma)} for k, v in views.items()}}
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return dcc.send_bytes(buf.getvalue(), f"{export_stem(first)}.npz")


DOWNLOAD_PNG_JS = """
function(n) {
    if (!n) { return window.dash_clientside.no_update; }
    const gd = document.querySelector('#panels .js-plotly-plot');
    if (!gd || !gd.layout || !gd.layout.meta || !gd.layout.meta.export) { return 'nothing to download yet'; }
    const name = gd.layout.meta.export;
    const w = gd._fullLayout ? gd._fullLayout.width : 800, h = gd._fullLayout ? gd._fullLayout.height : 600;
    return Plotly.downloadImage(gd, {format: 'png', filename: name, width: w, height: h})
        .then(function() { return 'saved ' + name + '.png'; });
}
"""

# On a click (or new layers, reduction, models): the spinner's line at once, and the results box
# scrolled into view when a click would otherwise change nothing above the fold.
BUSY_JS = """
function(clicked, layers, reduction, arg, shown) {
    if (!clicked) { return window.dash_clientside.no_update; }
    const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
    if (trig.some(p => p.startsWith('clicked.'))) {
        const box = document.getElementById('results'), graph = document.getElementById('panels');
        if (box && graph) {
            const top = graph.getBoundingClientRect().top;
            if (top < 0 || top > window.innerHeight * 0.55) {
                // beside the scatter the inspector column scrolls on its own: move it, not the page
                const col = box.closest('.viz-right');
                if (col && getComputedStyle(col).overflowY === 'auto' && col.scrollHeight > col.clientHeight) {
                    col.scrollTop += box.getBoundingClientRect().top - col.getBoundingClientRect().top;
                } else {
                    box.scrollIntoView({block: 'start'});
                }
            }
        }
    }
    return 'regenerating seed ' + clicked.seed + ' (class ' + clicked.class_label + ') ...';
}
"""

# The panels' width: measured once at load and again (debounced) whenever their box changes size. The
# results box is observed (the graph's own element may be replaced when its props change) and the graph
# measured afresh each time.
WIDTH_JS = """
function(_id) {
    const measure = function() {
        const graph = document.getElementById('panels');
        return graph ? Math.floor(graph.getBoundingClientRect().width) : 0;
    };
    const box = document.getElementById('results');
    if (box && !window.__vizPanelWidth && window.ResizeObserver) {
        let timer = null, last = measure();
        window.__vizPanelWidth = new ResizeObserver(function() {
            clearTimeout(timer);
            timer = setTimeout(function() {
                const w = measure();
                if (w > 0 && Math.abs(w - last) >= 4) {
                    last = w;
                    window.dash_clientside.set_props('panel-width', {data: w});
                }
            }, 200);
        });
        window.__vizPanelWidth.observe(box);
    }
    return measure() || window.dash_clientside.no_update;
}
"""


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.first_ready, "data"), Output(ID.trajectory_ready, "data"),
                 Output(ID.similarity, "figure"), Output(ID.status, "children"),
                 Input(ID.clicked, "data"), Input(ID.layer_pick, "value"), Input(ID.reduction, "value"),
                 Input(ID.reduction_arg, "value"), Input(ID.model_toggle, "value"), State(ID.naming, "value"),
                 running=[(Output(ID.busy, "style"), BUSY_VISIBLE, HIDDEN),
                          (Output(ID.status, "style"), HIDDEN, STATUS)],
                 prevent_initial_call=True)(bind(first_look, c))
    app.clientside_callback(BUSY_JS, Output(ID.busy_text, "children"), Input(ID.clicked, "data"),
                            Input(ID.layer_pick, "value"), Input(ID.reduction, "value"),
                            Input(ID.reduction_arg, "value"), Input(ID.model_toggle, "value"),
                            prevent_initial_call=True)

    @app.callback(Output(ID.trajectory_done, "data"), Input(ID.first_ready, "data"),
                  background=True, interval=250, prevent_initial_call=True,
                  progress=[Output(ID.progress, "value"), Output(ID.progress, "max"),
                            Output(ID.progress_text, "children")],
                  progress_default=[None, "1", "starting the run ..."],
                  # A new click or new layers also cancel this tab's run: the next first look needs the lock.
                  cancel=[Input(ID.cancel, "n_clicks"), Input(ID.clicked, "data"), Input(ID.layer_pick, "value"),
                          Input(ID.reduction, "value"), Input(ID.reduction_arg, "value"),
                          Input(ID.model_toggle, "value")],
                  running=[(Output(ID.cancel, "disabled"), False, True),
                           (Output(ID.progress_row, "style"), PROGRESS_VISIBLE, HIDDEN)])
    def teacher_job(set_progress, first):
        ready = teacher_run(c, set_progress, first, should_stop=current_job().check)
        set_props(ID.trajectory_ready, {"data": ready})
        return {"seconds": ready["seconds"]}

    app.callback(Output(ID.slider, "max"), Output(ID.slider, "disabled"), Output(ID.slider, "marks"),
                 Output(ID.slider, "value"), Output(ID.step_auto, "data"),
                 Input(ID.first_ready, "data"), Input(ID.trajectory_ready, "data"), Input(ID.progress, "value"),
                 State(ID.slider, "value"), State(ID.step_auto, "data"), prevent_initial_call=True)(bind(slider, c))
    app.callback(Output(ID.panels, "figure"), Output(ID.step_label, "children"),
                 Input(ID.first_ready, "data"), Input(ID.trajectory_ready, "data"), Input(ID.slider, "value"),
                 Input(ID.naming, "value"), Input(ID.scale_mode, "value"), Input(ID.panel_width, "data"),
                 prevent_initial_call=True)(bind(render, c))
    app.callback(Output(ID.panels, "config"), Input(ID.first_ready, "data"), prevent_initial_call=True)(panels_config)
    app.callback(Output(ID.layer_pick, "value"), Output(ID.layer_pick, "options"), Output(ID.naming, "value"),
                 Input(ID.naming, "value"), Input(ID.layers_default, "n_clicks"),
                 Input(ID.layers_legacy, "n_clicks"), Input(ID.layers_native, "n_clicks"),
                 State(ID.layer_pick, "value"), prevent_initial_call=True)(bind(pick_layers, c, triggered=True))
    app.callback(Output(ID.similarity, "figure", allow_duplicate=True), Input(ID.naming, "value"),
                 Input(ID.first_ready, "data"), prevent_initial_call=True)(bind(relabel_similarity, c))
    app.callback(Output(ID.reduction_arg, "disabled"), Output(ID.reduction_arg, "value"),
                 Input(ID.reduction, "value"))(reduction_arg)
    app.callback(Output(ID.seed_message, "children"), Input(ID.seed_input, "value"))(seed_message)
    app.callback(Output(ID.npz_download, "data"), Input(ID.download_npz, "n_clicks"), State(ID.first_ready, "data"),
                 State(ID.trajectory_ready, "data"), State(ID.slider, "value"),
                 prevent_initial_call=True)(bind(download_maps, c))
    app.clientside_callback(DOWNLOAD_PNG_JS, Output(ID.png_done, "children"), Input(ID.download_png, "n_clicks"),
                            prevent_initial_call=True)
    app.clientside_callback(WIDTH_JS, Output(ID.panel_width, "data"), Input(ID.results, "id"))
