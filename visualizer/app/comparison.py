"""Teacher vs student over many samples (issue 15): the CKA matrix, its diagonal, and the sigma alignment.

The per-sample chart in the panels is one sample, descriptive; this box answers over many samples.
Everything is computed by the engine (`visualizer.inspection.comparison.Comparisons`: the matrix and the
alignment from the embed run's pooled stores or a fresh trace, cached), as background jobs with a
progress bar and a cancel button, each on its own small job manager (one job per page per kind, one
running at a time, two waiting): a comparison never holds up a click's teacher run in the panels'
queue, and the models' locks are taken per batch, so a click's first look goes in between.

Layout: the controls (layers, the teacher step, where the rows come from, the seeds of a fresh trace,
one class or all, resamples), the matrix as a heatmap (hover: value, 95% interval, the shuffled-pair
null range), its diagonal (matched layers) with the interval as a band and the null band, and the
sigma-alignment box (its own seeds and source) with its heatmap and the ridge. Figures:
`matrix_figure`, `diagonal_figure`, `alignment_figure`. Callbacks, each `fn(ctx, ...)`:

- `layer_options(ctx, naming)`: the layer picker in the page's naming;
- `matrix_job(ctx, set_progress, n, layers, step, source, seeds, class, resamples, naming, should_stop)`:
  the matrix and its diagonal, and a status line saying which teacher step and sigma, the samples, and
  where the rows came from (pooled stores or a fresh trace at full resolution);
- `alignment_job(ctx, set_progress, n, layers, source, seeds, resamples, naming, should_stop)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from visualizer.app import panels
from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.jobs import ThreadedJobManager, current_job
from visualizer.app.panels import shown_name
from visualizer.app.ui import BOX, HIDDEN, SMALL, empty_figure, parse_seeds, radio
from visualizer.errors import UserError
from visualizer.inspection.comparison import (
    MAX_ALIGNMENT_SEEDS,
    MAX_MATRIX_SEEDS,
    MAX_RESAMPLES,
    AlignmentQuery,
    Comparisons,
    MatrixQuery,
)
from visualizer.metrics.cka import CKAMatrix, SigmaAlignment

SOURCE_LABELS = {"auto": "the run's pooled stores when it holds them, else a fresh trace",
                 "stores": "the run's pooled stores", "trace": "a fresh trace at full resolution"}
ALIGN_SOURCE_LABELS = {"auto": "the run's all-step stores when present, else a fresh trace",
                       "stores": "all-step stores", "trace": "a fresh trace (pooled like embed)"}
DEFAULT_SEEDS = "0-199"
DEFAULT_ALIGNMENT_SEEDS = "0-31"
DEFAULT_RESAMPLES = 200
PROGRESS_ROW = {"display": "flex", "alignItems": "center", "gap": "8px", "margin": "4px 0", "flexWrap": "wrap"}
ALL_CLASSES = "all"


# -- figures ------------------------------------------------------------------------------------------

def _names(names: Mapping[str, str] | None, layers) -> list[str]:
    names = dict(names or {})
    return [names.get(n, n) for n in layers]


def _f(v) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.3f}"


def matrix_figure(m: CKAMatrix | None, names: Mapping[str, str] | None = None, title: str = "") -> go.Figure:
    """Teacher layers (rows) x student layers (columns): debiased CKA, hover with its interval and null."""
    if m is None:
        return empty_figure("compute the matrix to see it", 160)
    rows, cols = _names(names, m.rows), _names(names, m.cols)
    custom = np.stack([m.lo, m.hi, m.null_lo, m.null_hi, m.p_null], axis=-1)
    finite = m.estimate[np.isfinite(m.estimate)]
    fig = go.Figure(go.Heatmap(
        z=m.estimate, x=cols, y=rows, zmin=min(0.0, float(finite.min())) if finite.size else 0.0, zmax=1.0,
        colorscale="Viridis", customdata=custom, colorbar=dict(thickness=10, title=dict(text="CKA", side="right"),
                                                                tickfont=dict(size=10)),
        hovertemplate="teacher %{y} × student %{x}<br>CKA %{z:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                      f" ({m.confidence:.0%} interval)<br>shuffled-pair null [%{{customdata[2]:.3f}}, "
                      "%{customdata[3]:.3f}], p %{customdata[4]:.3g}<extra></extra>"))
    side = 24 + 18 * len(rows)
    fig.update_layout(
        height=max(260, side + 190), margin=dict(l=10, r=10, t=80, b=10), plot_bgcolor="white",
        title=dict(text=title, font=dict(size=12), x=0.01),
        xaxis=dict(title=dict(text="student layer", font=dict(size=11)), tickangle=-45, tickfont=dict(size=10),
                   automargin=True, constrain="domain"),
        yaxis=dict(title=dict(text="teacher layer", font=dict(size=11)), autorange="reversed",
                   tickfont=dict(size=10), automargin=True))
    return fig


def diagonal_figure(m: CKAMatrix | None, names: Mapping[str, str] | None = None, title: str = "") -> go.Figure:
    """The matched layers (a teacher layer against the same student layer): CKA with its interval as a band,
    beside the band of what shuffled pairs score (the null)."""
    if m is None:
        return empty_figure("the matched layers appear with the matrix", 120)
    d = m.diagonal()
    if not d:
        return empty_figure("no layer is on both sides", 120)
    x = _names(names, [c["row"] for c in d])

    def ys(k):
        return [c[k] for c in d]

    fig = go.Figure([
        go.Scatter(x=x, y=ys("null_lo"), mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False,
                   legendgroup="null"),
        go.Scatter(x=x, y=ys("null_hi"), mode="lines", line=dict(width=0), fill="tonexty",
                   fillcolor="rgba(120,120,120,0.35)", name="shuffled-pair null (95% of shuffles)",
                   legendgroup="null", hoverinfo="skip"),
        go.Scatter(x=x, y=ys("lo"), mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False,
                   legendgroup="interval"),
        go.Scatter(x=x, y=ys("hi"), mode="lines", line=dict(width=0), fill="tonexty",
                   fillcolor="rgba(214,39,40,0.22)", name=f"{m.confidence:.0%} interval (half-sample resamples)",
                   legendgroup="interval", hoverinfo="skip"),
        go.Scatter(x=x, y=ys("cka"), mode="lines+markers", line=dict(color="#d62728"), name="matched layers: CKA",
                   customdata=[[c["lo"], c["hi"], c["null_lo"], c["null_hi"], c["p_null"]] for c in d],
                   hovertemplate="%{x}<br>CKA %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<br>null "
                                 "[%{customdata[2]:.3f}, %{customdata[3]:.3f}], p %{customdata[4]:.3g}<extra></extra>"),
    ])
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dot"))
    fig.update_layout(
        height=380, margin=dict(l=50, r=10, t=100, b=10), plot_bgcolor="white", hovermode="closest",
        title=dict(text=title, font=dict(size=12), x=0.01),
        yaxis=dict(title="debiased CKA", range=[min(-0.05, min(v for v in ys("null_lo") if v is not None) - 0.02
                                                    if any(v is not None for v in ys("null_lo")) else -0.05), 1.05],
                   tickfont=dict(size=11)),
        xaxis=dict(tickangle=-45, tickfont=dict(size=10), automargin=True, categoryorder="array", categoryarray=x),
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right", font=dict(size=10)))
    return fig


def step_label(step: int, sigma: float) -> str:
    return f"{step + 1} (σ {sigma:.3g})"


def alignment_figure(a: SigmaAlignment | None, names: Mapping[str, str] | None = None, title: str = "") -> go.Figure:
    """Student layers (rows) x teacher steps (columns, with their sigma): CKA over samples, the ridge (each
    row's peak, the teacher step that student layer resembles most) marked, with the range of peak sigmas
    over the resamples in its hover."""
    if a is None:
        return empty_figure("compute the sigma alignment to see it", 160)
    rows = _names(names, a.layers)
    cols = [step_label(k, s) for k, s in zip(a.steps, a.sigmas, strict=True)]
    custom = np.stack([a.lo, a.hi, a.null_lo, a.null_hi], axis=-1)
    fig = go.Figure(go.Heatmap(
        z=a.estimate, x=cols, y=rows, zmin=0.0, zmax=1.0, colorscale="Viridis", customdata=custom,
        colorbar=dict(thickness=10, title=dict(text="CKA", side="right"), tickfont=dict(size=10)),
        hovertemplate="student %{y} vs teacher step %{x}<br>CKA %{z:.3f} [%{customdata[0]:.3f}, "
                      f"%{{customdata[1]:.3f}}] ({a.confidence:.0%})<br>null [%{{customdata[2]:.3f}}, "
                      "%{customdata[3]:.3f}]<extra></extra>", name="CKA"))
    ridge = [(i, r) for i, r in enumerate(a.ridge()) if r["step"] is not None]
    fig.add_trace(go.Scatter(
        x=[cols[a.steps.index(r["step"])] for _, r in ridge], y=[rows[i] for i, _ in ridge], mode="markers",
        name="ridge: the step each student layer resembles most",
        marker=dict(symbol="x-thin", size=11, color="#ff3030", line=dict(width=2.5, color="#ff3030")),
        customdata=[[_f(r["cka"]), f"{r['sigma_lo']:.3g}" if r["sigma_lo"] is not None else "-",
                     f"{r['sigma_hi']:.3g}" if r["sigma_hi"] is not None else "-",
                     f"{r['share']:.0%}" if r["share"] is not None else "-"] for _, r in ridge],
        hovertemplate="%{y}: peak at teacher step %{x}, CKA %{customdata[0]}<br>peak σ over resamples "
                      "%{customdata[1]} - %{customdata[2]}; %{customdata[3]} of resamples peak here<extra></extra>"))
    fig.update_layout(
        height=max(260, 24 + 18 * len(rows) + 230), margin=dict(l=10, r=10, t=100, b=10), plot_bgcolor="white",
        title=dict(text=title, font=dict(size=12), x=0.01),
        xaxis=dict(title=dict(text="teacher step (σ)", font=dict(size=11)), tickangle=-45, tickfont=dict(size=10),
                   automargin=True, categoryorder="array", categoryarray=cols),
        yaxis=dict(title=dict(text="student layer", font=dict(size=11)), autorange="reversed",
                   tickfont=dict(size=10), automargin=True),
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right", font=dict(size=10)))
    return fig


# -- the form -----------------------------------------------------------------------------------------

def parse_seed_ranges(text, limit: int) -> tuple[int, ...]:
    """'0-199' or '0-99, 500-599' -> seeds (each in 0 .. 2^32 - 1), at least 8 and at most `limit`."""
    seeds = parse_seeds(text, limit)
    if len(seeds) < 8:
        raise UserError("seeds: at least 8 (CKA over samples needs them)")
    return tuple(seeds)


def _resamples(value) -> int:
    if value is None or value == "":
        return DEFAULT_RESAMPLES
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not 0 <= value <= MAX_RESAMPLES:
        raise UserError(f"resamples: a whole number from 0 to {MAX_RESAMPLES}")
    return int(value)


def _layers(c: AppContext, layers) -> tuple[str, ...]:
    if not layers:
        raise UserError("pick at least one layer")
    aliases = c.inspector.aliases()
    return tuple(dict.fromkeys(panels.canonical_name(n, aliases) for n in layers))


def matrix_query(c: AppContext, layers, step, source, seeds_text, class_value, resamples) -> MatrixQuery:
    """The form as a checked MatrixQuery (a UserError says what is wrong)."""
    label = None if class_value in (None, ALL_CLASSES) else int(class_value)
    return MatrixQuery(_layers(c, layers), int(step or 0), source or "auto",
                       parse_seed_ranges(seeds_text or DEFAULT_SEEDS, MAX_MATRIX_SEEDS), label, _resamples(resamples))


def _source_line(context: dict) -> str:
    src = context.get("source", {})
    if src.get("kind") == "stores":
        pools = sorted({str(p.get("pool")) for p in src.get("layers", {}).values()})
        return (f"rows: the embed run's pooled stores ({src.get('samples')} samples; pooling {', '.join(pools)}; "
                "pooling changes the score: compare only scores made the same way)")
    seeds = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in src.get("seeds", []))
    how = "full resolution" if src.get("resolution") == "full" else "average-pooled like embed --pool auto"
    return f"rows: a fresh trace of seeds {seeds} ({src.get('samples')} samples, {how})"


def describe_matrix(c: AppContext, m: CKAMatrix) -> str:
    ctx = m.context
    t, s = ctx["teacher"], ctx["student"]
    label = ctx.get("class_label")
    which = "all classes" if label is None else f"class {label} ({c.class_name(label)}) only"
    return (f"teacher step {t['step'] + 1} (σ {t['sigma']:.3g}) vs the student (σ {s['sigma']:.3g}), {m.n} "
            f"samples, {which}; {_source_line(ctx)}. {m.method.get('resamples')} half-sample resamples, "
            f"{m.method.get('null_draws')} shuffled pairings; {ctx.get('seconds', 0):.1f} s")


def describe_alignment(a: SigmaAlignment) -> str:
    ridge = [r for r in a.ridge() if r["step"] is not None]
    return (f"{a.n} samples, {len(a.steps)} teacher steps; {_source_line(a.context)}. Each student layer against "
            f"the teacher's same layer at every step; the ridge (x) is each row's peak ({len(ridge)} layers). "
            f"{a.method.get('resamples', 0)} half-sample resamples; {a.context.get('seconds', 0):.1f} s")


# -- layout -------------------------------------------------------------------------------------------

def _progress(ident_row: str, ident_bar: str, ident_text: str, ident_cancel: str) -> html.Div:
    return html.Div([
        html.Progress(id=ident_bar, max="1", style={"width": "220px"}),
        html.Span(id=ident_text, style=SMALL, children="starting ..."),
        html.Button("cancel", id=ident_cancel, n_clicks=0, disabled=True),
    ], id=ident_row, style=HIDDEN)


def layout(info: LayoutInfo) -> list:
    """The box under the panels: the matrix's controls, the matrix, its diagonal, and the sigma alignment."""
    if len(info.models) < 2:
        return []
    legacy = [n for n in info.layers if not n.startswith(("enc.", "dec."))]
    names = legacy or list(info.layers)
    steps = max(1, info.teacher_steps or 1)
    step_options = [{"label": f"{k + 1}" + (" (first: σ 80, the input both models share)" if k == 0 else "")
                     + (" (last)" if k == steps - 1 and k else ""), "value": k} for k in range(steps)]
    class_options = [{"label": "all classes", "value": ALL_CLASSES}] + \
        [{"label": f"{c} · {name}", "value": c} for c, name in info.classes]
    field = {"display": "flex", "gap": "6px", "alignItems": "center", "flexWrap": "wrap", "marginBottom": "6px"}
    return [html.Div([
        html.Div("Teacher vs student over many samples: debiased CKA, samples as rows (the chart above is one "
                 "sample, descriptive)", style={**SMALL, "fontWeight": "600", "marginBottom": "6px"}),
        html.Div([html.Span("layers", style=SMALL),
                  html.Div(dcc.Dropdown(id=ID.cmp_layers, options=[{"label": n, "value": n} for n in names],
                                        value=list(names), multi=True, placeholder="pick layers"),
                           style={"flex": "1 1 300px", "minWidth": "0"})], style=field),
        html.Div([html.Span("teacher step", style=SMALL),
                  html.Div(dcc.Dropdown(id=ID.cmp_step, options=step_options, value=0, clearable=False),
                           style={"width": "300px"}),
                  html.Span("class", style=SMALL),
                  html.Div(dcc.Dropdown(id=ID.cmp_class, options=class_options, value=ALL_CLASSES,
                                        clearable=False), style={"width": "180px"})], style=field),
        html.Div([html.Span("rows from", style=SMALL),
                  radio(ID.cmp_source, SOURCE_LABELS, "auto")], style=field),
        html.Div([html.Span("fresh-trace seeds", style=SMALL),
                  dcc.Input(id=ID.cmp_seeds, type="text", value=DEFAULT_SEEDS, maxLength=200,
                            style={"width": "120px"}),
                  html.Span(f"(8 to {MAX_MATRIX_SEEDS}; classes balanced, or the class chosen)", style=SMALL),
                  html.Span("resamples", style=SMALL),
                  dcc.Input(id=ID.cmp_resamples, type="number", value=DEFAULT_RESAMPLES, min=0, max=MAX_RESAMPLES,
                            step=1, style={"width": "80px"}),
                  html.Button("compute the matrix", id=ID.cmp_run, n_clicks=0)], style=field),
        _progress(ID.cmp_progress_row, ID.cmp_progress, ID.cmp_progress_text, ID.cmp_cancel),
        html.Div(id=ID.cmp_status, style={**SMALL, "margin": "6px 0"},
                 children="Nothing computed yet: the demo's default (22 layers, a fresh trace of 200 seeds at the "
                          "first step) takes 6-8 s on 2 quiet CPU cores."),
        dcc.Graph(id=ID.cmp_matrix, figure=matrix_figure(None), config={"displaylogo": False}),
        dcc.Graph(id=ID.cmp_diagonal, figure=diagonal_figure(None), config={"displaylogo": False}),
        html.Div([
            html.Div("Which teacher step each student layer resembles (sigma alignment)",
                     style={**SMALL, "fontWeight": "600", "margin": "8px 0 6px 0"}),
            html.Div([html.Span("rows from", style=SMALL),
                      radio(ID.align_source, ALIGN_SOURCE_LABELS, "auto")], style=field),
            html.Div([html.Span("fresh-trace seeds", style=SMALL),
                      dcc.Input(id=ID.align_seeds, type="text", value=DEFAULT_ALIGNMENT_SEEDS, maxLength=200,
                                style={"width": "100px"}),
                      html.Span(f"(8 to {MAX_ALIGNMENT_SEEDS}: the teacher's whole sampler runs for each; the "
                                "layers and resamples above)", style=SMALL),
                      html.Button("compute the sigma alignment", id=ID.align_run, n_clicks=0,
                                  disabled=not info.teacher)], style=field),
            _progress(ID.align_progress_row, ID.align_progress, ID.align_progress_text, ID.align_cancel),
            html.Div(id=ID.align_status, style={**SMALL, "margin": "6px 0"}),
            dcc.Graph(id=ID.align_graph, figure=alignment_figure(None), config={"displaylogo": False}),
        ]),
    ], id=ID.cmp_box, style=BOX)]


# -- callbacks ----------------------------------------------------------------------------------------

def engine(c: AppContext) -> Comparisons:
    return Comparisons.of(c.inspector, c.root)


def layer_options(c: AppContext, naming) -> list[dict]:
    return panels.layer_options(c, naming)


def _names_for(c: AppContext, layers, naming) -> dict[str, str]:
    aliases = c.inspector.aliases()
    return {n: shown_name(n, naming, aliases) for n in layers}


def _reporter(set_progress: Callable) -> Callable[[int, int, str], None]:
    def progress(done: int, total: int, text: str) -> None:
        set_progress((str(done), str(max(total, 1)), text))
    return progress


def matrix_job(c: AppContext, set_progress: Callable, n_clicks, layers, step, source, seeds_text, class_value,
               resamples, naming=None, should_stop: Callable[[], None] | None = None) -> tuple:
    """(matrix figure, diagonal figure, status) for the form; an error leaves the figures and says why."""
    if not n_clicks:
        raise PreventUpdate
    try:
        q = matrix_query(c, layers, step, source, seeds_text, class_value, resamples)
        set_progress((None, "1", "starting ..."))
        m = engine(c).matrix(q, _reporter(set_progress), should_stop)
    except UserError as e:
        return no_update, no_update, html.Span(f"error: {e}", style={"color": "#b00"})
    names = _names_for(c, [*m.rows, *m.cols], naming)
    t = m.context["teacher"]
    where = "pooled stores" if m.context["source"]["kind"] == "stores" else "fresh trace, full resolution"
    label = m.context.get("class_label")
    scope = "" if label is None else f", class {label}"
    head = f"teacher step {t['step'] + 1} (σ {t['sigma']:.3g}) vs student, {m.n} samples{scope}, {where}"
    return (matrix_figure(m, names, f"debiased CKA, teacher layer × student layer<br>{head}"),
            diagonal_figure(m, names, f"matched layers: CKA with its {m.confidence:.0%} interval and the "
                                      f"shuffled-pair null<br>{head}"),
            describe_matrix(c, m))


def alignment_job(c: AppContext, set_progress: Callable, n_clicks, layers, source, seeds_text, resamples,
                  naming=None, should_stop: Callable[[], None] | None = None) -> tuple:
    """(alignment figure, status) for the form."""
    if not n_clicks:
        raise PreventUpdate
    try:
        q = AlignmentQuery(_layers(c, layers), source or "auto",
                           parse_seed_ranges(seeds_text or DEFAULT_ALIGNMENT_SEEDS, MAX_ALIGNMENT_SEEDS),
                           _resamples(resamples))
        set_progress((None, "1", "starting ..."))
        a = engine(c).alignment(q, _reporter(set_progress), should_stop)
    except UserError as e:
        return no_update, html.Span(f"error: {e}", style={"color": "#b00"})
    where = "all-step stores" if a.context["source"]["kind"] == "stores" else "fresh trace"
    title = (f"sigma alignment: each student layer (σ 80) against the teacher's same layer at every step"
             f"<br>{a.n} samples, {where}; x: the ridge, the step each student layer resembles most")
    return alignment_figure(a, _names_for(c, a.layers, naming), title), describe_alignment(a)


def register(app: dash.Dash, c: AppContext) -> None:
    if not c.inspector.pair:
        return
    app.callback(Output(ID.cmp_layers, "options"), Input(ID.naming, "value"))(bind(layer_options, c))
    notify = c.jobs.notify if c.jobs is not None else None
    # Own job managers: a comparison waits neither for nor before the panels' teacher runs, and one page
    # has one matrix job and one alignment job at most (a new click on the button cancels its previous one).
    managers = {kind: ThreadedJobManager(max_running=1, max_queued=2, notify=notify) for kind in ("matrix", "align")}
    c.__dict__["comparison_jobs"] = managers
    with managers["matrix"].accepting():
        @app.callback(Output(ID.cmp_matrix, "figure"), Output(ID.cmp_diagonal, "figure"),
                      Output(ID.cmp_status, "children"), Input(ID.cmp_run, "n_clicks"),
                      State(ID.cmp_layers, "value"), State(ID.cmp_step, "value"), State(ID.cmp_source, "value"),
                      State(ID.cmp_seeds, "value"), State(ID.cmp_class, "value"), State(ID.cmp_resamples, "value"),
                      State(ID.naming, "value"), background=True, manager=managers["matrix"], interval=300,
                      prevent_initial_call=True,
                      progress=[Output(ID.cmp_progress, "value"), Output(ID.cmp_progress, "max"),
                                Output(ID.cmp_progress_text, "children")],
                      progress_default=[None, "1", "starting ..."], cancel=[Input(ID.cmp_cancel, "n_clicks")],
                      running=[(Output(ID.cmp_cancel, "disabled"), False, True),
                               (Output(ID.cmp_run, "disabled"), True, False),
                               (Output(ID.cmp_progress_row, "style"), PROGRESS_ROW, HIDDEN)])
        def comparison_matrix_job(set_progress, *args):
            return matrix_job(c, set_progress, *args, should_stop=current_job().check)
    with managers["align"].accepting():
        @app.callback(Output(ID.align_graph, "figure"), Output(ID.align_status, "children"),
                      Input(ID.align_run, "n_clicks"), State(ID.cmp_layers, "value"), State(ID.align_source, "value"),
                      State(ID.align_seeds, "value"), State(ID.cmp_resamples, "value"), State(ID.naming, "value"),
                      background=True, manager=managers["align"], interval=300, prevent_initial_call=True,
                      progress=[Output(ID.align_progress, "value"), Output(ID.align_progress, "max"),
                                Output(ID.align_progress_text, "children")],
                      progress_default=[None, "1", "starting ..."], cancel=[Input(ID.align_cancel, "n_clicks")],
                      running=[(Output(ID.align_cancel, "disabled"), False, True),
                               (Output(ID.align_run, "disabled"), True, False),
                               (Output(ID.align_progress_row, "style"), PROGRESS_ROW, HIDDEN)])
        def comparison_alignment_job(set_progress, *args):
            return alignment_job(c, set_progress, *args, should_stop=current_job().check)
