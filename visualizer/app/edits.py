"""Edits from the page (issue 17): change one layer of one model for the sample in the panels and see what
follows, and where the student's behaviour lives.

Layout: the edit box (the model and layer, the operation, channels, a region painted on the layer's
heatmap, a sigma range, a factor, where the values come from, the edit list with apply / undo / clear),
the edited box (original and edited images side by side, their difference, and how far every layer
moved) and the "where the behaviour lives" box (a teacher-into-student patch sweep over a few seeds
beside the weight drift per block). Figures: `region_figure`, `edit_images_figure`, `changes_figure`,
`sweep_figure`. Callbacks, each `fn(ctx, *inputs)`:

- `layer_options(ctx, naming)`: the edit's layer picker in the page's naming;
- `region(ctx, first, model, layer)`: the layer's heatmap for the sample, cells selectable with the box
  or lasso tool (Plotly keeps the drawn box); `pick_region(ctx, trigger, selected, _clear)`: the painted
  rows and columns, end-exclusive (or none);
- `edit_list(ctx, trigger, ...)`: apply (the form as an `EditSpec`, checked), undo the last, or clear;
- `edited(ctx, edits, first, naming, full_run)`: the edited first look (the engine caches it like a
  click), and with `full_run` the teacher's whole edited sampler against its unedited one;
- `sweep(ctx, n, seeds, first, naming)`: `Inspector.patch_sweep` (teacher into student, every native
  layer, mean RMSE over the seeds with its bootstrap interval and the other-seed baseline) beside
  `Inspector.weight_drift`.

Sources: 'other' (the other model of the pair at this seed: teacher into student at the shared first
input, student into teacher at its first step), 'seed' (this model at another seed, same class),
'selection' (the mean over the seeds of the box/lasso selection, same class), 'neighbours' (the mean over
the clicked point's K nearest neighbours in the run's PCA space, as the neighbours gallery lists them, each
re-traced at its own seed and class: `visualizer.app.neighbours`), 'classes' (for add: the mean activation
of class A minus class B). Per-sample figures say they are descriptive; the sweep's
bars carry their interval and baseline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate
from plotly.subplots import make_subplots

from visualizer.app import panels
from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.panels import canonical_name, models_of, png_data_uri, request_from, shown_name
from visualizer.app.ui import BOX, ERROR, SMALL, empty_figure, parse_seed, parse_seeds, radio
from visualizer.errors import UserError
from visualizer.inspection import Request
from visualizer.inspection.edits import OPS, EditSpec

MAX_EDITS = 8
OP_LABELS = {"zero": "zero", "mean": "mean-ablate", "scale": "scale", "add": "add a direction",
             "replace": "replace"}
SOURCES = {"other": "the other model, same seed", "seed": "another seed (same class)",
           "selection": "mean over the selection's seeds (same class)",
           "neighbours": "mean over the clicked point's K nearest neighbours (the gallery's)",
           "classes": "class A − class B (add)"}
MAX_SELECTION_SEEDS = 64
DEFAULT_SWEEP_SEEDS = "0-7"


# -- figures ------------------------------------------------------------------------------------------

def region_figure(heatmap: np.ndarray | None, title: str, region: Sequence[int] | None = None) -> go.Figure:
    """A layer's heatmap [H, W] with a selectable point at every cell (box or lasso paints a region)."""
    if heatmap is None:
        return empty_figure("click a sample to paint a region on its heatmap", 200)
    m = np.asarray(heatmap, dtype=np.float32)
    m = m.mean(0) if m.ndim == 3 else m
    h, w = m.shape
    rows, cols = np.mgrid[0:h, 0:w]
    fig = go.Figure([
        go.Heatmap(z=m, colorscale="Viridis", showscale=True, colorbar=dict(thickness=8, tickfont=dict(size=10)),
                   hoverinfo="skip"),
        # the cells as points: what box and lasso select (a trace that skips hover cannot be selected)
        go.Scatter(x=cols.ravel(), y=rows.ravel(), mode="markers", name="cells", customdata=m.ravel(),
                   hovertemplate="row %{y}, col %{x}: %{customdata:.4g}<extra></extra>",
                   marker=dict(size=6, color="rgba(255,255,255,0.25)", line=dict(width=0)),
                   selected=dict(marker=dict(color="rgba(255,80,80,0.9)")),
                   unselected=dict(marker=dict(opacity=0.35))),
    ])
    if region:
        r0, c0, r1, c1 = region
        fig.add_shape(type="rect", x0=c0 - 0.5, x1=c1 - 0.5, y0=r0 - 0.5, y1=r1 - 0.5,
                      line=dict(color="#ff3030", width=2))
    fig.update_layout(height=280, margin=dict(l=30, r=10, t=34, b=16), dragmode="select",   # width: its column
                      title=dict(text=title, font=dict(size=12), x=0.01), showlegend=False, plot_bgcolor="white",
                      xaxis=dict(range=[-0.5, w - 0.5], constrain="domain", tickfont=dict(size=10)),
                      yaxis=dict(range=[h - 0.5, -0.5], scaleanchor="x", constrain="domain",
                                 tickfont=dict(size=10)))
    return fig


