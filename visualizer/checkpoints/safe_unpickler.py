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

Shape guards: before any of this, `scan_pickle` (below) has walked the opcode stream (nesting depth, memo
size, opcode count), and so it does for each storage blob's own pickles. A tensor must view its
storage without overlap (no stride-0 or overlapping views, which would let a tiny storage stand for
gigabytes once copied), inside the storage, and all tensors together may not claim more bytes than the
file holds (`view_problem`, `TensorBudget`).

`TorchFileScanner` applies the same rules to a torch.save file (`torch_files.py`) before
`torch.load(weights_only=True)` reads it: it unpickles `data.pkl` into stand-ins that only record each
tensor's storage, dtype, size and stride.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import pickle
import struct
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

    def __init__(self, untyped: torch.UntypedStorage | None, dtype: torch.dtype, numel: int):
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

    def __init__(self, reader: BoundedReader, source: str | Path, file_size: int, *, meta: bool = False):
        """`meta`: every check runs, but tensors are built on the meta device (shapes only, no memory)."""
        super().__init__(reader, source)
        self.file_size = file_size
        self.budget = TensorBudget(file_size)
        self.meta = meta
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
        problem = view_problem(size, stride, offset, storage.numel)
        if problem:
            raise self.refuse(f"refused a tensor of size {size} with stride {stride}: {problem}")
        self.budget.add(numel * itemsize, self.refuse)
        _no_hooks(backward_hooks)
        if storage.untyped is None:
            return torch.empty_strided(size, stride, dtype=storage.dtype, device="meta")
        return torch.empty(0, dtype=storage.dtype).set_(storage.untyped, offset, size, stride)

    def _load_from_bytes(self, data: Any) -> _Storage:
        if type(data) is not bytes:
            raise _Damaged("storage bytes that are not bytes")
        if len(data) > self.file_size:
            raise self.refuse(f"refused a storage of {len(data)} bytes, more than the file")
        storage = _storage_from_legacy_bytes(data, self.source, load=not self.meta)
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


def _storage_from_legacy_bytes(data: bytes, source: str | Path, load: bool = True) -> _Storage:
    """Check the legacy torch.save layout and its declared sizes, then let torch.load read it (if `load`)."""
    reader = BoundedReader(io.BytesIO(data), len(data))

    def next_pickle():
        scan_pickle(data, source, len(data) - reader.left, what="a tensor's storage bytes")
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
    if not load:
        return _Storage(None, dtype, numel)
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


# -- the opcode pre-scan ---------------------------------------------------------------------------
#
# A bounded pre-scan of a pickle's opcode stream, run before any unpickler reads it.
#
# Unpickling, even with an allow-list, builds whatever nesting the file describes, and CPython then
# recurses through it in C (hashing a tuple used as a dict key, for one) with no depth check: a
# 500 KB pickle whose dict key is a tuple nested 500,000 deep kills the process with SIGSEGV, in the
# standard unpickler, in ours and in `torch.load(weights_only=True)` alike. So every pickle the
# package reads (an EDM `.pkl`, the legacy storage blobs inside it, a torch zip's `data.pkl`, a legacy
# torch file's pickles) is first walked here, opcode by opcode, without building anything:
#
# - at most `MAX_OPCODES` opcodes and `MAX_MEMO` memo entries;
# - containers nested at most `MAX_DEPTH` deep, measured on the object graph the opcodes would build
#   (a MARK, a TUPLE, an APPEND into a memoized list: every way of nesting counts, mutations included);
# - every length-prefixed argument fits in the bytes that are left, newline-terminated arguments are
#   at most `MAX_LINE` bytes, integers at most `MAX_LONG_BYTES` bytes; unknown opcodes are refused.
#
# It decides nothing about which globals are allowed (the unpicklers do that); it only guarantees that
# what they are about to read is small enough to build and shallow enough to use. Bytes and strings are
# skipped, not copied, so a 1.2 GB checkpoint is scanned in well under a second from a memory map.

MAX_OPCODES = 1_000_000     # the demo teacher (317 tensors) has 32,000; the ImageNet-64 pickle (553) some 60,000
MAX_MEMO = 250_000         # the demo teacher has 7,300 entries
MAX_DEPTH = 100             # the official files nest about 30 deep
MAX_LINE = 1 << 16
MAX_LONG_BYTES = 64
MAX_MARKS = MAX_DEPTH

_LEAF = -1

