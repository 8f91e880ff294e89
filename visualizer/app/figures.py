"""Every feature's figure builders under one name, for notebooks and tests: nothing is defined here.

Each builder lives with its feature (plain values in, a Plotly figure or Dash components out; no
model, request or session): the scatter's in `scatter`, the panels' in `panels`, the selection's
in `selection`, the edits' and the patch sweep's in `edits`, the shared empty placeholder in `ui`. A
new feature's figures go in its own module.
"""

from __future__ import annotations

from visualizer.app.edits import changes_figure, edit_images_figure, region_figure, sweep_figure
from visualizer.app.panels import Panel, comparison_figure, png_data_uri, similarity_figure
from visualizer.app.scatter import (
    COLOUR_MODES,
    GREY,
    MAX_LEGEND_CLASSES,
    MODEL_COLOURS,
    MODEL_SYMBOLS,
    OKABE_ITO,
    PALETTE,
    PALETTES,
    class_colour,
    class_colours,
    filter_rows,
    hover_card,
    link_segments,
    scatter_figure,
)
from visualizer.app.selection import class_counts_figure, gallery
from visualizer.app.ui import empty_figure

__all__ = [
    "COLOUR_MODES", "GREY", "MAX_LEGEND_CLASSES", "MODEL_COLOURS", "MODEL_SYMBOLS", "OKABE_ITO", "PALETTE",
    "PALETTES", "Panel", "changes_figure", "class_colour", "class_colours", "class_counts_figure", "comparison_figure",
    "edit_images_figure", "empty_figure", "filter_rows", "gallery", "hover_card", "link_segments", "png_data_uri",
    "region_figure", "scatter_figure", "similarity_figure", "sweep_figure",
]
