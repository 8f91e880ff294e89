"""`create_app(state)`: the Dash app over what was loaded, assembled from its features.

The shell only: the context (`context.build_context`), the thumbnail route (`thumbs`), the page
(`page.build_layout`) and each feature's callbacks (`register(app, ctx)` of every module in
`page.FEATURES`). The server object holds only read-only things (the table, the models, the
result cache keyed by value, the job manager); whatever belongs to one browser tab lives in that
tab's dcc.Store.
"""

from __future__ import annotations

from pathlib import Path

import dash

from visualizer.app.config import AppState
from visualizer.app.context import build_context, layout_info
from visualizer.app.jobs import ThreadedJobManager
from visualizer.app.page import FEATURES, build_layout
from visualizer.app.thumbs import add_thumbnail_route
from visualizer.inspection import LRUCache

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "app"     # the page's stylesheet (app.css)


def create_app(state: AppState, *, cache: LRUCache | None = None,
               manager: ThreadedJobManager | None = None) -> dash.Dash:
    """The app as a thin shell: layout and behaviour from the feature modules, work in `visualizer.inspection`."""
    manager = manager or ThreadedJobManager()
    ctx = build_context(state, cache, jobs=manager)
    app = dash.Dash(__name__, title="visualizer", background_callback_manager=manager, assets_folder=str(ASSETS),
                    update_title=None, suppress_callback_exceptions=False)
    add_thumbnail_route(app.server, ctx.root)
    app.layout = build_layout(layout_info(state, ctx))
    with manager.accepting():
        for feature in FEATURES:
            feature.register(app, ctx)
    app.visualizer = ctx   # for tests and scripts: the engine behind this app
    return app
