"""Which classes does the student collapse? The ranking, the class galleries and the seed correspondence (issue 16).

A box in the left column, for runs with a probe map (`embed --probe`). Everything is computed by the
engine (`visualizer.inspection.collapse.Collapse`, cached), as a background job with a progress bar and
a cancel button on its own job manager (one job per page, one running, two waiting), since reading
every thumbnail for the pixel correspondence takes seconds:

- "rank classes": a chart of the classes ranked by the student's within-class spread ratio against the
  teacher (bar: the mean over disjoint seed sets of the class; whisker: their min-max; a class too
  small to split is drawn hollow and labelled descriptive), a table of coverage and recall against the
  teacher and, when the run has real images, of student and teacher against them (each cell the mean
  with its min-max), one line on what the scores can and cannot show, and the seed correspondence of
  the loaded pair (top-1 retrieval against chance, in pixels and in the probe's space, with its
  min-max over disjoint seed sets);
- clicking a class's bar opens its teacher, student and real galleries (the run's thumbnails).
"""

from __future__ import annotations

from collections.abc import Callable

import dash
import plotly.graph_objects as go
from dash import Input, Output, dcc, html, no_update
from dash.exceptions import PreventUpdate

from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.ids import ID
from visualizer.app.jobs import ThreadedJobManager, current_job
from visualizer.app.thumbs import thumb_url
from visualizer.app.ui import BOX, HIDDEN, SMALL, empty_figure
from visualizer.errors import UserError
from visualizer.inspection.collapse import Collapse

PROGRESS_ROW = {"display": "flex", "alignItems": "center", "gap": "8px", "margin": "4px 0", "flexWrap": "wrap"}
SETS = ("teacher", "student", "real")
NO_PROBE = ("This run has no probe map, so there is nothing to rank: add one with `python -m visualizer embed --out "
            "RUN --probe digits|network[:LAYER][@SIGMA] [--real PATH] --probe-only`.")


def engine(c: AppContext) -> Collapse | None:
    """The run's Collapse engine, made once per app (None without a run)."""
    if c.maps is None:
        return None
    if "collapse" not in c.__dict__:
        c.__dict__["collapse"] = Collapse(c.maps)
    return c.__dict__["collapse"]


def _range(score: dict | None, fmt: str = ".2f") -> str:
    if not score:
        return "–"
    if score["min"] == score["max"]:
        return f"{score['mean']:{fmt}}"
    return f"{score['mean']:{fmt}} ({score['min']:{fmt}}–{score['max']:{fmt}})"


# -- figures ------------------------------------------------------------------------------------------

def ranking_figure(ranking: dict | None, class_name: Callable[[int], str] = str) -> go.Figure:
    """Horizontal bars: each class's student/teacher spread ratio (most collapsed on top), min-max whiskers, 1 marked;
    every bar carries its class as customdata (a click opens its galleries)."""
    if not ranking or not ranking["classes"]:
        return empty_figure("press \"rank classes\" (a run with a probe map)", 260)
    rows = ranking["classes"][::-1]            # plotly draws the first bar at the bottom
    ratio = [r["student_vs_teacher"]["spread_ratio"] for r in rows]
    labels = [f"{r['class']} · {class_name(r['class'])}" for r in rows]
    descriptive = [r["student_vs_teacher"]["descriptive"] for r in rows]
    fig = go.Figure(go.Bar(
        x=[v["mean"] for v in ratio], y=labels, orientation="h", customdata=[r["class"] for r in rows],
        error_x=dict(type="data", symmetric=False, array=[v["max"] - v["mean"] for v in ratio],
                     arrayminus=[v["mean"] - v["min"] for v in ratio], color="#333", thickness=1.2),
        marker=dict(color=["rgba(0,0,0,0)" if d else "#d62728" for d in descriptive], line=dict(color="#d62728",
                                                                                                width=1.5)),
        hovertemplate="%{y}<br>spread ratio %{x:.2f}<extra>click: galleries</extra>", name="student / teacher"))
    fig.add_vline(x=1.0, line=dict(color="#555", dash="dash"))
    first = ranking["classes"][0]["student_vs_teacher"]
    fig.update_layout(
        height=max(220, 26 * len(rows) + 90), margin=dict(l=10, r=10, t=50, b=30), plot_bgcolor="white",
        title=dict(text="within-class spread, student / teacher (most collapsed on top)<br><sub>bar: mean over "
                        f"{first['splits']} disjoint seed sets of the class; whisker: min-max; hollow: one set, "
                        "descriptive. Click a class for its galleries.</sub>", font=dict(size=13), x=0.01),
        xaxis=dict(title="spread ratio (1: as diverse as the teacher)", zeroline=False), clickmode="event")
    return fig


