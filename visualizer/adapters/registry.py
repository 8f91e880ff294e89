"""Adapters by name: the built-in ones plus any registered in the `visualizer.adapters` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from visualizer.adapters.base import DiffusionAdapter
from visualizer.adapters.demo import DigitsStudentAdapter, DigitsTeacherAdapter
from visualizer.adapters.dmd2 import DMD2Adapter
from visualizer.adapters.edm import EDMAdapter
from visualizer.errors import UserError

ENTRY_POINT_GROUP = "visualizer.adapters"
BUILTIN: dict[str, type[DiffusionAdapter]] = {
    cls.name: cls for cls in (EDMAdapter, DMD2Adapter, DigitsTeacherAdapter, DigitsStudentAdapter)
}


@cache
def _plugins() -> dict[str, type[DiffusionAdapter]]:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, DiffusionAdapter)):
            raise UserError(f"entry point {ep.name!r} ({ep.value}) is not a DiffusionAdapter subclass")
        found[ep.name] = cls
    return found


def _all() -> dict[str, type[DiffusionAdapter]]:
    return {**BUILTIN, **_plugins()}


def list_adapters() -> list[str]:
    return sorted(_all())


def get_adapter(name: str) -> type[DiffusionAdapter]:
    adapters = _all()
    if name not in adapters:
        raise UserError(f"unknown adapter {name!r}; available: {', '.join(sorted(adapters))}")
    return adapters[name]


def known_presets() -> dict[str, list[str]]:
    """Preset name -> the adapters that offer it, over every registered adapter."""
    out: dict[str, list[str]] = {}
    for name, cls in sorted(_all().items()):
        for preset in cls.presets:
            out.setdefault(preset, []).append(name)
    return out


def detect_adapter(path: str | Path) -> str:
    """Teacher or student from the file: EDM pickles (and their conversions) are teachers, DMD2 files students."""
    from visualizer.checkpoints.loading import detect_format
    from visualizer.checkpoints.safetensors_io import SOURCE_KEY, read_metadata

    fmt = detect_format(Path(path))
    if fmt == "safetensors" and read_metadata(path).get(SOURCE_KEY) == "edm-pickle":
        fmt = "edm-pickle"
    return EDMAdapter.name if fmt == "edm-pickle" else DMD2Adapter.name
