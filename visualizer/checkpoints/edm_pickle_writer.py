"""Writing networks in the official EDM pickle layout, with none of NVIDIA's code on the path.

The demo ships its small teacher in this layout, so the teacher goes through the very reader that
reads `edm-imagenet-64x64-cond-adm.pkl`. The layout (facts, section 2): a plain pickle of
{'ema', 'loss_fn', 'augment_pipe', 'dataset_kwargs'}; each network class is written as a call of
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type, version,
module_src, class_name, state}; ModuleDicts as NEWOBJ + BUILD; tensors as
`torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(<legacy torch.save of the
storage>), ...)`, parameters wrapped in `torch._utils._rebuild_parameter`; some constructor
kwargs are numpy float64 scalars. `module_src` is a short placeholder, so no loader can run code
from our files.

The pure-Python pickler is used because it lets a global be written by name (STACK_GLOBAL) without
importing it: `torch_utils` does not exist here, by design.
"""

from __future__ import annotations

import copyreg
import io
import math
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from visualizer.checkpoints.files import atomic_write
from visualizer.models import EDMPrecond

PERSISTENCE_VERSION = 6
MODULE_SRC = (
    "# Written by visualizer.checkpoints.edm_pickle_writer: weights and settings only.\n"
    "# This file carries no model code; read it with visualizer.checkpoints.load_edm_pickle.\n"
)
_DEFAULTS = {"sigma_min": 0.0, "sigma_max": math.inf, "sigma_data": 0.5}


class GlobalRef:
    """A global named by module and name, written as STACK_GLOBAL without being imported."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self!r} only names a global for pickling")

    def __repr__(self) -> str:
        return f"{self.module}.{self.name}"


RECONSTRUCT_PERSISTENT_OBJ = GlobalRef("torch_utils.persistence", "_reconstruct_persistent_obj")
REBUILD_PARAMETER = GlobalRef("torch._utils", "_rebuild_parameter")
REBUILD_TENSOR_V2 = GlobalRef("torch._utils", "_rebuild_tensor_v2")
LOAD_FROM_BYTES = GlobalRef("torch.storage", "_load_from_bytes")
NUMPY_DTYPE = GlobalRef("numpy", "dtype")
NUMPY_SCALAR = GlobalRef("numpy.core.multiarray", "scalar")  # numpy 1's name, as in the official files

# Every global a file written here can contain: exactly those of the official checkpoint.
OFFICIAL_GLOBALS = frozenset({
    "torch_utils.persistence._reconstruct_persistent_obj", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_tensor_v2", "torch.storage._load_from_bytes", "collections.OrderedDict",
    "torch.nn.modules.container.ModuleDict", "numpy.dtype", "numpy.core.multiarray.scalar",
})


class PersistentObject:
    """A persistent-class object that is not a network (EDMLoss): its class name and state."""

    def __init__(self, class_name: str, state: Mapping[str, Any]):
        self.class_name, self.state = class_name, dict(state)


class _Wrapped:
    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class _TensorData(_Wrapped):
    """A parameter's data: written as _rebuild_tensor_v2(...)."""

    __slots__ = ()


class _StorageData(_Wrapped):
    """A tensor's storage: written as _load_from_bytes(...)."""

    __slots__ = ()


class _StorageBytes(_Wrapped):
    """The legacy torch.save of a tensor's storage, produced only at the moment it is written."""

    __slots__ = ()

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(self.tensor._typed_storage(), buf, _use_new_zipfile_serialization=False)
        return buf.getvalue()


