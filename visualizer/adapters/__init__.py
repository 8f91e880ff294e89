"""Model adapters: one interface over the EDM teacher, the DMD2 student and third-party models."""

from visualizer.adapters.base import DiffusionAdapter, SampleResult
from visualizer.adapters.registry import detect_adapter, get_adapter, known_presets, list_adapters

__all__ = ["DiffusionAdapter", "SampleResult", "detect_adapter", "get_adapter", "known_presets", "list_adapters"]
