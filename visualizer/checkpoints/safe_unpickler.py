"""The security boundary for EDM pickles: an allow-list unpickler that can build data and nothing else.

An official EDM checkpoint is a pickle, and unpickling normally means calling whatever globals the
file names. This module is the one place that decides what a checkpoint pickle may call. Review it
alone; `edm_pickle.py` only walks the records it returns.

What a file may name (facts, section 2), and what each becomes here:

- `torch_utils.persistence._reconstruct_persistent_obj(meta)`: NVIDIA's persistent classes. EDM's own
  loader execs `meta['module_src']`; here it becomes a `PersistentRecord` (class name and pickled
  state). `module_src` is never looked at, and `torch_utils` is never imported.
- `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`: a plain tensor viewing a
  storage, after checking its size, stride and offset against the storage and the file (no hooks).
- `torch.storage._load_from_bytes(b)`: `b` is a legacy torch.save of one storage; its own small
  pickles are read by a second allow-list (the `torch.*Storage` type names and one persistent id),
  the declared element count is checked against the bytes present, and only then does
  `torch.load(..., weights_only=True)` read it.
- `collections.OrderedDict`; `torch.nn.modules.container.ModuleDict` as a `ModuleDictRecord` that only
  keeps its state; `numpy.dtype` for plain numeric codes and `numpy(._)core.multiarray.scalar` as
  the Python number, so numpy float64 constructor kwargs read as floats.

Anything else is refused by name before it is looked up: every other global (`os.system`,
`builtins.eval`, `importlib.import_module`, other `torch._utils` functions), persistent ids in the
outer pickle, BUILD of anything but the two stand-ins that take a state, and protocol-5 out-of-band
buffers. Nothing is imported because a file names it.

Length guards: the pure-Python unpickler is used on purpose, reading through `BoundedReader`, so every
length-prefixed read is checked against the bytes actually left in the file (the C unpickler
allocates a declared length before reading it), tensors larger than the file are refused, and each
storage blob leaves the memo once it has become a tensor, which keeps peak memory near the file size
instead of twice it. A forged length therefore fails with a CheckpointError instead of a huge allocation.
"""

from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visualizer.errors import CheckpointError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_NUMPY_CODES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}


class PersistentRecord:
    """What `_reconstruct_persistent_obj(meta)` yields here: the class name and pickled state, never code."""

    __slots__ = ("class_name", "state", "version")

    def __init__(self, class_name: str, state: dict, version: int):
        self.class_name, self.state, self.version = class_name, state, version

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r})"


class ModuleDictRecord:
    """Stands in for torch.nn.ModuleDict, which the pickle builds as NEWOBJ then BUILD with its __dict__."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _Damaged(f"a ModuleDict with a {type(state).__name__} as its state")
        self.state = state


class _NumpyDType:
    """numpy.dtype(code, align, copy) then BUILD: only the byte order is kept from the state."""

    def __init__(self, code: str):
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise _Damaged("a numpy dtype with an unexpected state")
        self.byteorder = state[1]


class _Storage:
    """A storage read from `torch.storage._load_from_bytes`, with the dtype it was saved as."""

    __slots__ = ("untyped", "dtype", "numel")

    def __init__(self, untyped: torch.UntypedStorage, dtype: torch.dtype, numel: int):
        self.untyped, self.dtype, self.numel = untyped, dtype, numel


class _StorageType:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _Damaged(Exception):
    """The bytes do not form the structure they claim to; reported as a damaged checkpoint."""


class BoundedReader:
    """A file wrapper that refuses reads longer than what is left, so forged lengths allocate nothing."""

    def __init__(self, raw, size: int):
        self._raw, self._left = raw, size

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._left
        if n > self._left:
            raise _Damaged(f"an entry declares {n} bytes but only {self._left} remain in the file")
        data = self._raw.read(n)
        self._left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self._raw.readline()
        self._left -= len(line)
        return line

    @property
    def left(self) -> int:
        return self._left


class _RecentMemo(dict):
    """The unpickler's memo, remembering its last few keys so a consumed storage blob can be let go."""

    def __init__(self):
        super().__init__()
        self.recent: deque = deque(maxlen=8)

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.recent.append(key)


