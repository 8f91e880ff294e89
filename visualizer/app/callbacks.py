"""The callbacks: each a few lines from inputs to outputs; the work is in `figures` and the inspection engine.

Flow of a click: `choose` writes the sample into the tab's `clicked` store; `first_look` (a plain
callback) regenerates every model at the shared first input and fills `first-ready`; `render`
draws the panels from the server cache. `teacher_run` (a background callback, chained on
`first-ready` so the fast path always gets the teacher's lock first) runs the multi-step teacher
with a progress bar and a cancel button (a new click or new layers cancel it too, so the next
first look gets the lock at once), and announces its result through `set_props` on
`trajectory-ready`: a declared output would make Dash hold `render` (and so the student's panel)
until the teacher finished. Row numbers coming from the browser are checked before use.
"""

from __future__ import annotations

import time

import dash
from dash import Input, Output, State, ctx, dcc, html, no_update, set_props
from dash.exceptions import PreventUpdate

from visualizer.app import figures
from visualizer.app.jobs import current_job
from visualizer.app.layout import HIDDEN, ID, PROGRESS_VISIBLE
from visualizer.app.server import AppContext, thumb_url
from visualizer.errors import UserError
from visualizer.inspection import Request
from visualizer.trace.reductions import PARAMETRIC, reduction_spec

PROGRESS_EVERY_S = 0.1
TOOLTIP_FALLBACK_BBOX = {"x0": 0, "x1": 0, "y0": 0, "y1": 0}


def request_data(req: Request) -> dict:
    return {"seed": req.seed, "class_label": req.class_label, "layers": list(req.layers), "reduction": req.reduction}


def request_from(data: dict) -> Request:
    return Request.make(data["seed"], data["class_label"], data["layers"], data["reduction"])