class EDMLayoutPickler(pickle._Pickler):
    """Writes modules, tensors and numpy scalars the way the official EDM checkpoint holds them.

    Subclasses may override `module_state` or `init_kwargs` (the tests write older layouts that way).
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: BinaryIO):
        super().__init__(file, protocol=4)

    def reducer_override(self, obj: Any):
        if isinstance(obj, nn.Parameter):
            return REBUILD_PARAMETER, (_TensorData(obj), False, OrderedDict())
        if isinstance(obj, torch.Tensor):
            return self._tensor_reduce(obj)
        if type(obj) is _TensorData:
            return self._tensor_reduce(obj.tensor)
        if type(obj) is _StorageData:
            return LOAD_FROM_BYTES, (_StorageBytes(obj.tensor),)
        if type(obj) is nn.ModuleDict:
            return copyreg.__newobj__, (nn.ModuleDict,), self.module_state(obj)
        if isinstance(obj, nn.Module):
            # module_state may bring its own _init_args/_init_kwargs (older layouts in the tests do).
            state = {"_init_args": (), "_init_kwargs": self.init_kwargs(obj), **self.module_state(obj)}
            return RECONSTRUCT_PERSISTENT_OBJ, (self._meta(type(obj).__name__, state),)
        if isinstance(obj, PersistentObject):
            return RECONSTRUCT_PERSISTENT_OBJ, (self._meta(obj.class_name, obj.state),)
        if isinstance(obj, np.generic):
            if obj.dtype.kind not in "biuf":
                raise pickle.PicklingError(f"numpy {obj.dtype} scalars are not part of the EDM layout")
            return NUMPY_SCALAR, (obj.dtype, obj.tobytes())
        if isinstance(obj, np.dtype):
            order = "|" if obj.itemsize == 1 else "<" if obj.byteorder in "=<" else ">"
            return NUMPY_DTYPE, (f"{obj.kind}{obj.itemsize}", False, True), (3, order, None, None, None, -1, -1, 0)
        return NotImplemented

    def module_state(self, module: nn.Module) -> dict:
        """The module's __dict__ as the official files hold it: hooks empty, only plain attributes."""
        state: dict[str, Any] = {}
        for key, value in vars(module).items():
            if key in ("_parameters", "_buffers", "_modules"):
                state[key] = dict(value)
            elif key == "_non_persistent_buffers_set":
                state[key] = set(value)
            elif "hook" in key:
                state[key] = OrderedDict() if isinstance(value, dict) else None
            elif _plain(value):
                state[key] = value
        return state

    def init_kwargs(self, module: nn.Module) -> dict:
        """EDMPrecond's constructor kwargs as the training script passed them; {} for inner modules."""
        if not isinstance(module, EDMPrecond):
            return {}
        kwargs = {k: v for k, v in module.init_kwargs.items() if not (k in _DEFAULTS and v == _DEFAULTS[k])}
        kwargs["use_fp16"] = module.use_fp16
        kwargs["model_type"] = "DhariwalUNet"
        if "dropout" in kwargs:  # a numpy float64, like the official file's
            kwargs["dropout"] = np.float64(kwargs["dropout"])
        return kwargs

    @staticmethod
    def _meta(class_name: str, state: dict) -> dict:
        return dict(type="class", version=PERSISTENCE_VERSION, module_src=MODULE_SRC, class_name=class_name,
                    state=state)

    @staticmethod
    def _tensor_reduce(tensor: torch.Tensor):
        t = tensor.detach().to("cpu")
        if (not t.is_contiguous() or t.storage_offset() != 0
                or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
            t = t.clone(memory_format=torch.contiguous_format)
        return REBUILD_TENSOR_V2, (_StorageData(t), 0, tuple(t.shape), t.stride(), False, OrderedDict())

    def _save_global_ref(self, obj: GlobalRef) -> None:
        self.save(obj.module)
        self.save(obj.name)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)

    def _save_storage_bytes(self, obj: _StorageBytes) -> None:
        data = obj.to_bytes()
        self.save_bytes(data)
        # Keep the memo index (the file stays as the official one) but not the bytes themselves.
        index, _ = self.memo.pop(id(data))
        self.memo[("written-bytes", index)] = (index, None)

    dispatch[GlobalRef] = _save_global_ref
    dispatch[_StorageBytes] = _save_storage_bytes


def write_edm_pickle(net: EDMPrecond, path: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `net` as an official-layout EDM pickle (['ema'] is the network), atomically.

    `extra` adds or replaces top-level entries (e.g. 'dataset_kwargs'); values must be plain data,
    networks or None.
    """
    if not isinstance(net, EDMPrecond):
        raise TypeError(f"expected an EDMPrecond, got {type(net).__name__}")
    top: dict[str, Any] = {
        "ema": net,
        "loss_fn": PersistentObject("EDMLoss", {
            "P_mean": -1.2, "P_std": 1.2, "sigma_data": net.sigma_data, "_init_args": (), "_init_kwargs": {},
        }),
        "augment_pipe": None,
        "dataset_kwargs": {"resolution": net.img_resolution, "use_labels": net.label_dim > 0, "xflip": False},
    }
    for key, value in (extra or {}).items():
        if not (_plain(value) or isinstance(value, (nn.Module, PersistentObject))):
            raise TypeError(f"extra[{key!r}] is a {type(value).__name__}; only plain data or modules are written")
        top[key] = value
    return dump_edm_layout(top, path)


def dump_edm_layout(top: Any, path: str | Path, pickler: type[EDMLayoutPickler] = EDMLayoutPickler) -> Path:
    """Pickle `top` with `pickler` to `path` through a temporary file; nothing half-written is left."""
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        pickler(f).dump(top)
    return path


def _plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, np.bool_, np.integer, np.floating)):
        return True
    if depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        return all(_plain(v, depth + 1) for v in value)
    if depth < 8 and isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False
