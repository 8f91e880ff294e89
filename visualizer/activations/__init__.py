"""Named layers of an EDMPrecond: hook them, record them per sampler step, reduce them to images, compare them.

torch only; the app turns these tensors into figures.
"""

from visualizer.activations.capture import Capture, Record, capture, register_forward_hooks
from visualizer.activations.compare import compare_all, cosine_similarity, difference_map, linear_cka
from visualizer.activations.layers import LEGACY_NAMES, layer_shapes, layer_table, legacy_names, resolve_layers
from visualizer.activations.reductions import (
    REDUCTIONS,
    channel_l2,
    mean_abs,
    pca_rgb,
    reduce,
    single_channel,
    topk_energy,
)

__all__ = [
    "LEGACY_NAMES", "REDUCTIONS", "Capture", "Record", "capture", "channel_l2", "compare_all", "cosine_similarity",
    "difference_map", "layer_shapes", "layer_table", "legacy_names", "linear_cka", "mean_abs", "pca_rgb", "reduce",
    "register_forward_hooks", "resolve_layers", "single_channel", "topk_energy",
]
