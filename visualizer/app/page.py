"""The page shell: the features' layouts in their places, and the session stores.

Left column: the scatter's controls and graph (`scatter`), the map switcher, find and zoom and the
trajectory controls (`explore`), then the selection (`selection`), the
clicked point's nearest neighbours (`neighbours`) and the class-collapse ranking (`collapse`); the map's
overlays' toggle and a clicked real image sit under the scatter (`overlays`); right
column: the pins and history (`pins`), the inspector panels (`panels`), teacher vs student over many samples
(`comparison`), then the edits and the patch sweep
(`edits`), scrolling on its own beside the scatter. Below 1100 px the columns stack
(visualizer/assets/app/app.css). The address's state (`urlstate`: its stores) and the
session state live in the dcc.Store components at the bottom, one set per browser tab. `FEATURES` lists the feature
modules whose callbacks the server registers; a new feature is a module with `layout(info)` and
`register(app, ctx)`, placed here.
"""

from __future__ import annotations

from dash import dcc, html

from visualizer.app import (
    collapse,
    comparison,
    edits,
    explore,
    neighbours,
    overlays,
    overview,
    panels,
    pins,
    scatter,
    selection,
    urlstate,
)
from visualizer.app.context import LayoutInfo
from visualizer.app.ids import ID
from visualizer.app.ui import SMALL

FEATURES = (scatter, overview, explore, overlays, collapse, panels, comparison, selection, edits, neighbours, pins,
            urlstate)


def build_layout(info: LayoutInfo) -> html.Div:
    return html.Div([
        html.H3(info.title, style={"margin": "6px 0"}),
        html.Div(info.note or "", style={**SMALL, "marginBottom": "8px"}),
        *[html.Div(f"Note: {note}", className="load-note", style={**SMALL, "color": "#8a4b00", "marginBottom": "4px"})
          for note in info.notes],
        html.Div([
            html.Div([*scatter.layout(info), *overlays.layout(info), *explore.layout(info), *selection.layout(info),
                      *neighbours.layout(info), *collapse.layout(info)], className="viz-left"),
            html.Div([*pins.layout(info), *panels.layout(info), *comparison.layout(info), *edits.layout(info)],
                     className="viz-right"),
        ], className="viz-columns"),
        dcc.Store(id=ID.clicked, storage_type="memory"),
        dcc.Store(id=ID.first_ready, storage_type="memory"),
        dcc.Store(id=ID.trajectory_ready, storage_type="memory"),
        dcc.Store(id=ID.trajectory_done, storage_type="memory"),
        dcc.Store(id=ID.selection, storage_type="memory", data=[]),
        dcc.Store(id=ID.panel_width, storage_type="memory"),
        dcc.Store(id=ID.hover_point, storage_type="memory"),
        *overview.layout(info),           # the view the user looks at, for a large map's overview (issue 21)
        dcc.Store(id=ID.step_auto, storage_type="memory"),
        *urlstate.layout(info),           # the address: its stores (issue 19)
        dcc.Store(id=ID.neighbours, storage_type="memory"),     # the clicked point's neighbours (gallery, edits)
    ], style={"fontFamily": "system-ui, sans-serif", "padding": "8px 14px", "background": "#fafafa"})