_SPENT = object()  # replaces a memo entry whose bytes became a tensor


class _SafeUnpickler(pickle._Unpickler):
    """Pure-Python unpickler with bounded reads and no way to reach code: subclasses allow-list globals."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, reader: BoundedReader, source: str | Path):
        super().__init__(reader)
        self.memo = _RecentMemo()
        self.source = source

    def refuse(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {what}; the file was not loaded")

    def find_class(self, module: str, name: str):
        raise self.refuse(f"refused global '{_clip(module)}.{_clip(name)}'")

    def persistent_load(self, pid):
        raise self.refuse("refused persistent id (the official EDM format has none)")

    def buildable(self, inst: Any) -> bool:
        return False

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not self.buildable(inst):
            raise self.refuse(f"refused BUILD of a {type(inst).__name__} (only ModuleDict and numpy dtypes are built)")
        inst.__setstate__(state)

    def _refuse_buffers(self) -> None:
        raise self.refuse("refused pickle protocol 5 out-of-band buffers")

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.BYTEARRAY8[0]] = _refuse_buffers
    dispatch[pickle.NEXT_BUFFER[0]] = _refuse_buffers
    dispatch[pickle.READONLY_BUFFER[0]] = _refuse_buffers


class EDMUnpickler(_SafeUnpickler):
    """Exactly the globals of the official EDM pickle, each mapped to a stand-in that only builds data."""

    def __init__(self, reader: BoundedReader, source: str | Path, file_size: int):
        super().__init__(reader, source)
        self.file_size = file_size
        self.allowed = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): self._reconstruct_persistent_obj,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch.storage", "_load_from_bytes"): self._load_from_bytes,
            ("collections", "OrderedDict"): OrderedDict,
            ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
            ("numpy", "dtype"): self._numpy_dtype,
            ("numpy._core.multiarray", "scalar"): self._numpy_scalar,
            ("numpy.core.multiarray", "scalar"): self._numpy_scalar,
        }

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None:
            return super().find_class(module, name)
        return found

    def buildable(self, inst: Any) -> bool:
        return isinstance(inst, (ModuleDictRecord, _NumpyDType))

    # -- stand-ins for the allowed globals ---------------------------------------------------------

    def _reconstruct_persistent_obj(self, meta: Any) -> PersistentRecord:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise self.refuse("refused a persistent object that is not of type 'class'")
        class_name, state = meta.get("class_name"), meta.get("state")
        if not isinstance(class_name, str) or not isinstance(state, dict):
            raise _Damaged("a persistent object without a class name or state")
        # meta['module_src'] is deliberately never looked at.
        return PersistentRecord(class_name, state, meta.get("version"))

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, backward_hooks: Any = None, *rest):
        if not isinstance(data, torch.Tensor):
            raise _Damaged("a parameter whose data is not a tensor")
        _no_hooks(backward_hooks)
        return data

    def _rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                           backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
        if not isinstance(storage, _Storage):
            raise _Damaged("a tensor whose storage is not a storage")
        size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
        if not _is_int(offset) or offset < 0 or len(size) != len(stride) or len(size) > 16:
            raise _Damaged(f"a tensor with offset {offset!r}, size {size} and stride {stride}")
        numel = math.prod(size)
        itemsize = storage.dtype.itemsize
        if numel * itemsize > self.file_size:
            raise self.refuse(f"refused a tensor of {numel} elements ({numel * itemsize} bytes), "
                              f"more than the whole file ({self.file_size} bytes)")
        if numel and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= storage.numel:
            raise self.refuse(f"refused a tensor of size {size} that reaches past its storage of {storage.numel}")
        _no_hooks(backward_hooks)
        return torch.empty(0, dtype=storage.dtype).set_(storage.untyped, offset, size, stride)

    def _load_from_bytes(self, data: Any) -> _Storage:
        if type(data) is not bytes:
            raise _Damaged("storage bytes that are not bytes")
        if len(data) > self.file_size:
            raise self.refuse(f"refused a storage of {len(data)} bytes, more than the file")
        storage = _storage_from_legacy_bytes(data, self.source)
        # The pickle memoizes the blob and its argument tuple; drop them so only the tensor stays.
        for key in list(self.memo.recent):
            value = self.memo.get(key)
            if value is data or (type(value) is tuple and any(v is data for v in value)):
                dict.__setitem__(self.memo, key, _SPENT)
        return storage

    def _numpy_dtype(self, code: Any, align: Any = False, copy: Any = False) -> _NumpyDType:
        if code not in _NUMPY_CODES:
            raise self.refuse(f"refused numpy dtype {_clip(repr(code))} (only plain numeric scalars are read)")
        return _NumpyDType(code)

    def _numpy_scalar(self, dtype: Any, data: Any = None) -> int | float | bool:
        if not isinstance(dtype, _NumpyDType) or type(data) is not bytes:
            raise self.refuse("refused a numpy scalar that is not a plain number")
        order = dtype.byteorder if dtype.byteorder in ("<", ">") else "="
        np_dtype = np.dtype(order + dtype.code) if dtype.code[1] != "1" else np.dtype(dtype.code)
        if len(data) != np_dtype.itemsize:
            raise _Damaged(f"a numpy {dtype.code} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=np_dtype, count=1)[0].item()


class _LegacyStorageUnpickler(_SafeUnpickler):
    """The small pickles inside one legacy torch.save of a storage: torch.*Storage and one persistent id."""

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise self.refuse(f"refused global '{_clip(module)}.{_clip(name)}' inside a tensor's storage bytes")

    def persistent_load(self, pid):
        return ("persistent", pid)


def _storage_from_legacy_bytes(data: bytes, source: str | Path) -> _Storage:
    """Check the legacy torch.save layout and its declared sizes, then let torch.load read it."""
    reader = BoundedReader(io.BytesIO(data), len(data))

    def next_pickle():
        return _LegacyStorageUnpickler(reader, source).load()

    if next_pickle() != _LEGACY_MAGIC or next_pickle() != _LEGACY_PROTOCOL:
        raise _Damaged("storage bytes that are not a legacy torch.save")
    sys_info = next_pickle()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise _Damaged("storage bytes that are not little-endian")
    pid = next_pickle()
    if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "persistent"):
        raise _Damaged("storage bytes that hold something other than one storage")
    pid = pid[1]
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and _is_int(pid[4])
            and (len(pid) == 5 or pid[5] is None)):
        raise _Damaged("storage bytes with an unexpected storage record")
    dtype, key, numel = _STORAGE_DTYPES[pid[1].name], pid[2], pid[4]
    if next_pickle() != [key]:
        raise _Damaged("storage bytes whose key list does not match")
    itemsize = dtype.itemsize
    header = int.from_bytes(reader.read(8), "little", signed=True)
    left = reader.left
    if header != numel:
        raise _Damaged(f"storage bytes whose size header ({header}) contradicts their record ({numel})")
    if numel < 0 or numel * itemsize != left:
        raise CheckpointError(
            f"{source}: refused a storage declaring {numel} x {itemsize} bytes with {left} bytes present; "
            "the file was not loaded"
        )
    loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(loaded, torch.storage.TypedStorage) or loaded.dtype != dtype:
        raise _Damaged("storage bytes that torch reads as something else")
    return _Storage(loaded._untyped_storage, dtype, numel)


def _no_hooks(hooks: Any) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise _Damaged("a tensor with backward hooks")


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 0 for v in value):
        raise _Damaged(f"a tensor {what} that is not a tuple of non-negative integers")
    return tuple(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clip(text: str, limit: int = 100) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."