# Opcode byte -> (argument kind, stack effect). Argument kinds: None, an int (fixed width), 'line',
# 'lines2', or a length prefix ('len1', 'len4s', 'len4u', 'len8u'). Stack effects are handled below.
_ARGS: dict[int, object] = {}
_EFFECT: dict[int, str] = {}


def _op(code: bytes, arg, effect: str) -> None:
    _ARGS[code[0]] = arg
    _EFFECT[code[0]] = effect


for _code, _arg in ((pickle.INT, "line"), (pickle.LONG, "line"), (pickle.FLOAT, "line"), (pickle.STRING, "line"),
                    (pickle.UNICODE, "line"), (pickle.BININT, 4), (pickle.BININT1, 1), (pickle.BININT2, 2),
                    (pickle.BINFLOAT, 8), (pickle.LONG1, "len1"), (pickle.LONG4, "len4s"),
                    (pickle.BINSTRING, "len4s"), (pickle.SHORT_BINSTRING, "len1"), (pickle.BINBYTES, "len4u"),
                    (pickle.SHORT_BINBYTES, "len1"), (pickle.BINBYTES8, "len8u"), (pickle.BYTEARRAY8, "len8u"),
                    (pickle.SHORT_BINUNICODE, "len1"), (pickle.BINUNICODE, "len4u"), (pickle.BINUNICODE8, "len8u"),
                    (pickle.NONE, None), (pickle.NEWTRUE, None), (pickle.NEWFALSE, None), (pickle.GLOBAL, "lines2"),
                    (pickle.EXT1, 1), (pickle.EXT2, 2), (pickle.EXT4, 4), (pickle.NEXT_BUFFER, None),
                    (pickle.PERSID, "line"), (pickle.EMPTY_TUPLE, None)):
    _op(_code, _arg, "leaf")
for _code in (pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET):
    _op(_code, None, "container")
for _code in (pickle.TUPLE, pickle.LIST, pickle.DICT, pickle.FROZENSET, pickle.OBJ):
    _op(_code, None, "from_mark")
_op(pickle.INST, "lines2", "from_mark")
for _code, _n in ((pickle.TUPLE1, 1), (pickle.TUPLE2, 2), (pickle.TUPLE3, 3), (pickle.REDUCE, 2),
                  (pickle.NEWOBJ, 2), (pickle.NEWOBJ_EX, 3), (pickle.BINPERSID, 1)):
    _op(_code, None, f"pop{_n}")
_op(pickle.STACK_GLOBAL, None, "stack_global")
for _code in (pickle.APPEND, pickle.BUILD):
    _op(_code, None, "add1")
_op(pickle.SETITEM, None, "add2")
for _code in (pickle.APPENDS, pickle.SETITEMS, pickle.ADDITEMS):
    _op(_code, None, "add_mark")
_op(pickle.MARK, None, "mark")
_op(pickle.POP, None, "pop")
_op(pickle.POP_MARK, None, "pop_mark")
_op(pickle.DUP, None, "dup")
_op(pickle.READONLY_BUFFER, None, "none")
_op(pickle.PUT, "line", "put")
_op(pickle.BINPUT, 1, "put")
_op(pickle.LONG_BINPUT, 4, "put")
_op(pickle.MEMOIZE, None, "memoize")
_op(pickle.GET, "line", "get")
_op(pickle.BINGET, 1, "get")
_op(pickle.LONG_BINGET, 4, "get")
_op(pickle.PROTO, 1, "proto")
_op(pickle.FRAME, 8, "frame")
_op(pickle.STOP, None, "stop")


# Protocol 5 out-of-band buffers: no checkpoint format uses them, and every reader here refuses them.
_BUFFERS = frozenset({pickle.BYTEARRAY8[0], pickle.NEXT_BUFFER[0], pickle.READONLY_BUFFER[0]})


class _Refused(Exception):
    """Raised inside the scan; turned into a CheckpointError naming the file."""

    whole = False      # True: the message stands alone ("refused ..."), without "refused <what>:"


class _RefusedWhole(_Refused):
    whole = True


def scan_pickle(data, source: str | Path, start: int = 0, end: int | None = None, *, what: str = "pickle",
                max_depth: int = MAX_DEPTH, max_opcodes: int = MAX_OPCODES, max_memo: int = MAX_MEMO) -> int:
    """Walk one pickle in `data[start:end]` (bytes, memoryview or mmap) and return the offset after its STOP.

    Raises CheckpointError "<source>: refused <what>: ..." when a limit is passed or the stream is not
    a well-formed pickle; nothing is built, so the scan itself costs O(opcodes) time and memory.
    """
    end = len(data) if end is None else end
    try:
        return _scan(data, start, end, max_depth, max_opcodes, max_memo)
    except _Refused as e:
        text = str(e) if e.whole else f"refused {what}: {e}"
        raise CheckpointError(f"{source}: {text}; the file was not loaded") from None


