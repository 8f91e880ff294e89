"""Networks as .safetensors: weights plus EDMPrecond's settings as JSON in the file's metadata.

Converting the EDM pickle once makes later loads a memory map with no pickle involved. Files
without our metadata (a DMD2 generator someone saved as .safetensors) fall back to the DMD2 rule:
ImageNet-64 when the weights match it, else settings inferred from the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from visualizer.checkpoints.build import build_network, dmd2_kwargs, strip_module_prefix
from visualizer.checkpoints.files import atomic_write
from visualizer.checkpoints.messages import first_line
from visualizer.checkpoints.opener import OpenedCheckpoint, weights_path
from visualizer.errors import CheckpointError
from visualizer.models import EDMPrecond

FORMAT = "edm-precond"
KWARGS_KEY = "visualizer_edm_kwargs"
SOURCE_KEY = "visualizer_source_format"


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a .safetensors file without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable .safetensors file: {first_line(e)}") from e


def network_kwargs(net: EDMPrecond) -> dict:
    """Everything EDMPrecond(**kwargs) needs to rebuild `net`'s architecture and precision."""
    return {**net.init_kwargs, "use_fp16": net.use_fp16, "model_type": "DhariwalUNet"}


def save_network_safetensors(net: EDMPrecond, path: str | Path, *, source_format: str | None = None) -> Path:
    """Write `net`'s weights and settings to `path` atomically (CPU tensors, one storage each).

    `source_format` (e.g. 'edm-pickle') is kept in the metadata so that a converted teacher is still
    recognised as a teacher.
    """
    path = Path(path)
    tensors = {}
    for key, value in net.state_dict().items():
        t = value.detach().to("cpu")
        if (not t.is_contiguous() or t.storage_offset() != 0
                or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
            t = t.clone(memory_format=torch.contiguous_format)
        tensors[key] = t
    metadata = {"format": FORMAT, KWARGS_KEY: json.dumps(network_kwargs(net))}
    if source_format:
        metadata[SOURCE_KEY] = source_format
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_safetensors(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a .safetensors file; damage raises CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open is no dict
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable .safetensors file: {first_line(e)}") from e
    return metadata, tensors


def read_safetensors_shapes(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file as meta tensors (shapes and dtypes from the header, no data read)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            out = {}
            for key in f.keys():  # noqa: SIM118 - safe_open is no dict
                part = f.get_slice(key)
                out[key] = torch.empty(part.get_shape(), dtype=_DTYPES.get(part.get_dtype(), torch.float32),
                                       device="meta")
            return out
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable .safetensors file: {first_line(e)}") from e


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def load_network_safetensors(path: str | Path | OpenedCheckpoint) -> EDMPrecond:
    """A network from our .safetensors (settings in the metadata) or from a bare DMD2 state dict."""
    path = Path(weights_path(path))
    metadata, tensors = read_safetensors(path)
    if KWARGS_KEY not in metadata:
        tensors = strip_module_prefix(tensors, path)
        return build_network(dmd2_kwargs(tensors, path), tensors, path)
    try:
        kwargs = json.loads(metadata[KWARGS_KEY])
    except ValueError as e:
        raise CheckpointError(f"{path}: its '{KWARGS_KEY}' metadata is not valid JSON: {e}") from e
    except RecursionError:
        raise CheckpointError(f"{path}: its '{KWARGS_KEY}' metadata is JSON nested too deep") from None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: its '{KWARGS_KEY}' metadata is not a JSON object")
    return build_network(kwargs, tensors, path)
