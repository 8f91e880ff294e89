"""The page: controls and the scatter on the left, the regenerated sample on the right, the selection below.

Every id the callbacks use is a constant of `ID`, so a typo fails at import rather than in a browser.
Session state lives in the dcc.Store components at the bottom (one per browser tab).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dash import dcc, html

from visualizer.app.figures import COLOUR_MODES, empty_figure


class ID:
    scatter = "scatter"
    tooltip = "hover-tip"
    colour_by = "colour-by"
    class_filter = "class-filter"
    model_toggle = "model-toggle"
    link_seeds = "link-seeds"
    seed_input = "seed-input"
    class_input = "class-input"
    generate = "generate-btn"
    layer_pick = "layer-pick"
    layers_default = "layers-default"
    layers_legacy = "layers-legacy"
    layers_native = "layers-native"
    reduction = "reduction"
    reduction_arg = "reduction-arg"
    status = "inspect-status"
    progress_row = "progress-row"
    progress = "teacher-progress"
    progress_text = "progress-text"
    cancel = "cancel-btn"
    slider = "step-slider"
    step_label = "step-label"
    panels = "panels"
    similarity = "similarity"
    download_png = "download-png"
    png_done = "png-done"
    gallery = "gallery"
    class_counts = "class-counts"
    selection_summary = "selection-summary"
    export_csv = "export-csv"
    csv_download = "csv-download"
    # session state
    clicked = "clicked"
    first_ready = "first-ready"
    trajectory_ready = "trajectory-ready"
    trajectory_done = "trajectory-done"
    selection = "selection"


HIDDEN = {"display": "none"}
PROGRESS_VISIBLE = {"display": "flex", "alignItems": "center", "gap": "8px", "margin": "6px 0"}
BOX = {"border": "1px solid #e2e2e2", "borderRadius": "6px", "padding": "10px", "margin": "0 0 10px 0",
       "background": "white"}
SMALL = {"fontSize": "12px", "color": "#555"}


@dataclass(frozen=True)
class LayoutInfo:
    """What the page needs to know about what was loaded; plain values only."""

    title: str
    note: str | None
    models_line: str
    embedding_models: Sequence[str]
    classes: Sequence[tuple[int, str]]
    layers: Sequence[str]
    default_layers: Sequence[str]
    reductions: Sequence[str]
    has_models: bool
    teacher: str | None
    teacher_steps: int | None
    num_points: int


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
            dcc.Checklist(id=ID.model_toggle, options=[{"label": m, "value": m} for m in info.embedding_models],
                          value=list(info.embedding_models), inline=True, inputStyle={"marginRight": "4px"},
                          labelStyle={"marginRight": "12px"}),
            dcc.Checklist(id=ID.link_seeds, options=[{"label": "link points of the same seed", "value": "link"}],
                          value=[], inline=True, inputStyle={"marginRight": "4px"}),
        ], style={"display": "flex", "gap": "20px", "marginTop": "6px", "flexWrap": "wrap"}),
    ], style=BOX)


def _scatter(info: LayoutInfo) -> html.Div:
    return html.Div([
        dcc.Graph(id=ID.scatter, figure=empty_figure("loading…" if info.num_points else "no embeddings loaded"),
                  style={"height": "560px"}, clear_on_unhover=True,
                  config={"scrollZoom": True, "displaylogo": False,
                          "modeBarButtonsToAdd": ["select2d", "lasso2d"]}),
        dcc.Tooltip(id=ID.tooltip, direction="right", loading_text="", style={"padding": "4px"}),
        html.Div("Hover a point for its thumbnail; click it to regenerate it with the loaded models; "
                 "use box or lasso select (toolbar) for a gallery.", style=SMALL),
    ], style=BOX)


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


def _selection() -> html.Div:
    return html.Div([
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
    ], style=BOX)


def build_layout(info: LayoutInfo) -> html.Div:
    return html.Div([
        html.H3(info.title, style={"margin": "6px 0"}),
        html.Div(info.note or "", style={**SMALL, "marginBottom": "8px"}),
        html.Div([
            html.Div([_controls(info), _scatter(info), _selection()], style={"flex": "5", "minWidth": "420px"}),
            html.Div([_inspector(info)], style={"flex": "6", "minWidth": "460px"}),
        ], style={"display": "flex", "gap": "12px", "alignItems": "flex-start"}),
        dcc.Store(id=ID.clicked, storage_type="memory"),
        dcc.Store(id=ID.first_ready, storage_type="memory"),
        dcc.Store(id=ID.trajectory_ready, storage_type="memory"),
        dcc.Store(id=ID.trajectory_done, storage_type="memory"),
        dcc.Store(id=ID.selection, storage_type="memory", data=[]),
    ], style={"fontFamily": "system-ui, sans-serif", "padding": "8px 14px", "background": "#fafafa"})