def scan_pickle_file(path: str | Path, *, what: str = "pickle") -> int:
    """Scan the pickle that starts a file (through a read-only memory map); returns where it ends."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CheckpointError(f"{path}: empty file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return scan_pickle(data, path, what=what)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from e


def _scan(data, pos: int, end: int, max_depth: int, max_opcodes: int, max_memo: int) -> int:  # noqa: C901
    stack: list[int] = []           # node ids (containers) or _LEAF, as the unpickler's stack would hold them
    marks: list[int] = []           # stack lengths at each MARK
    memo: dict[int, int] = {}
    children: list[list[int]] = []  # node -> the containers it holds (leaves are not recorded)
    level: list[int] = []           # node -> a lower bound of its nesting depth, kept as it grows
    unpack = struct.unpack_from
    ops = 0

    def new(items) -> int:
        kids = [c for c in items if c >= 0]
        depth = 1 + max((level[c] for c in kids), default=0)
        if depth > max_depth:
            raise _Refused(f"containers nested more than {max_depth} deep")
        children.append(kids)
        level.append(depth)
        return len(children) - 1

    def add(container: int, items) -> None:
        if container < 0:
            return  # adding to a leaf: the unpickler itself will refuse it
        kids = [c for c in items if c >= 0]
        if not kids:
            return
        children[container].extend(kids)
        depth = 1 + max(level[c] for c in kids)
        if depth > level[container]:
            if depth > max_depth:
                raise _Refused(f"containers nested more than {max_depth} deep")
            level[container] = depth

    def pop_mark() -> list[int]:
        if not marks:
            raise _Refused("a MARK is missing (damaged?)")
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def pop(n: int) -> list[int]:
        if len(stack) - (marks[-1] if marks else 0) < n:
            raise _Refused("the stack underflows (damaged?)")
        items = stack[-n:]
        del stack[-n:]
        return items

    def top() -> int:
        if len(stack) <= (marks[-1] if marks else 0):
            _underflow()
        return stack[-1]

    while True:
        if pos >= end:
            raise _Refused("it ends before its STOP opcode (truncated?)")
        code = data[pos]
        pos += 1
        ops += 1
        if ops > max_opcodes:
            raise _Refused(f"more than {max_opcodes:,} opcodes")
        arg_kind = _ARGS.get(code, _Refused)
        if arg_kind is _Refused:
            raise _Refused(f"unknown opcode 0x{code:02x} at byte {pos - 1}")
        if code in _BUFFERS:
            raise _RefusedWhole("refused pickle protocol 5 out-of-band buffers")
        value = None
        if arg_kind is None:
            pass
        elif type(arg_kind) is int:
            if pos + arg_kind > end:
                raise _Refused("an opcode argument runs past the end (truncated?)")
            if arg_kind == 1:
                value = data[pos]
            elif arg_kind == 4:
                value = unpack("<I", data, pos)[0]
            elif arg_kind == 8:
                value = unpack("<Q", data, pos)[0]
            pos += arg_kind
        elif arg_kind == "line" or arg_kind == "lines2":
            for _ in range(2 if arg_kind == "lines2" else 1):
                stop = data.find(b"\n", pos, min(end, pos + MAX_LINE + 1))
                if stop < 0:
                    raise _Refused(f"a text argument longer than {MAX_LINE} bytes or not terminated")
                value = bytes(data[pos:stop])
                pos = stop + 1
        else:  # length-prefixed payload: skipped, never copied
            width = {"len1": 1, "len4s": 4, "len4u": 4, "len8u": 8}[arg_kind]
            if pos + width > end:
                raise _Refused("a length runs past the end (truncated?)")
            n = data[pos] if width == 1 else unpack({"len4s": "<i", "len4u": "<I", "len8u": "<Q"}[arg_kind],
                                                      data, pos)[0]
            pos += width
            if n < 0:
                raise _Refused(f"a negative length {n}")
            if n > end - pos:
                raise _Refused(f"an entry declares {n} bytes but only {end - pos} remain")
            if code in (pickle.LONG1[0], pickle.LONG4[0]) and n > MAX_LONG_BYTES:
                raise _Refused(f"an integer of {n} bytes (at most {MAX_LONG_BYTES})")
            pos += n

        effect = _EFFECT[code]
        if effect == "leaf":
            stack.append(_LEAF)
        elif effect == "container":
            stack.append(new(()))
        elif effect == "from_mark":
            stack.append(new(pop_mark()))
        elif effect == "pop1":
            stack.append(new(pop(1)))
        elif effect == "pop2":
            stack.append(new(pop(2)))
        elif effect == "pop3":
            stack.append(new(pop(3)))
        elif effect == "stack_global":
            pop(2)
            stack.append(_LEAF)
        elif effect == "add1":
            items = pop(1)
            add(top(), items)
        elif effect == "add2":
            items = pop(2)
            add(top(), items)
        elif effect == "add_mark":
            items = pop_mark()
            add(top(), items)
        elif effect == "mark":
            if len(marks) >= MAX_MARKS:
                raise _Refused(f"MARKs nested more than {MAX_MARKS} deep")
            marks.append(len(stack))
        elif effect == "pop":
            if stack and len(stack) > (marks[-1] if marks else 0):
                stack.pop()
            else:
                pop_mark()
        elif effect == "pop_mark":
            pop_mark()
        elif effect == "dup":
            stack.append(top())
        elif effect == "put" or effect == "memoize":
            current = top()
            if effect == "memoize":
                index = len(memo)
            elif type(value) is bytes:
                index = _decimal(value)
            else:
                index = value
            if index not in memo and len(memo) >= max_memo:
                raise _Refused(f"more than {max_memo:,} memo entries")
            memo[index] = current
        elif effect == "get":
            index = _decimal(value) if type(value) is bytes else value
            if index not in memo:
                raise _Refused(f"memo entry {index} is read before it is written (damaged?)")
            stack.append(memo[index])
        elif effect == "proto":
            if value > pickle.HIGHEST_PROTOCOL:
                raise _Refused(f"unsupported pickle protocol {value}")
        elif effect == "frame":
            if value > end - pos:
                raise _Refused(f"a frame declares {value} bytes but only {end - pos} remain")
        elif effect == "stop":
            if len(stack) != 1 or marks:
                raise _Refused("it stops with a malformed stack (damaged?)")
            _check_depth(children, max_depth)
            return pos


def _underflow():
    raise _Refused("the stack underflows (damaged?)")


def _decimal(text: bytes) -> int:
    try:
        return int(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise _Refused(f"a malformed memo index {text[:20]!r}") from None


def _check_depth(children: list[list[int]], max_depth: int) -> None:
    """The exact nesting depth of the graph (the running bounds miss containers filled after being nested)."""
    n = len(children)
    depth = [-1] * n          # -1: not seen, -2: on the current path
    for root in range(n):
        if depth[root] != -1:
            continue
        depth[root] = -2
        path = [(root, 0)]
        while path:
            node, i = path[-1]
            kids = children[node]
            if i < len(kids):
                path[-1] = (node, i + 1)
                child = kids[i]
                if depth[child] == -1:
                    depth[child] = -2
                    path.append((child, 0))
                    if len(path) > max_depth:
                        raise _Refused(f"containers nested more than {max_depth} deep")
                continue
            path.pop()
            depth[node] = 1 + max((depth[c] for c in kids if depth[c] >= 0), default=0)
            if depth[node] > max_depth:
                raise _Refused(f"containers nested more than {max_depth} deep")

# -- tensor views and the byte budget ---------------------------------------------------------------

def view_problem(size: tuple[int, ...], stride: tuple[int, ...], offset: int, storage_numel: int) -> str | None:
    """Why a view would not hold each of its elements once inside its storage; None when it does.

    Sufficient and what every saved tensor satisfies: taken by increasing stride, each dimension of
    more than one element steps further than all the smaller ones together can reach, so no two
    indices meet (stride 0, overlapping or interleaved views are refused).
    """
    if len(size) != len(stride):
        return "its size and stride differ in length"
    if any(n == 0 for n in size):
        return None
    if offset < 0 or offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= storage_numel:
        return f"it reaches past its storage of {storage_numel} elements"
    reach = 0
    for s, n in sorted((s, n) for n, s in zip(size, stride, strict=True) if n > 1):
        if s <= reach:
            return "its elements overlap (a stride-0 or overlapping view of a smaller storage)"
        reach += (n - 1) * s
    return None


class TensorBudget:
    """The logical bytes of every tensor read from one file, which together may not exceed the file's size."""

    def __init__(self, file_size: int):
        self.file_size, self.total = file_size, 0

    def add(self, nbytes: int, refuse) -> None:
        self.total += nbytes
        if self.total > self.file_size:
            raise refuse(f"refused tensors claiming more than {self.total} bytes in all, more than the whole file "
                         f"({self.file_size} bytes)")


