"""Checkpoint files: the official EDM pickle (read without running it), our writer of that layout,
DMD2 generator state dicts, and .safetensors with the settings in the metadata.

`open_checkpoint` locates a checkpoint (downloading a URL once), detects its format and hashes it
on request, once; `load_network` and every reader take what it returns.

The names below are imported on first use, so `python -m visualizer download` does not pay for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_network": "build", "detect_format": "formats", "load_network": "loading",
    "open_checkpoint": "opener", "OpenedCheckpoint": "opener",
    "load_edm_pickle": "edm_pickle", "read_edm_pickle": "edm_pickle", "write_edm_pickle": "edm_pickle_writer",
    "load_dmd2_generator": "dmd2", "load_dmd2_state_dict": "dmd2",
    "load_network_safetensors": "safetensors_io", "save_network_safetensors": "safetensors_io",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
