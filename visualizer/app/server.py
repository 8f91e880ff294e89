"""`create_app(state)`: the Dash app over what was loaded, assembled from its features.

The shell only: the context (`context.build_context`), the thumbnail route (`thumbs`), the page
(`page.build_layout`) and each feature's callbacks (`register(app, ctx)` of every module in
`page.FEATURES`). The server object holds only read-only things (the table, the models, the
result cache keyed by value, the job manager); whatever belongs to one browser tab lives in that
tab's dcc.Store.

The browser is not trusted: every callback request is checked against the types declared for the
component properties it carries (`inputs`, `guard`) before any callback runs, refusals and errors
are said in the page's notice bar, and teacher runs are bounded per session and in all (`jobs`).
With a `token` (a server shared beyond this computer) every route asks for it and the page shows no
absolute paths (`access`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dash

from visualizer.app import access, guard, overview
from visualizer.app.config import AppState
from visualizer.app.context import build_context, layout_info
from visualizer.app.inputs import property_types
from visualizer.app.jobs import ThreadedJobManager
from visualizer.app.page import FEATURES, build_layout
from visualizer.app.thumbs import add_thumbnail_route
from visualizer.inspection import LRUCache

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "app"     # the page's stylesheet (app.css)


def create_app(state: AppState, *, cache: LRUCache | None = None,
               manager: ThreadedJobManager | None = None, token: str | None = None) -> dash.Dash:
    """The app as a thin shell: layout and behaviour from the feature modules, work in `visualizer.inspection`."""
    public = access.redact if token else str      # what remote viewers may read: no absolute paths
    manager = manager or ThreadedJobManager()
    if manager.notify is None:
        manager.notify = lambda message: guard.notify(public(message))
    errors: list[Exception] = []
    ctx = build_context(state, cache, jobs=manager)
    if ctx.frame is not None and len(ctx.frame) > ctx.exact_limit:
        overview.warm_up()       # datashader's compilation before the first page, not during it (issue 21)
    app = dash.Dash(__name__, title="visualizer", background_callback_manager=manager, assets_folder=str(ASSETS),
                    update_title=None, suppress_callback_exceptions=False,
                    on_error=guard.error_handler(errors, public))
    access.protect(app.server, token)      # first: every route, the thumbnails and the callbacks included
    add_thumbnail_route(app.server, ctx.root)
    info = layout_info(state, ctx)
    shell = build_layout(_public_info(info) if token else info)
    shell.children = [guard.banner(), *shell.children]
    app.layout = shell
    with manager.accepting():
        for feature in FEATURES:
            feature.register(app, ctx)
    guard.register(app)
    guard.install(app, property_types(ctx, app.layout), public)
    app.visualizer = ctx   # for tests and scripts: the engine behind this app
    app.visualizer_errors = errors   # exceptions no check foresaw (logged; the page said "internal error")
    return app


def _public_info(info):
    """The layout's facts with absolute paths shortened (checkpoint files in the models line, notes)."""
    changes = {}
    for f in dataclasses.fields(info):
        value = getattr(info, f.name)
        if isinstance(value, str):
            changes[f.name] = access.redact(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            changes[f.name] = type(value)(access.redact(v) for v in value)
    return dataclasses.replace(info, **changes)