# -- torch.save files, before torch.load reads them -------------------------------------------------

class StorageRecord:
    """A storage named by a torch.save persistent id: dtype, key and element count; nothing is read."""

    __slots__ = ("dtype", "key", "numel")

    def __init__(self, dtype: torch.dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = dtype, key, numel


class TensorRecord:
    """What `_rebuild_tensor_v2` would build: its storage, offset, size and stride."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: StorageRecord, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    @property
    def nbytes(self) -> int:
        return math.prod(self.size) * self.storage.dtype.itemsize


class _DictRecord(dict):
    """collections.OrderedDict in a state dict: a dict whose BUILD (the `_metadata` attribute) is ignored."""

    def __setstate__(self, state: Any) -> None:
        pass


class TorchFileScanner(_SafeUnpickler):
    """Reads a torch.save pickle (`data.pkl`, or a legacy file's main pickle) into records, never tensors.

    Allowed: the globals a saved state dict uses (OrderedDict, `_rebuild_tensor_v2`, `_rebuild_parameter`,
    the `torch.*Storage` types) and persistent ids naming storages. Everything else is refused by name.
    `legacy` selects the pre-1.6 persistent id layout (with a view field that must be None).
    """

    def __init__(self, reader: BoundedReader, source: str | Path, *, legacy: bool = False):
        super().__init__(reader, source)
        self.legacy = legacy
        self.storages: dict[str, StorageRecord] = {}
        self.tensors: list[TensorRecord] = []
        self.allowed = {
            ("collections", "OrderedDict"): _DictRecord,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter,
        }

    def refuse(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: not a readable torch checkpoint: {what}; the file was not loaded")

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        found = self.allowed.get((module, name))
        if found is None:
            raise self.refuse(f"refused global '{_clip(module)}.{_clip(name)}' (a generator file holds tensors only)")
        return found

    def buildable(self, inst: Any) -> bool:
        return isinstance(inst, _DictRecord)

    def persistent_load(self, pid):
        width = 6 if self.legacy else 5
        if not (isinstance(pid, tuple) and len(pid) == width and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and _is_int(pid[4])
                and pid[4] >= 0 and (not self.legacy or pid[5] is None)):
            raise self.refuse("refused a persistent id that is not a plain storage")
        dtype, key, numel = _STORAGE_DTYPES[pid[1].name], pid[2], pid[4]
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = StorageRecord(dtype, key, numel)
        elif (known.dtype, known.numel) != (dtype, numel):
            raise self.refuse(f"storage {_clip(key)!r} is declared twice with different types or sizes")
        return known

    def _rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                           backward_hooks: Any = None, metadata: Any = None) -> TensorRecord:
        if not isinstance(storage, StorageRecord):
            raise self.refuse("a tensor whose storage is not a storage")
        size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
        if not _is_int(offset) or offset < 0 or len(size) != len(stride) or len(size) > 16:
            raise self.refuse(f"a tensor with offset {offset!r}, size {size} and stride {stride}")
        _no_hooks(backward_hooks)
        record = TensorRecord(storage, offset, size, stride)
        self.tensors.append(record)
        return record

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, backward_hooks: Any = None, *rest):
        if not isinstance(data, TensorRecord):
            raise self.refuse("a parameter whose data is not a tensor")
        _no_hooks(backward_hooks)
        return data

    def check(self, file_size: int) -> None:
        """Every view inside its storage without overlap; storages and tensors within the file's size."""
        stored = sum(r.numel * r.dtype.itemsize for r in self.storages.values())
        if stored > file_size:
            raise self.refuse(f"refused storages declaring {stored} bytes, more than the whole file "
                              f"({file_size} bytes)")
        budget = TensorBudget(file_size)
        for t in self.tensors:
            problem = view_problem(t.size, t.stride, t.offset, t.storage.numel)
            if problem:
                raise self.refuse(f"refused a tensor of size {t.size} with stride {t.stride}: {problem}")
            budget.add(t.nbytes, self.refuse)