def register(app: dash.Dash, c: AppContext) -> None:
    inspector = c.inspector

    # -- the scatter --------------------------------------------------------------------------------
    @app.callback(Output(ID.scatter, "figure"), Input(ID.colour_by, "value"), Input(ID.class_filter, "value"),
                  Input(ID.model_toggle, "value"), Input(ID.link_seeds, "value"))
    def scatter(colour_by, classes, models, link):
        if c.frame is None:
            return figures.empty_figure("no embeddings loaded: start with --embeddings CSV", 400)
        return figures.scatter_figure(c.frame, colour_by, classes, models, bool(link), c.model_order)

    @app.callback(Output(ID.tooltip, "show"), Output(ID.tooltip, "bbox"), Output(ID.tooltip, "children"),
                  Input(ID.scatter, "hoverData"))
    def hover(hover_data):
        point = (hover_data or {}).get("points", [{}])[0]
        r = c.row(point.get("customdata"))
        if r is None:
            return False, no_update, no_update
        return True, point.get("bbox", TOOLTIP_FALLBACK_BBOX), figures.hover_card(r, thumb_url(r["image_path"]))

    # -- choosing a sample ------------------------------------------------------------------------------
    @app.callback(Output(ID.clicked, "data"), Output(ID.seed_input, "value"), Output(ID.class_input, "value"),
                  Input(ID.scatter, "clickData"), Input(ID.generate, "n_clicks"),
                  State(ID.seed_input, "value"), State(ID.class_input, "value"), prevent_initial_call=True)
    def choose(click_data, _n, seed, class_label):
        if ctx.triggered_id == ID.scatter:
            point = (click_data or {}).get("points", [{}])[0]
            r = c.row(point.get("customdata"))
            if r is None:
                raise PreventUpdate
            chosen = {"seed": int(r["seed"]), "class_label": int(r["class_label"]), "sample_id": r["sample_id"],
                      "model": r["model"], "row": int(point["customdata"])}
        else:
            if seed is None or class_label is None or int(seed) < 0:
                raise PreventUpdate
            chosen = {"seed": int(seed), "class_label": int(class_label), "sample_id": None, "model": None}
        chosen["clicked_at"] = time.time()
        return chosen, chosen["seed"], chosen["class_label"]

    # -- the fast path: every model at the shared first input ------------------------------------------
    @app.callback(Output(ID.first_ready, "data"), Output(ID.trajectory_ready, "data"),
                  Output(ID.similarity, "figure"), Output(ID.status, "children"),
                  Input(ID.clicked, "data"), Input(ID.layer_pick, "value"), Input(ID.reduction, "value"),
                  Input(ID.reduction_arg, "value"), prevent_initial_call=True)
    def first_look(clicked, layers, reduction, reduction_arg):
        if not clicked or not inspector.slots:
            raise PreventUpdate
        try:
            req = Request.make(clicked["seed"], clicked["class_label"], layers or c.default_layers,
                               reduction_spec(reduction, reduction_arg if reduction in PARAMETRIC else None))
            look = inspector.first_look(req)
        except UserError as e:
            return no_update, no_update, no_update, html.Span(f"error: {e}", style={"color": "#b00"})
        where = f"sample {clicked['sample_id']}" if clicked.get("sample_id") else "sample"
        status = (f"{where}: seed {req.seed}, class {req.class_label} · {c.class_name(req.class_label)} — "
                  f"shared first input computed in {look.seconds:.2f} s"
                  + (f"; the {c.teacher}'s full run follows" if c.teacher else ""))
        title = None
        if look.pair:
            title = f"{look.pair[0]} vs {look.pair[1]} per layer at the shared first input (σ 80)"
        similarity = figures.similarity_figure(look.similarity, title) if look.similarity else \
            figures.empty_figure("similarity per layer needs two models", 160)
        return request_data(req), None, similarity, status

    # -- the slow path: the teacher's whole trajectory, in a background job ----------------------------
    @app.callback(Output(ID.trajectory_done, "data"), Input(ID.first_ready, "data"),
                  background=True, interval=250, prevent_initial_call=True,
                  progress=[Output(ID.progress, "value"), Output(ID.progress, "max"), Output(ID.progress_text,
                                                                                             "children")],
                  progress_default=["0", "1", ""],
                  # A new click or new layers also cancel this tab's run: the next first look needs the lock.
                  cancel=[Input(ID.cancel, "n_clicks"), Input(ID.clicked, "data"), Input(ID.layer_pick, "value"),
                          Input(ID.reduction, "value"), Input(ID.reduction_arg, "value")],
                  running=[(Output(ID.cancel, "disabled"), False, True),
                           (Output(ID.progress_row, "style"), PROGRESS_VISIBLE, HIDDEN)])
    def teacher_run(set_progress, first):
        if not first or c.teacher is None:
            raise PreventUpdate
        req = request_from(first)
        job = current_job()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                set_progress((str(done), str(total), f"step {done} / {total}"))

        traj = inspector.trajectory(c.teacher, req, progress=progress, should_stop=job.check)
        ready = {**first, "model": c.teacher, "num_steps": len(traj.steps), "sigmas": traj.sigmas,
                 "seconds": round(traj.seconds, 3)}
        set_props(ID.trajectory_ready, {"data": ready})
        return {"seconds": ready["seconds"]}

    @app.callback(Output(ID.slider, "max"), Output(ID.slider, "disabled"), Output(ID.slider, "marks"),
                  Output(ID.slider, "value"), Input(ID.trajectory_ready, "data"), prevent_initial_call=True)
    def slider(ready):
        if not ready:
            return no_update, True, None, 0
        n = ready["num_steps"]
        picks = sorted({0, n - 1, *range(0, n, max(1, n // 6))})
        marks = {i: f"σ {ready['sigmas'][i]:.3g}" for i in picks}
        return n - 1, False, marks, 0

    @app.callback(Output(ID.panels, "figure"), Output(ID.step_label, "children"),
                  Input(ID.first_ready, "data"), Input(ID.trajectory_ready, "data"), Input(ID.slider, "value"),
                  prevent_initial_call=True)
    def render(first, ready, step):
        if not first:
            raise PreventUpdate
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
            panels.append(figures.Panel(label, view.image, view.maps))
        title = f"seed {req.seed} · class {req.class_label} ({c.class_name(req.class_label)}) · {req.reduction}"
        fig = figures.comparison_figure(panels, req.layers, title=title)
        if traj is not None:
            label = f"{c.teacher}: step {k + 1} of {traj.num_steps}, σ = {traj.steps[k].sigma:.4g} " \
                    f"({traj.seconds:.1f} s run); the first step is the student's input"
        elif c.teacher:
            label = f"{c.teacher}: showing the first step (the student's input); the run is in progress or cancelled"
        else:
            label = ""
        return fig, label

    # -- layer and reduction pickers ------------------------------------------------------------------
    @app.callback(Output(ID.layer_pick, "value"), Input(ID.layers_default, "n_clicks"),
                  Input(ID.layers_legacy, "n_clicks"), Input(ID.layers_native, "n_clicks"), prevent_initial_call=True)
    def layer_presets(*_):
        return {ID.layers_default: c.default_layers, ID.layers_legacy: inspector.legacy_layers(),
                ID.layers_native: inspector.native_layers()}[ctx.triggered_id]

    @app.callback(Output(ID.reduction_arg, "disabled"), Output(ID.reduction_arg, "value"),
                  Input(ID.reduction, "value"))
    def reduction_arg(reduction):
        if reduction in PARAMETRIC:
            return False, PARAMETRIC[reduction][1]
        return True, None

    # -- selection: gallery, class counts, CSV ---------------------------------------------------------
    @app.callback(Output(ID.selection, "data"), Output(ID.gallery, "children"), Output(ID.class_counts, "figure"),
                  Output(ID.selection_summary, "children"), Output(ID.export_csv, "disabled"),
                  Input(ID.scatter, "selectedData"), prevent_initial_call=True)
    def selection(selected):
        rows = c.valid_rows(p.get("customdata") for p in (selected or {}).get("points", []))
        if not rows:
            return [], [], figures.empty_figure("class counts of the selection", 160), "Nothing selected.", True
        picked = c.frame.iloc[rows]
        items = [{"url": thumb_url(r.image_path), "caption": f"{r.class_label} · seed {r.seed}",
                  "title": f"{r.class_name} · {r.model} · seed {r.seed}"} for r in picked.itertuples()]
        counts = picked.groupby(["class_label", "class_name"]).size().sort_values(ascending=False)
        shown = {f"{label} · {name}": int(n) for (label, name), n in counts.head(30).items()}
        summary = f"{len(rows):,} points selected, {len(counts)} classes"
        return rows, figures.gallery(items), figures.class_counts_figure(shown), summary, False

    @app.callback(Output(ID.csv_download, "data"), Input(ID.export_csv, "n_clicks"), State(ID.selection, "data"),
                  prevent_initial_call=True)
    def export_csv(_n, rows):
        rows = c.valid_rows(rows or [])
        if not rows:
            raise PreventUpdate
        picked = c.frame.iloc[rows]
        return dcc.send_data_frame(picked.to_csv, "selection.csv", index=False)

    # -- PNG of the panels, drawn by Plotly in the browser -----------------------------------------------
    app.clientside_callback(
        """
        function(n) {
            if (!n) { return window.dash_clientside.no_update; }
            const gd = document.querySelector('#panels .js-plotly-plot');
            if (!gd) { return 'nothing to download yet'; }
            const w = gd._fullLayout ? gd._fullLayout.width : 800, h = gd._fullLayout ? gd._fullLayout.height : 600;
            return Plotly.downloadImage(gd, {format: 'png', filename: 'panels', width: w, height: h})
                .then(function() { return 'saved panels.png'; });
        }
        """,
        Output(ID.png_done, "children"), Input(ID.download_png, "n_clicks"), prevent_initial_call=True,
    )