def correspondence_figure(corr: dict | None) -> go.Figure:
    """Top-1 retrieval of the teacher's same-seed image, in pixels and in the probe's space, with chance."""
    if not corr:
        return empty_figure("", 200)
    spaces = [s for s in ("pixels", "probe") if corr.get(s)]
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=[corr[s]["top1"] for s in spaces], y=[f"{s}, all {corr['n']} seeds" for s in spaces], orientation="h",
        name="all seeds", marker_color="#1f77b4", hovertemplate="top-1 %{x:.1%}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[corr[s]["chance"] for s in spaces], y=[f"{s}, all {corr['n']} seeds" for s in spaces], mode="markers",
        name="chance", marker=dict(symbol="line-ns-open", size=18, color="#111", line=dict(width=3))))
    split = [s for s in spaces if corr[s].get("split_top1")]
    if split:
        size = corr["split_size"]
        fig.add_trace(go.Bar(
            x=[corr[s]["split_top1"]["mean"] for s in split], y=[f"{s}, sets of {size}" for s in split],
            orientation="h", name=f"{corr['splits']} disjoint sets of {size} seeds", marker_color="#9ecae1",
            error_x=dict(type="data", symmetric=False,
                         array=[corr[s]["split_top1"]["max"] - corr[s]["split_top1"]["mean"] for s in split],
                         arrayminus=[corr[s]["split_top1"]["mean"] - corr[s]["split_top1"]["min"] for s in split]),
            hovertemplate="top-1 %{x:.1%} (mean over sets; whisker min-max)<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=[corr[s]["split_chance"] for s in split], y=[f"{s}, sets of {size}" for s in split], mode="markers",
            showlegend=False, marker=dict(symbol="line-ns-open", size=18, color="#111", line=dict(width=3))))
    fig.update_layout(
        height=240, margin=dict(l=10, r=10, t=46, b=30), plot_bgcolor="white", barmode="overlay",
        title=dict(text="seed correspondence: is the teacher's image of the same seed the student's nearest?"
                        "<br><sub>among the teacher's images of the class; chance = 1 / seeds of the class</sub>",
                   font=dict(size=13), x=0.01),
        xaxis=dict(title="top-1 retrieval", tickformat=".0%", range=[0, 1.02]), legend=dict(orientation="h", y=-0.3))
    return fig


def ranking_table(ranking: dict, class_name: Callable[[int], str] = str) -> html.Table:
    """Per class: seeds, spread ratio, coverage and recall vs the teacher, and vs real when the run has them."""
    real = ranking.get("has_real")
    head = ["class", "seeds", "spread ratio s/t", "coverage s vs t", "recall s vs t"] + \
        (["real", "coverage s vs real", "coverage t vs real", "recall s vs real", "recall t vs real"] if real else [])
    cell = {"padding": "2px 6px", "borderBottom": "1px solid #eee", "fontSize": "12px", "whiteSpace": "nowrap"}
    body = []
    for r in ranking["classes"]:
        st = r["student_vs_teacher"]
        row = [f"{r['class']} · {class_name(r['class'])}", str(r["n"]), _range(st["spread_ratio"]),
               _range(st["coverage"]), _range(st["recall"])]
        if real:
            sr, tr = r.get("student_vs_real"), r.get("teacher_vs_real")
            row += [str(r.get("n_real", 0)), _range(sr and sr["coverage"]), _range(tr and tr["coverage"]),
                    _range(sr and sr["recall"]), _range(tr and tr["recall"])]
        body.append(html.Tr([html.Td(v, style=cell) for v in row]))
    return html.Table([html.Thead(html.Tr([html.Th(h, style={**cell, "textAlign": "left"}) for h in head])),
                       html.Tbody(body)], style={"borderCollapse": "collapse", "display": "block",
                                                 "overflowX": "auto"})


def gallery_view(c: AppContext, label: int, galleries: dict) -> html.Div:
    """Teacher, student and real thumbnails of one class, side by side."""
    def column(name: str, items: list) -> html.Div:
        return html.Div([
            html.Div(f"{name} ({len(items)})", style={**SMALL, "fontWeight": "600"}),
            html.Div([html.Img(src=thumb_url(path), title=caption, className=f"collapse-thumb-{name}",
                               style={"width": "48px", "height": "48px", "imageRendering": "pixelated",
                                      "margin": "1px"}) for path, caption in items],
                     style={"display": "flex", "flexWrap": "wrap"}),
        ], style={"flex": "1 1 160px", "minWidth": "0"})
    return html.Div([
        html.Div(f"class {label} · {c.class_name(label)}: the run's final images (the first "
                 f"{max((len(v) for v in galleries.values()), default=0)} of each set)",
                 style={**SMALL, "margin": "6px 0"}),
        html.Div([column(name, galleries[name]) for name in SETS if name in galleries],
                 style={"display": "flex", "gap": "10px", "flexWrap": "wrap"}),
    ])


# -- callbacks ----------------------------------------------------------------------------------------

