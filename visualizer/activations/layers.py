"""Layer names live with the network (visualizer.models.layer_names); re-exported here for capture users."""

from visualizer.models.layer_names import (  # noqa: F401
    LEGACY_NAMES,
    layer_shapes,
    layer_table,
    legacy_names,
    native_names,
    resolve_layers,
)