def edit_images_figure(rows: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> go.Figure:
    """One row per edited model: (label, original image, edited image) -> original | edited | |edited − original|."""
    if not rows:
        return empty_figure("no edit applied", 160)
    titles = []
    for label, _, _ in rows:
        titles += [f"{label}: original", f"{label}: edited", "|edited − original| (one sample, descriptive)"]
    fig = make_subplots(rows=len(rows), cols=3, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.12 if len(rows) > 1 else 0.0)
    for r, (label, before, after) in enumerate(rows, start=1):
        fig.add_trace(go.Image(source=png_data_uri(before), hoverinfo="skip", name=f"{label} original"), row=r, col=1)
        fig.add_trace(go.Image(source=png_data_uri(after), hoverinfo="skip", name=f"{label} edited"), row=r, col=2)
        diff = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(-1)
        y_dom = fig.layout[f"yaxis{'' if r == 1 else (r - 1) * 3 + 1}"].domain
        fig.add_trace(go.Heatmap(z=diff, zmin=0, zmax=max(float(diff.max()), 1e-6), colorscale="OrRd",
                                 colorbar=dict(thickness=8, len=y_dom[1] - y_dom[0], y=sum(y_dom) / 2,
                                               tickfont=dict(size=10)),
                                 hovertemplate="|edited − original| %{z:.1f}<extra></extra>",
                                 name=f"{label} difference"), row=r, col=3)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    for i in range(1, len(rows) * 3 + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_annotations(font_size=11)
    fig.update_layout(height=60 + 200 * len(rows), margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
                      title=dict(text="edited vs original", font=dict(size=13), x=0.01))
    return fig


def changes_figure(changes: Mapping[str, Mapping[str, float]], names: Mapping[str, str] | None = None,
                   edited: Mapping[str, Sequence[str]] | None = None) -> go.Figure:
    """How far every layer moved (||after − before|| / ||before||) per edited model, in network order; the
    edited layers marked. One sample: descriptive."""
    if not changes:
        return empty_figure("how every layer changed appears with an edit", 120)
    names = dict(names or {})
    fig = go.Figure()
    colours = ("#d62728", "#1f77b4", "#2ca02c")
    for i, (model, per_layer) in enumerate(changes.items()):
        layers = list(per_layer)
        marked = set((edited or {}).get(model, ()))
        fig.add_trace(go.Bar(x=[names.get(n, n) for n in layers], y=[per_layer[n] for n in layers], name=model,
                             marker=dict(color=colours[i % len(colours)],
                                         line=dict(width=[2.5 if n in marked else 0 for n in layers],
                                                   color="#000")),
                             hovertemplate=f"{model} · %{{x}}<br>relative change %{{y:.3g}}<extra></extra>"))
    fig.update_layout(
        height=320, barmode="group", margin=dict(l=50, r=10, t=50, b=10), plot_bgcolor="white",
        title=dict(text="how every layer moved: ||edited − original|| / ||original|| at the first input "
                        "(one sample, descriptive; outlined: the edited layer)", font=dict(size=12), x=0.01),
        xaxis=dict(tickangle=-45, tickfont=dict(size=11), automargin=True),
        yaxis=dict(title="relative change", tickfont=dict(size=11)), legend=dict(orientation="h", y=1.08, x=1,
                                                                                xanchor="right"))
    return fig


def sweep_figure(rows: Sequence, drift: Mapping[str, float], names: Mapping[str, str] | None = None,
                 seeds: int = 0, class_text: str = "") -> go.Figure:
    """Left: per layer, the student's image RMSE when that layer takes the teacher's value at the same seed
    (mean over seeds, 95% bootstrap interval) and the same patch from another seed (the baseline); right:
    the weight drift of each block. Layers down the y axis, in network order."""
    if not rows:
        return empty_figure("run the sweep to see where the behaviour lives", 160)
    names = dict(names or {})
    layers = [r.layer for r in rows]
    y = [names.get(n, n) for n in layers]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04, column_widths=[0.62, 0.38],
                        subplot_titles=[f"teacher patched into the student: image RMSE over {seeds} seeds"
                                        f"{class_text}", "weight drift per block (exact)"])
    fig.add_trace(go.Bar(
        y=y, x=[r.rmse for r in rows], orientation="h", name="same seed (mean, 95% bootstrap interval)",
        marker_color="#4c78a8",
        error_x=dict(type="data", symmetric=False, array=[r.high - r.rmse for r in rows],
                     arrayminus=[r.rmse - r.low for r in rows], color="#222", thickness=1.2),
        customdata=[[r.low, r.high, r.other_seed] for r in rows],
        hovertemplate="%{y}<br>RMSE %{x:.4g} [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<br>"
                      "other-seed baseline %{customdata[2]:.4g}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(y=y, x=[r.other_seed for r in rows], mode="markers", name="baseline: patch from "
                             "another seed of the class", marker=dict(symbol="diamond", size=9, color="#999",
                                                                     line=dict(width=1, color="#333")),
                             hovertemplate="%{y}<br>other-seed baseline %{x:.4g}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(y=[names.get(n, n) for n in drift], x=list(drift.values()), orientation="h",
                         name="||W_student − W_teacher|| / ||W_teacher||", marker_color="#f58518",
                         hovertemplate="%{y}<br>relative weight change %{x:.4g}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=11), categoryorder="array", categoryarray=y)
    fig.update_xaxes(tickfont=dict(size=10), rangemode="tozero")
    fig.update_annotations(font_size=11)
    fig.update_layout(height=max(300, 22 * len(rows) + 140), margin=dict(l=10, r=10, t=70, b=10),
                      plot_bgcolor="white", barmode="overlay",
                      legend=dict(orientation="h", y=-0.04, yanchor="top", x=0, font=dict(size=11)),
                      title=dict(text="where the behaviour lives (descriptive of these seeds)", font=dict(size=13),
                                 x=0.01))
    return fig


# -- the form -----------------------------------------------------------------------------------------

def parse_channels(text) -> list[int] | None:
    """'0-7, 12' -> [0..7, 12]; empty -> None (every channel); a UserError says what is wrong."""
    if text is None or not str(text).strip():
        return None
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", part)
        if not m:
            raise UserError(f"channels: {part!r} is not a channel or a range like 0-7")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a or b - a > 4096:
            raise UserError(f"channels: {part!r} is not a range from low to high")
        out += range(a, b + 1)
    if len(out) > 4096:
        raise UserError("channels: at most 4096")
    return sorted(set(out))


def _number(value, what: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise UserError(f"{what}: expected a number")
    return float(value)


def build_spec(c: AppContext, model, layer, op, channels, region, sigma_low, sigma_high, factor, source,
               source_seed, class_a, class_b, selection, neighbours=None) -> EditSpec:
    """The form as a checked EditSpec (a UserError says what is wrong, in the page's words)."""
    if not model or not layer:
        raise UserError("pick a model and a layer to edit")
    if op not in OPS:
        raise UserError(f"pick an operation ({', '.join(OPS)})")
    shape = c.inspector.slots[model].adapter.layer_shapes()[layer] if model in c.inspector.slots else None
    chans = parse_channels(channels)
    if chans and shape and chans[-1] >= shape[1]:
        raise UserError(f"channels: {layer} has {shape[1]} channels (0 .. {shape[1] - 1})")
    if region is not None and shape and (region[2] > shape[2] or region[3] > shape[3]):
        raise UserError(f"region: {layer} is {shape[2]}x{shape[3]}")
    low, high = _number(sigma_low, "sigma from"), _number(sigma_high, "sigma to")
    sigma = None if low is None and high is None else (low or 0.0, high if high is not None else 1e9)
    fac = _number(factor, "factor")
    src = None
    if op in ("mean", "replace", "add"):
        if source == "other":
            src = "other"
        elif source == "seed":
            seed, why = parse_seed(source_seed)
            if seed is None:
                raise UserError(f"source seed: {why}")
            src = f"seeds:{seed}" if op == "mean" else f"seed:{seed}"
        elif source == "selection":
            rows = c.valid_rows(selection or [])
            seeds = list(dict.fromkeys(int(s) for s in c.frame.iloc[rows]["seed"])) if rows else []
            if not seeds:
                raise UserError("the selection is empty: box or lasso some points of the scatter first")
            src = "seeds:" + ",".join(map(str, seeds[:MAX_SELECTION_SEEDS]))
        elif source == "neighbours":
            if not neighbours or c.neighbours is None:
                raise UserError("no neighbours yet: click a point of the map (the neighbours gallery lists them)")
            src = c.neighbours.edit_source(neighbours["query"], neighbours["rows"])
        elif source == "classes":
            if class_a is None or class_b is None:
                raise UserError("pick classes A and B for the direction A − B")
            src = f"classes:{int(class_a)}-{int(class_b)}"
        else:
            raise UserError(f"{OP_LABELS[op]} needs a source")
    data = {"model": model, "layer": layer, "op": op, "channels": chans,
            "region": list(region) if region else None, "sigma": list(sigma) if sigma else None,
            "factor": 1.0 if fac is None else fac, "source": src}
    return EditSpec.from_dict(data)


# -- layout -------------------------------------------------------------------------------------------

def _edit_box(info: LayoutInfo) -> html.Div:
    models = list(info.models)
    default_model = next((m for m in models if m != info.teacher), models[0] if models else None)
    class_options = [{"label": f"{c} · {name}", "value": c} for c, name in info.classes]
    canonical = [n for n in info.layers if not n.startswith(("enc.", "dec."))] or list(info.layers)
    default_layer = "encoder_bottleneck" if "encoder_bottleneck" in canonical else (canonical[0] if canonical
                                                                                    else None)
    field = {"display": "flex", "gap": "6px", "alignItems": "center", "flexWrap": "wrap", "marginTop": "6px"}
    return html.Div([
        html.Div("Edit a layer and regenerate (the sample in the panels; one sample: descriptive)",
                 style={**SMALL, "fontWeight": "600"}),
        html.Div([
            html.Div([
                html.Div([html.Span("model", style=SMALL),
                          radio(ID.edit_model, {m: m for m in models}, default_model)], style=field),
                html.Div([html.Span("layer", style=SMALL),
                          html.Div(dcc.Dropdown(id=ID.edit_layer, options=[{"label": n, "value": n} for n in canonical],
                                                value=default_layer, clearable=False), style={"width": "220px"})],
                         style=field),
                html.Div([html.Span("operation", style=SMALL),
                          radio(ID.edit_op, OP_LABELS, "zero")], style=field),
                html.Div([html.Span("channels", style=SMALL),
                          dcc.Input(id=ID.edit_channels, type="text", placeholder="e.g. 0-7, 12 (empty: all)",
                                    maxLength=200, style={"width": "170px"}),
                          html.Span("factor", style=SMALL),
                          dcc.Input(id=ID.edit_factor, type="number", value=1, min=-1e5, max=1e5,
                                    style={"width": "70px"})], style=field),
                html.Div([html.Span("σ from", style=SMALL),
                          dcc.Input(id=ID.edit_sigma_low, type="number", min=0, max=1e4, placeholder="any",
                                    style={"width": "70px"}),
                          html.Span("to", style=SMALL),
                          dcc.Input(id=ID.edit_sigma_high, type="number", min=0, max=1e4, placeholder="any",
                                    style={"width": "70px"}),
                          html.Span("(the teacher's steps whose σ is in range; empty: every step)", style=SMALL)],
                         style=field),
                html.Div([html.Span("values from", style=SMALL),
                          html.Div(dcc.Dropdown(id=ID.edit_source, options=[{"label": v, "value": k}
                                                                            for k, v in SOURCES.items()],
                                                value="other", clearable=False), style={"width": "260px"}),
                          dcc.Input(id=ID.edit_source_seed, type="text", placeholder="seed", maxLength=20,
                                    style={"width": "90px"})], style=field),
                html.Div([html.Span("class A", style=SMALL),
                          html.Div(dcc.Dropdown(id=ID.edit_class_a, options=class_options, placeholder="A"),
                                   style={"width": "150px"}),
                          html.Span("minus class B", style=SMALL),
                          html.Div(dcc.Dropdown(id=ID.edit_class_b, options=class_options, placeholder="B"),
                                   style={"width": "150px"})], style=field),
            ], style={"flex": "3 1 340px", "minWidth": "0"}),
            html.Div([
                dcc.Graph(id=ID.edit_region_graph, figure=region_figure(None, ""),
                          config={"displaylogo": False, "modeBarButtonsToAdd": ["select2d", "lasso2d"]}),
                html.Div([html.Span(id=ID.edit_region_text, style=SMALL, children="region: the whole map"),
                          html.Button("clear region", id=ID.edit_region_clear, n_clicks=0)],
                         className="viz-toolbar"),
            ], style={"flex": "1 1 280px", "minWidth": "0"}),
        ], className="viz-row"),
        html.Div([
            html.Button("apply edit", id=ID.edit_apply, n_clicks=0, disabled=not info.has_models),
            html.Button("undo last", id=ID.edit_undo, n_clicks=0),
            html.Button("clear edits", id=ID.edit_clear, n_clicks=0),
            dcc.Checklist(id=ID.edit_full_run, options=[{"label": "teacher edits: also run its whole sampler "
                                                                  "(slower)", "value": "full"}],
                          value=[], inputStyle={"marginRight": "4px"}, labelStyle={"fontSize": "12px"}),
            html.Span(id=ID.edit_message, style=ERROR, role="status"),
        ], className="viz-toolbar", style={"marginTop": "8px"}),
        html.Ol(id=ID.edit_list, style={**SMALL, "margin": "6px 0 0 0"}),
        dcc.Store(id=ID.edits, storage_type="memory", data=[]),
        dcc.Store(id=ID.edit_region, storage_type="memory"),
    ], style=BOX)


def _edited_box() -> html.Div:
    return html.Div([
        html.Div(id=ID.edit_status, style=SMALL),
        dcc.Graph(id=ID.edit_images, figure=empty_figure("no edit applied", 120), config={"displaylogo": False}),
        dcc.Graph(id=ID.edit_changes, figure=empty_figure("how every layer changed appears with an edit", 120),
                  config={"displaylogo": False}),
    ], id=ID.edit_result, style=BOX)


def _sweep_box(info: LayoutInfo) -> html.Div:
    return html.Div([
        html.Div("Where the behaviour lives: patch each layer of the teacher into the student, seed by seed",
                 style={**SMALL, "fontWeight": "600"}),
        html.Div([
            html.Span("seeds", style=SMALL),
            dcc.Input(id=ID.sweep_seeds, type="text", value=DEFAULT_SWEEP_SEEDS, maxLength=200,
                      style={"width": "120px"}),
            html.Span("at the panels' class (class 0 before a click)", style=SMALL),
            html.Button("run the sweep", id=ID.sweep_run, n_clicks=0, disabled=len(info.models) < 2),
            html.Span(id=ID.sweep_status, style=SMALL),
        ], className="viz-toolbar"),
        dcc.Loading(dcc.Graph(id=ID.sweep_graph, figure=empty_figure("run the sweep to see where the behaviour "
                                                                      "lives", 120),
                              config={"displaylogo": False}), type="circle"),
    ], style=BOX)


def layout(info: LayoutInfo) -> list:
    """The edit box, the edited box, and the patch sweep."""
    if len(info.models) < 1:
        return []
    return [_edit_box(info), _edited_box(), _sweep_box(info)]


# -- callbacks ----------------------------------------------------------------------------------------

def layer_options(c: AppContext, naming) -> list[dict]:
    """The edit's layer picker, labelled in the page's naming (values canonical)."""
    return panels.layer_options(c, naming)


def region(c: AppContext, first, model, layer, _clear=None, painted=None) -> go.Figure:
    """The layer's heatmap of `model` for the sample in the panels (its first look, cached), to paint on (a
    new figure clears the box drawn on the old one: "clear region" redraws it)."""
    if not first or model not in c.inspector.slots or not layer:
        return region_figure(None, "")
    req = request_from(first)
    look = c.inspector.first_look(Request.make(req.seed, req.class_label, [layer], req.reduction), models=[model])
    m = look.views[model].maps[layer]
    return region_figure(m, f"{model} · {layer}: drag a box (or lasso) to paint", painted)


def pick_region(c: AppContext, trigger, selected, _clear=None) -> tuple:
    """(region store, text): the rows and columns of the painted cells, (r0, c0, r1, c1) end-exclusive."""
    if trigger == ID.edit_region_clear or selected is None:      # the button, or a double click in the map
        return None, "region: the whole map"
    points = [p for p in selected.get("points", []) if isinstance(p, dict)]
    cells = [(p.get("y"), p.get("x")) for p in points
             if isinstance(p.get("x"), (int, float)) and isinstance(p.get("y"), (int, float))]
    if not cells:       # Plotly also reports an empty selection when it redraws: not a choice of the user's
        return no_update, no_update
    rows = [int(round(r)) for r, _ in cells]
    cols = [int(round(col)) for _, col in cells]
    box = [min(rows), min(cols), max(rows) + 1, max(cols) + 1]
    return box, f"region: rows {box[0]}-{box[2]}, cols {box[1]}-{box[3]} (ends excluded; {len(cells)} cells painted)"


def edit_list(c: AppContext, trigger, _apply, _undo, _clear, edits, model, layer, op, channels, painted, sigma_low,
              sigma_high, factor, source, source_seed, class_a, class_b, selection, neighbours=None) -> tuple:
    """(edits store, message): apply the form as one more edit (checked), undo the last, or clear them all."""
    edits = list(edits or [])
    if trigger == ID.edit_clear:
        return [], ""
    if trigger == ID.edit_undo:
        return (edits[:-1], "") if edits else (no_update, "nothing to undo")
    if trigger != ID.edit_apply:
        raise PreventUpdate
    if len(edits) >= MAX_EDITS:
        return no_update, f"at most {MAX_EDITS} edits at once: undo or clear some"
    try:
        spec = build_spec(c, model, canonical_name(layer or "", c.inspector.aliases()) or layer, op, channels,
                          painted, sigma_low, sigma_high, factor, source, source_seed, class_a, class_b, selection,
                          neighbours)
    except UserError as e:
        return no_update, str(e)
    return [*edits, spec.to_dict()], ""


def _specs(edits) -> list[EditSpec]:
    return [EditSpec.from_dict(e) for e in edits or []]


def edited(c: AppContext, edits, first, naming=None, full_run=None) -> tuple:
    """(images figure, changes figure, edit list items, status) for the sample in the panels with `edits`.

    The edited first look comes from the engine's cache like any click (an undo is a cache hit); edits of a
    model the page hides are left out and said so. With `full_run`, a teacher edit also runs the teacher's
    whole sampler, edited and not, and shows both final images.
    """
    specs = _specs(edits)
    aliases = c.inspector.aliases()
    items = [html.Li(spec.label().replace(spec.layer, shown_name(spec.layer, naming, aliases), 1))
             for spec in specs]
    if not specs:
        return (empty_figure("no edit applied", 120), empty_figure("how every layer changed appears with an edit",
                                                                   120), items, "")
    if not first:
        return (empty_figure("click a sample to edit it", 120), no_update, items,
                "the edits apply to the sample in the panels: click a point first")
    models = models_of(first)
    kept = [s for s in specs if models is None or s.model in models]
    dropped = len(specs) - len(kept)
    req = request_from(first)
    edited_req = Request.make(req.seed, req.class_label, req.layers, req.reduction, edits=kept)
    try:
        look = c.inspector.first_look(edited_req, models=models)
    except UserError as e:
        return no_update, no_update, items, html.Span(f"error: {e}", style={"color": "#b00"})
    rows = []
    for key in look.originals:
        slot = c.inspector.slots[key]
        what = "first step" if slot.multi_step else "sample"
        rows.append((f"{key} ({what})", look.originals[key].image, look.views[key].image))
    status = (f"seed {req.seed}, class {req.class_label}: {len(kept)} edit{'s' if len(kept) != 1 else ''} applied "
              f"in {look.seconds:.2f} s (cached: undo and redo are instant)")
    if dropped:
        status += f"; {dropped} edit(s) of a hidden model left out"
    teacher = c.teacher
    if full_run and teacher and teacher in look.originals:
        traj_edit = c.inspector.trajectory(teacher, edited_req)
        traj_orig = c.inspector.trajectory(teacher, req)
        rows.append((f"{teacher} (final, {traj_edit.num_steps} steps)", traj_orig.final, traj_edit.final))
    names = {n: shown_name(n, naming, aliases) for ch in look.changes.values() for n in ch}
    marked = {}
    for s in kept:
        marked.setdefault(s.model, []).append(shown_name(s.layer, "native", aliases))
    return edit_images_figure(rows), changes_figure(look.changes, names, marked), items, status


def sweep(c: AppContext, _n, seeds_text, first, naming=None) -> tuple:
    """(figure, status): the teacher-into-student patch sweep over `seeds_text` at the panels' class, beside
    the weight drift per block."""
    try:
        seeds = parse_seeds(seeds_text, c.inspector.MAX_SWEEP_SEEDS)
        label = int(first["class_label"]) if first else 0
        rows = c.inspector.patch_sweep(seeds, label)
        drift = c.inspector.weight_drift()
    except UserError as e:
        return no_update, html.Span(f"error: {e}", style={"color": "#b00"})
    aliases = c.inspector.aliases()
    names = {n: shown_name(n, naming, aliases) for n in [*(r.layer for r in rows), *drift]}
    figure = sweep_figure(rows, drift, names, len(seeds), f" at class {label} ({c.class_name(label)})")
    top = max(rows, key=lambda r: r.rmse)
    return figure, (f"{len(seeds)} seeds, {len(rows)} layers; largest: {names[top.layer]} "
                    f"{top.rmse:.3g} [{top.low:.3g}, {top.high:.3g}] against {top.other_seed:.3g} from another seed")


def register(app: dash.Dash, c: AppContext) -> None:
    if not c.inspector.slots:
        return
    app.callback(Output(ID.edit_layer, "options"), Input(ID.naming, "value"))(bind(layer_options, c))
    app.callback(Output(ID.edit_region_graph, "figure"), Input(ID.first_ready, "data"), Input(ID.edit_model, "value"),
                 Input(ID.edit_layer, "value"), Input(ID.edit_region_clear, "n_clicks"),
                 prevent_initial_call=True)(bind(region, c))
    app.callback(Output(ID.edit_region, "data"), Output(ID.edit_region_text, "children"),
                 Input(ID.edit_region_graph, "selectedData"), Input(ID.edit_region_clear, "n_clicks"),
                 prevent_initial_call=True)(bind(pick_region, c, triggered=True))
    app.callback(Output(ID.edits, "data"), Output(ID.edit_message, "children"),
                 Input(ID.edit_apply, "n_clicks"), Input(ID.edit_undo, "n_clicks"), Input(ID.edit_clear, "n_clicks"),
                 State(ID.edits, "data"), State(ID.edit_model, "value"), State(ID.edit_layer, "value"),
                 State(ID.edit_op, "value"), State(ID.edit_channels, "value"), State(ID.edit_region, "data"),
                 State(ID.edit_sigma_low, "value"), State(ID.edit_sigma_high, "value"),
                 State(ID.edit_factor, "value"), State(ID.edit_source, "value"), State(ID.edit_source_seed, "value"),
                 State(ID.edit_class_a, "value"), State(ID.edit_class_b, "value"), State(ID.selection, "data"),
                 State(ID.neighbours, "data"), prevent_initial_call=True)(bind(edit_list, c, triggered=True))
    app.callback(Output(ID.edit_images, "figure"), Output(ID.edit_changes, "figure"), Output(ID.edit_list, "children"),
                 Output(ID.edit_status, "children"), Input(ID.edits, "data"), Input(ID.first_ready, "data"),
                 Input(ID.naming, "value"), Input(ID.edit_full_run, "value"),
                 prevent_initial_call=True)(bind(edited, c))
    app.callback(Output(ID.sweep_graph, "figure"), Output(ID.sweep_status, "children"),
                 Input(ID.sweep_run, "n_clicks"), State(ID.sweep_seeds, "value"), State(ID.first_ready, "data"),
                 State(ID.naming, "value"), prevent_initial_call=True)(bind(sweep, c))