def rank_job(c: AppContext, set_progress: Callable, n_clicks, should_stop: Callable[[], None] | None = None) -> tuple:
    """(ranking chart, table, correspondence chart, status) for "rank classes"."""
    if not n_clicks:
        raise PreventUpdate
    e = engine(c)
    try:
        if e is None or e.why_not():
            raise UserError(e.why_not() if e is not None else "no embeddings loaded")
        set_progress(("0", "2", "ranking classes ..."))
        ranking = e.ranking()
        if should_stop is not None:
            should_stop()
        set_progress(("1", "2", "seed correspondence (reading the thumbnails) ..."))
        corr = e.correspondence()
    except UserError as err:
        return no_update, no_update, no_update, html.Span(f"error: {err}", style={"color": "#b00"})
    px, pr = corr.get("pixels"), corr.get("probe")
    status = html.Div([
        html.Div(f"Probe: {ranking['probe']}. {ranking['what']}"),
        html.Div(f"Seed correspondence over {corr['n']} seeds: top-1 {px['top1']:.1%} in pixels and "
                 f"{pr['top1']:.1%} in the probe's space (chance {px['chance']:.1%})"
                 + (f"; over {corr['splits']} disjoint sets of {corr['split_size']} seeds, "
                    f"{_range(px['split_top1'], '.1%')} and {_range(pr['split_top1'], '.1%')} (chance "
                    f"{px['split_chance']:.1%})." if px.get("split_top1") else ".")),
    ])
    return (ranking_figure(ranking, c.class_name), ranking_table(ranking, c.class_name), correspondence_figure(corr),
            status)


def open_class(c: AppContext, click) -> html.Div:
    """The galleries of the class whose bar was clicked."""
    point = (click or {}).get("points", [{}])[0]
    label = point.get("customdata")
    e = engine(c)
    if e is None or not isinstance(label, int) or isinstance(label, bool):
        raise PreventUpdate
    try:
        if label not in {r["class"] for r in e.ranking()["classes"]}:
            raise PreventUpdate
        return gallery_view(c, label, e.gallery(label))
    except UserError as err:
        return html.Span(f"error: {err}", style={"color": "#b00"})


# -- layout -------------------------------------------------------------------------------------------

def layout(info: LayoutInfo) -> list:
    """The box (with a run loaded): the button, its progress, the ranking, the galleries, the table, the
    correspondence. Without a probe map the button is off and the status says how to make one."""
    if not info.num_points:
        return []
    return [html.Div([
        html.Div("Which classes does the student collapse? (per-class diversity and coverage on the probe map)",
                 style={**SMALL, "fontWeight": "600", "marginBottom": "6px"}),
        html.Button("rank classes", id=ID.collapse_run, n_clicks=0, disabled=not info.probe_map),
        html.Div([
            html.Progress(id=ID.collapse_progress, max="2", style={"width": "200px"}),
            html.Span(id=ID.collapse_progress_text, style=SMALL, children="starting ..."),
            html.Button("cancel", id=ID.collapse_cancel, n_clicks=0, disabled=True),
        ], id=ID.collapse_progress_row, style=HIDDEN),
        html.Div(id=ID.collapse_status, style={**SMALL, "margin": "6px 0"},
                 children="Ranks the classes by how much the student's images of each class spread against the "
                          "teacher's, in the probe map's space." if info.probe_map else NO_PROBE),
        dcc.Graph(id=ID.collapse_chart, figure=ranking_figure(None), config={"displaylogo": False}),
        html.Div(id=ID.collapse_gallery, style={"margin": "6px 0"}),
        html.Div(id=ID.collapse_table, style={"margin": "6px 0"}),
        dcc.Graph(id=ID.collapse_corr, figure=correspondence_figure(None), config={"displaylogo": False}),
    ], id=ID.collapse_box, style=BOX)]


def register(app: dash.Dash, c: AppContext) -> None:
    if engine(c) is None:
        return
    manager = ThreadedJobManager(max_running=1, max_queued=2, notify=c.jobs.notify if c.jobs is not None else None)
    c.__dict__["collapse_jobs"] = manager
    with manager.accepting():
        @app.callback(Output(ID.collapse_chart, "figure"), Output(ID.collapse_table, "children"),
                      Output(ID.collapse_corr, "figure"), Output(ID.collapse_status, "children"),
                      Input(ID.collapse_run, "n_clicks"), background=True, manager=manager, interval=300,
                      prevent_initial_call=True,
                      progress=[Output(ID.collapse_progress, "value"), Output(ID.collapse_progress, "max"),
                                Output(ID.collapse_progress_text, "children")],
                      progress_default=[None, "2", "starting ..."], cancel=[Input(ID.collapse_cancel, "n_clicks")],
                      running=[(Output(ID.collapse_cancel, "disabled"), False, True),
                               (Output(ID.collapse_run, "disabled"), True, False),
                               (Output(ID.collapse_progress_row, "style"), PROGRESS_ROW, HIDDEN)])
        def collapse_rank_job(set_progress, *args):
            return rank_job(c, set_progress, *args, should_stop=current_job().check)
    app.callback(Output(ID.collapse_gallery, "children"), Input(ID.collapse_chart, "clickData"),
                 prevent_initial_call=True)(bind(open_class, c))
