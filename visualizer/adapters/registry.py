"""Adapters by name: the built-in ones plus any registered in the `visualizer.adapters` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from visualizer.adapters.base import DiffusionAdapter, architecture_of
from visualizer.adapters.demo import DigitsStudentAdapter, DigitsTeacherAdapter
from visualizer.adapters.dmd2 import DMD2Adapter
from visualizer.adapters.edm import EDMAdapter
from visualizer.errors import UserError
from visualizer.models.networks import EDMPrecond

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


def detect_adapter(path: str | Path, network: EDMPrecond | None = None) -> str:
    """The built-in adapter for a checkpoint, from its format (role) and its architecture.

    EDM pickles (and their .safetensors conversions) are teachers, DMD2 files students; among the
    adapters of that role, one whose fixed facts the network matches (a 32x32, 3-channel, 10-class
    net: the digits pair) is preferred to the ImageNet-64 one, which reads any architecture from the
    file. `network`: the already loaded network, so that its file is not read twice.
    """
    from visualizer.checkpoints.loading import is_teacher_format, read_architecture

    teacher = is_teacher_format(path)
    arch = architecture_of(network) if network is not None else read_architecture(path)
    candidates = (DigitsTeacherAdapter, EDMAdapter) if teacher else (DigitsStudentAdapter, DMD2Adapter)
    for cls in candidates:
        fixed = cls.fixed_architecture
        if fixed is None or all(arch.get(k) == v for k, v in fixed.items()):
            return cls.name
    return candidates[-1].name
