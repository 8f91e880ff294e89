"""Reading official EDM pickles without running any of their code.

An EDM checkpoint (`edm-imagenet-64x64-cond-adm.pkl`) is a plain pickle whose networks are NVIDIA
"persistent classes": each asks the unpickler to exec the Python source embedded in the file. We
never do. The allow-list unpickler in `safe_unpickler.py` (the security boundary, reviewed on its
own) turns each persistent object into a `PersistentRecord` (class name and pickled state,
module_src untouched), tensors into tensors, and refuses every other global, so a hostile file can
at worst fail to load. This module walks what it returns: the architecture comes from the
EDMPrecond record's `_init_kwargs`; the weights from walking the records' `_parameters`, `_buffers`
and `_modules`.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from visualizer.checkpoints.build import build_network
from visualizer.checkpoints.messages import first_line
from visualizer.checkpoints.opener import OpenedCheckpoint, weights_path
from visualizer.checkpoints.safe_unpickler import (
    BoundedReader,
    EDMUnpickler,
    ModuleDictRecord,
    PersistentRecord,
    scan_pickle,
)
from visualizer.errors import CheckpointError
from visualizer.models import EDMPrecond

# EDMPrecond's positional parameters, for a record whose `_init_args` is not empty.
EDM_PRECOND_ARGS = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max",
                    "sigma_data", "model_type")
_MAX_DEPTH = 64


def read_edm_pickle(path: str | Path | OpenedCheckpoint, *, meta: bool = False
                    ) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(init kwargs, state dict, class name) of the network in an EDM pickle: ['ema'], or the top level itself.

    Nothing in the file is executed; any global outside the official format, a damaged or
    truncated file, or a size that does not add up raises CheckpointError naming the file.
    `meta=True` checks everything the same way but returns the tensors on the meta device (shapes
    only): how the architecture is read without holding the weights.
    """
    path = Path(weights_path(path))
    try:
        with open(path, "rb") as f:
            return _read(f, path, meta)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from e


def load_edm_pickle(path: str | Path | OpenedCheckpoint) -> EDMPrecond:
    """The network of an official EDM pickle (ImageNet-64 ADM) in eval mode, use_fp16 as stored."""
    path = weights_path(path)
    kwargs, state_dict, class_name = read_edm_pickle(path)
    if class_name != "EDMPrecond":
        raise CheckpointError(
            f"{path}: the network is a {class_name}; only EDMPrecond networks (the ImageNet-64 ADM "
            "checkpoint, edm-imagenet-64x64-cond-adm.pkl) are supported"
        )
    model_type = kwargs.get("model_type", "DhariwalUNet")
    if model_type != "DhariwalUNet":
        raise CheckpointError(
            f"{path}: model_type {model_type!r} is not supported; only the ADM U-Net ('DhariwalUNet', "
            "edm-imagenet-64x64-cond-adm.pkl) is. The EDM CIFAR-10, FFHQ and AFHQ checkpoints use SongUNet."
        )
    return build_network(kwargs, state_dict, path)


def _read(f, path: Path, meta: bool = False) -> tuple[dict, dict[str, torch.Tensor], str]:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file")
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        scan_pickle(data, path, what="an EDM pickle")   # depth, memo and opcode count, before building anything
    unpickler = EDMUnpickler(BoundedReader(f, size), path, size, meta=meta)
    try:
        top = unpickler.load()
        network = _network_record(top, path)
        return _init_kwargs(network, path), _state_dict(network, path), network.class_name
    except (CheckpointError, MemoryError):
        raise
    except Exception as e:
        raise CheckpointError(
            f"{path}: not a readable EDM pickle (damaged or truncated?): {type(e).__name__}: {first_line(e)}"
        ) from e
    finally:
        unpickler.memo.clear()
        unpickler.stack = []


def _network_record(top: Any, path: Path) -> PersistentRecord:
    if isinstance(top, dict):
        if "ema" not in top:
            raise CheckpointError(f"{path}: no 'ema' network in the pickle (keys: {', '.join(map(str, top))[:200]})")
        top = top["ema"]
    if not isinstance(top, PersistentRecord):
        raise CheckpointError(f"{path}: the pickle's network is a {type(top).__name__}, not an EDM network")
    return top


def _init_kwargs(record: PersistentRecord, path: Path) -> dict:
    args, kwargs = record.state.get("_init_args", ()), record.state.get("_init_kwargs", {})
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict) or not all(isinstance(k, str)
                                                                                      for k in kwargs):
        raise CheckpointError(f"{path}: the network's constructor arguments are malformed")
    if len(args) > len(EDM_PRECOND_ARGS):
        raise CheckpointError(f"{path}: the network has {len(args)} positional constructor arguments")
    merged = dict(zip(EDM_PRECOND_ARGS, args, strict=False))
    for key, value in kwargs.items():
        if key in merged:
            raise CheckpointError(f"{path}: constructor argument {key!r} given twice")
        merged[key] = value
    for key, value in merged.items():
        if not _plain(value):
            raise CheckpointError(f"{path}: constructor argument {key!r} is a {type(value).__name__}, not plain data")
    return merged


def _state_dict(record: PersistentRecord, path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(obj: Any, prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"{path}: modules nested more than {_MAX_DEPTH} deep")
        if id(obj) in seen:
            raise CheckpointError(f"{path}: module {prefix.rstrip('.') or '(root)'} appears twice")
        seen.add(id(obj))
        state = getattr(obj, "state", None)
        if not isinstance(obj, (PersistentRecord, ModuleDictRecord)) or not isinstance(state, dict):
            raise CheckpointError(f"{path}: {prefix.rstrip('.')} is a {type(obj).__name__}, not a module")
        skip = state.get("_non_persistent_buffers_set") or ()
        for kind in ("_parameters", "_buffers"):
            for name, value in _entries(state, kind, path, prefix):
                if value is None or (kind == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{path}: {prefix}{name} is a {type(value).__name__}, not a tensor")
                out[prefix + name] = value
        for name, child in _entries(state, "_modules", path, prefix):
            if child is not None:
                walk(child, f"{prefix}{name}.", depth + 1)

    walk(record, "", 0)
    return out


def _entries(state: dict, kind: str, path: Path, prefix: str):
    entries = state.get(kind) or {}
    if not isinstance(entries, Mapping) or not all(isinstance(k, str) and k and "." not in k for k in entries):
        raise CheckpointError(f"{path}: malformed {kind} in module {prefix.rstrip('.') or '(root)'}")
    return entries.items()


def _plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if depth < 8 and isinstance(value, (list, tuple)):
        return all(_plain(v, depth + 1) for v in value)
    if depth < 8 and isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False
