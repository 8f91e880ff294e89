"""The inspector panels: the regenerated sample, teacher and student side by side, layer by layer.

Layout: one box with the models line, the seed/class picker, the layer and reduction pickers, the
status line, the teacher's progress bar with its cancel button, the step slider, the PNG download,
the comparison panels and the similarity chart. Figures: `comparison_figure` (images, a heatmap grid
per layer on one colour scale per layer, a difference row) and `similarity_figure` (cosine and CKA
per layer). Callbacks, each a module-level function from inputs to outputs:

- `first_look(ctx, clicked, ...)`: every model at the shared first input (the fast path); fills
  `first-ready`, the similarity chart and the status line;
- `teacher_run(ctx, set_progress, first, should_stop)`: the multi-step teacher's whole run, the body
  of a background callback (a thread of `ThreadedJobManager`, chained on `first-ready` so the fast
  path always gets the teacher's lock first) with a progress bar and a cancel button; a new click or
  new layers cancel it too, so the next first look gets the lock at once. Its result goes to
  `trajectory-ready` through `set_props`: a declared output would make Dash hold `render` (and so
  the student's panel) until the teacher finished;
- `slider(ready)`, `render(ctx, first, ready, step)`: the step slider and the panels from the
  server cache (the teacher at the chosen step once its run is done);
- `layer_preset(ctx, trigger)`, `reduction_arg(reduction)`: the pickers' buttons and argument;
- the PNG download is drawn by Plotly in the browser (a clientside callback, `DOWNLOAD_PNG_JS`).
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, dcc, html, no_update, set_props
from dash.exceptions import PreventUpdate
from PIL import Image
from plotly.subplots import make_subplots

from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.jobs import current_job
from visualizer.app.ui import BOX, HIDDEN, SMALL, empty_figure
from visualizer.errors import UserError
from visualizer.inspection import Request
from visualizer.trace.reductions import PARAMETRIC, reduction_spec

PROGRESS_EVERY_S = 0.1
PROGRESS_VISIBLE = {"display": "flex", "alignItems": "center", "gap": "8px", "margin": "6px 0"}


def request_data(req: Request) -> dict:
    return {"seed": req.seed, "class_label": req.class_label, "layers": list(req.layers), "reduction": req.reduction}


def request_from(data: dict) -> Request:
    return Request.make(data["seed"], data["class_label"], data["layers"], data["reduction"])


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


# -- layout -------------------------------------------------------------------------------------------

def _manual(info: LayoutInfo) -> html.Div:
    class_options = [{"label": f"{c} · {name}", "value": c} for c, name in info.classes]
    return html.Div([
        html.Span("or pick a seed", style=SMALL),
        dcc.Input(id=ID.seed_input, type="number", min=0, step=1, value=0, style={"width": "90px"}),
        html.Span("and class", style=SMALL),
        html.Div(dcc.Dropdown(id=ID.class_input, options=class_options,
                              value=class_options[0]["value"] if class_options else None, clearable=False),
                 style={"width": "220px"}),
        html.Button("generate", id=ID.generate, n_clicks=0, disabled=not info.has_models),
    ], style={"display": "flex", "gap": "8px", "alignItems": "center", "flexWrap": "wrap"})


def _inspector(info: LayoutInfo) -> html.Div:
    layer_options = [{"label": n, "value": n} for n in info.layers]
    return html.Div([
        html.Div(info.models_line, style={**SMALL, "marginBottom": "6px"}),
        _manual(info),
        html.Div([
            html.Div([
                html.Label("layers", style=SMALL),
                dcc.Dropdown(id=ID.layer_pick, options=layer_options, value=list(info.default_layers), multi=True,
                             placeholder="pick layers"),
                html.Div([
                    html.Button("a few", id=ID.layers_default, n_clicks=0),
                    html.Button("all legacy names", id=ID.layers_legacy, n_clicks=0),
                    html.Button("all native names", id=ID.layers_native, n_clicks=0),
                ], style={"display": "flex", "gap": "6px", "marginTop": "4px"}),
            ], style={"flex": "3"}),
            html.Div([
                html.Label("reduction", style=SMALL),
                dcc.Dropdown(id=ID.reduction, options=[{"label": r, "value": r} for r in info.reductions],
                             value="l2", clearable=False),
                dcc.Input(id=ID.reduction_arg, type="number", min=0, step=1, placeholder="channel / k",
                          disabled=True, style={"width": "100%", "marginTop": "4px"}),
            ], style={"flex": "1"}),
        ], style={"display": "flex", "gap": "10px", "marginTop": "8px"}),
        html.Div(id=ID.status, style={**SMALL, "margin": "8px 0"},
                 children="Click a point (or pick a seed) to regenerate it." if info.has_models
                 else "No model loaded: start with --teacher/--student or --adapter/--checkpoint_path to regenerate."),
        html.Div([
            html.Span(f"{info.teacher or 'teacher'}:", style=SMALL),
            html.Progress(id=ID.progress, value="0", max="1", style={"width": "260px"}),
            html.Span(id=ID.progress_text, style=SMALL),
            html.Button("cancel", id=ID.cancel, n_clicks=0, disabled=True),
        ], id=ID.progress_row, style=HIDDEN),
        html.Div([
            html.Div(id=ID.step_label, style=SMALL,
                     children="step slider: available once the teacher's run finishes" if info.teacher else ""),
            dcc.Slider(id=ID.slider, min=0, max=max(1, (info.teacher_steps or 1) - 1), step=1, value=0,
                       disabled=True, marks=None, tooltip={"placement": "bottom", "always_visible": False},
                       updatemode="drag"),
        ], style={} if info.teacher else HIDDEN),
        html.Div([
            html.Button("download panels (PNG)", id=ID.download_png, n_clicks=0),
            html.Span(id=ID.png_done, style=SMALL),
        ], style={"display": "flex", "gap": "8px", "alignItems": "center"}),
        html.Div(dcc.Graph(id=ID.panels, figure=empty_figure("no sample yet"), config={"displaylogo": False}),
                 style={"overflowX": "auto"}),
        dcc.Graph(id=ID.similarity, figure=empty_figure("similarity per layer appears with two models", 160),
                  config={"displaylogo": False}),
    ], style=BOX)


def layout(info: LayoutInfo) -> list:
    """The inspector box."""
    return [_inspector(info)]


# -- callbacks ----------------------------------------------------------------------------------------

def first_look(c: AppContext, clicked, layers, reduction, reduction_arg) -> tuple:
    """(first-ready, trajectory-ready, similarity figure, status) for the sample in the `clicked` store.

    Regenerates every model at the shared first input (a cache hit when seen before); a request the
    models refuse (unknown layer, class out of range) leaves everything as it was and says why.
    """
    if not clicked or not c.inspector.slots:
        raise PreventUpdate
    try:
        req = Request.make(clicked["seed"], clicked["class_label"], layers or c.default_layers,
                           reduction_spec(reduction, reduction_arg if reduction in PARAMETRIC else None))
        look = c.inspector.first_look(req)
    except UserError as e:
        return no_update, no_update, no_update, html.Span(f"error: {e}", style={"color": "#b00"})
    where = f"sample {clicked['sample_id']}" if clicked.get("sample_id") else "sample"
    status = (f"{where}: seed {req.seed}, class {req.class_label} · {c.class_name(req.class_label)} — "
              f"shared first input computed in {look.seconds:.2f} s"
              + (f"; the {c.teacher}'s full run follows" if c.teacher else ""))
    title = None
    if look.pair:
        title = f"{look.pair[0]} vs {look.pair[1]} per layer at the shared first input (σ 80)"
    similarity = similarity_figure(look.similarity, title) if look.similarity else \
        empty_figure("similarity per layer needs two models", 160)
    return request_data(req), None, similarity, status


def teacher_run(c: AppContext, set_progress: Callable[[tuple[str, str, str]], None], first,
                should_stop: Callable[[], None] | None = None) -> dict:
    """The teacher's whole trajectory for the request in `first-ready`: what goes into `trajectory-ready`.

    `set_progress((value, max, text))` is called at most every PROGRESS_EVERY_S seconds and at the
    last step; `should_stop()` before every network evaluation (it raises to abandon the run).
    """
    if not first or c.teacher is None:
        raise PreventUpdate
    req = request_from(first)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            set_progress((str(done), str(total), f"step {done} / {total}"))

    traj = c.inspector.trajectory(c.teacher, req, progress=progress, should_stop=should_stop)
    return {**first, "model": c.teacher, "num_steps": len(traj.steps), "sigmas": traj.sigmas,
            "seconds": round(traj.seconds, 3)}


def slider(ready) -> tuple:
    """(max, disabled, marks, value) of the step slider for the teacher's finished run (disabled without one)."""
    if not ready:
        return no_update, True, None, 0
    n = ready["num_steps"]
    picks = sorted({0, n - 1, *range(0, n, max(1, n // 6))})
    marks = {i: f"σ {ready['sigmas'][i]:.3g}" for i in picks}
    return n - 1, False, marks, 0


def render(c: AppContext, first, ready, step) -> tuple[go.Figure, str]:
    """(panels figure, step label): every model at the first input, the teacher at `step` once its run is done."""
    if not first:
        raise PreventUpdate
    inspector = c.inspector
    req = request_from(first)
    look = inspector.first_look(req)          # a cache hit unless evicted, then recomputed
    traj = None
    if ready and c.teacher and request_from(ready) == req:
        traj = inspector.cached_trajectory(c.teacher, req)
    k = min(int(step or 0), len(traj.steps) - 1) if traj else 0
    panels = []
    for key in inspector.shown():
        slot = inspector.slots[key]
        if traj is not None and key == c.teacher:
            view = traj.steps[k]
            label = f"{key} · step {k + 1}/{traj.num_steps} · σ {view.sigma:.3g}"
        else:
            view = look.views[key]
            label = f"{key} · step 1/{slot.num_steps()} · σ {view.sigma:.3g}" if slot.multi_step else \
                f"{key} · {slot.num_steps()} step · σ {view.sigma:.3g}"
        panels.append(Panel(label, view.image, view.maps))
    title = f"seed {req.seed} · class {req.class_label} ({c.class_name(req.class_label)}) · {req.reduction}"
    fig = comparison_figure(panels, req.layers, title=title)
    if traj is not None:
        label = f"{c.teacher}: step {k + 1} of {traj.num_steps}, σ = {traj.steps[k].sigma:.4g} " \
                f"({traj.seconds:.1f} s run); the first step is the student's input"
    elif c.teacher:
        label = f"{c.teacher}: showing the first step (the student's input); the run is in progress or cancelled"
    else:
        label = ""
    return fig, label


def layer_preset(c: AppContext, trigger, *_n_clicks) -> list[str]:
    """The layers of the preset button `trigger` (its id): a few, all legacy names, or all native names."""
    return {ID.layers_default: c.default_layers, ID.layers_legacy: c.inspector.legacy_layers(),
            ID.layers_native: c.inspector.native_layers()}[trigger]


def reduction_arg(reduction) -> tuple[bool, int | None]:
    """(disabled, value) of the reduction's argument: enabled with its default for channel and topk."""
    if reduction in PARAMETRIC:
        return False, PARAMETRIC[reduction][1]
    return True, None


DOWNLOAD_PNG_JS = """
function(n) {
    if (!n) { return window.dash_clientside.no_update; }
    const gd = document.querySelector('#panels .js-plotly-plot');
    if (!gd) { return 'nothing to download yet'; }
    const w = gd._fullLayout ? gd._fullLayout.width : 800, h = gd._fullLayout ? gd._fullLayout.height : 600;
    return Plotly.downloadImage(gd, {format: 'png', filename: 'panels', width: w, height: h})
        .then(function() { return 'saved panels.png'; });
}
"""


def register(app: dash.Dash, c: AppContext) -> None:
    app.callback(Output(ID.first_ready, "data"), Output(ID.trajectory_ready, "data"),
                 Output(ID.similarity, "figure"), Output(ID.status, "children"),
                 Input(ID.clicked, "data"), Input(ID.layer_pick, "value"), Input(ID.reduction, "value"),
                 Input(ID.reduction_arg, "value"), prevent_initial_call=True)(bind(first_look, c))

    @app.callback(Output(ID.trajectory_done, "data"), Input(ID.first_ready, "data"),
                  background=True, interval=250, prevent_initial_call=True,
                  progress=[Output(ID.progress, "value"), Output(ID.progress, "max"),
                            Output(ID.progress_text, "children")],
                  progress_default=["0", "1", ""],
                  # A new click or new layers also cancel this tab's run: the next first look needs the lock.
                  cancel=[Input(ID.cancel, "n_clicks"), Input(ID.clicked, "data"), Input(ID.layer_pick, "value"),
                          Input(ID.reduction, "value"), Input(ID.reduction_arg, "value")],
                  running=[(Output(ID.cancel, "disabled"), False, True),
                           (Output(ID.progress_row, "style"), PROGRESS_VISIBLE, HIDDEN)])
    def teacher_job(set_progress, first):
        ready = teacher_run(c, set_progress, first, should_stop=current_job().check)
        set_props(ID.trajectory_ready, {"data": ready})
        return {"seconds": ready["seconds"]}

    app.callback(Output(ID.slider, "max"), Output(ID.slider, "disabled"), Output(ID.slider, "marks"),
                 Output(ID.slider, "value"), Input(ID.trajectory_ready, "data"), prevent_initial_call=True)(slider)
    app.callback(Output(ID.panels, "figure"), Output(ID.step_label, "children"),
                 Input(ID.first_ready, "data"), Input(ID.trajectory_ready, "data"), Input(ID.slider, "value"),
                 prevent_initial_call=True)(bind(render, c))
    app.callback(Output(ID.layer_pick, "value"), Input(ID.layers_default, "n_clicks"),
                 Input(ID.layers_legacy, "n_clicks"), Input(ID.layers_native, "n_clicks"),
                 prevent_initial_call=True)(bind(layer_preset, c, triggered=True))
    app.callback(Output(ID.reduction_arg, "disabled"), Output(ID.reduction_arg, "value"),
                 Input(ID.reduction, "value"))(reduction_arg)
    app.clientside_callback(DOWNLOAD_PNG_JS, Output(ID.png_done, "children"), Input(ID.download_png, "n_clicks"),
                            prevent_initial_call=True)
