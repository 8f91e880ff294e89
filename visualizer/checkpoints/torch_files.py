"""torch.save files (`pytorch_model.bin`, `.pth`): checked before `torch.load(weights_only=True)` reads them.

`torch.load(weights_only=True)` runs no code, but it builds whatever the file describes: a dict key
nested 500,000 deep crashes the process (SIGSEGV), a compressed zip member or a legacy storage header
can ask for gigabytes, and stride-0 views of a tiny storage look like a 6.7 GB network that turns
into real memory as soon as it is copied. So before torch sees a file, `check_torch_file`:

- zip files (torch >= 1.6): at most `MAX_MEMBERS` members, unpacking to no more than the file's own size
  (torch stores them uncompressed); exactly one `data.pkl`, opcode-scanned (`scan_pickle`) and then
  read by `TorchFileScanner` into records only; each storage's member must hold its declared bytes;
- legacy files (torch < 1.6): each of the five pickles scanned, the main one read into records, and each
  storage's size header checked against its record and against the bytes left in the file;
- then, for either, every tensor must view its storage without overlap and all tensors together may
  claim no more bytes than the file holds.

Only then does `load_torch_file` call `torch.load(..., weights_only=True)`. Every refusal is a
CheckpointError "<file>: not a readable torch checkpoint: ...".
"""

from __future__ import annotations

import io
import mmap
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from visualizer.checkpoints.messages import first_line
from visualizer.checkpoints.safe_unpickler import BoundedReader, TensorRecord, TorchFileScanner, scan_pickle
from visualizer.errors import CheckpointError

MAX_MEMBERS = 100_000
_LEGACY_PICKLES = 5   # magic number, protocol, sys_info, the object, the storage keys


def load_torch_file(path: str | Path) -> Any:
    """`torch.load(path, map_location='cpu', weights_only=True)` after `check_torch_file`; errors name the file."""
    path = Path(path)
    check_torch_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {first_line(e)}") from e


def check_torch_file(path: str | Path) -> Any:
    """Refuse a torch.save file whose structure, sizes or tensor views are not what a state dict needs.

    Returns what the file holds with every tensor as a `TensorRecord` (storage, offset, size, stride):
    the shapes, without reading any weights.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CheckpointError(f"{path}: empty file")
            zipped = f.read(4) == b"PK\x03\x04"
            f.seek(0)
            if zipped:
                top, scanner = _scan_zip(f, path, size)
            else:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    top, scanner = _scan_legacy(data, path, size)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from e
    scanner.check(size)
    return top


def read_torch_shapes(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a torch.save file as meta tensors (shapes and dtypes, no weights), checked as above."""
    top = check_torch_file(path)
    if not isinstance(top, dict):
        raise CheckpointError(f"{path}: holds a {type(top).__name__}, not a state dict")
    return {k: torch.empty(v.size, dtype=v.storage.dtype, device="meta") for k, v in top.items()
            if isinstance(k, str) and isinstance(v, TensorRecord)}


def _refused(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable torch checkpoint: {what}")


def _read_records(data: bytes, path: Path, legacy: bool) -> tuple[Any, TorchFileScanner]:
    scanner = TorchFileScanner(BoundedReader(io.BytesIO(data), len(data)), path, legacy=legacy)
    try:
        return scanner.load(), scanner
    except (CheckpointError, MemoryError):
        raise
    except Exception as e:
        raise _refused(path, f"damaged or truncated ({type(e).__name__}: {first_line(e)})") from e


def _scan_zip(f, path: Path, size: int) -> tuple[Any, TorchFileScanner]:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise _refused(path, f"a damaged zip archive ({first_line(e)})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _refused(path, f"refused a zip of {len(infos)} members (at most {MAX_MEMBERS})")
        unpacked = sum(i.file_size for i in infos)
        if unpacked > size:
            raise _refused(path, f"refused a zip whose members unpack to {unpacked} bytes, more than the "
                                 f"{size}-byte file (torch stores them uncompressed)")
        pickles = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise _refused(path, f"{len(pickles)} data.pkl members in the zip, expected one")
        prefix = pickles[0].filename[: -len("data.pkl")]
        try:
            data = archive.read(pickles[0])
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
            raise _refused(path, f"a damaged zip archive ({first_line(e)})") from None
        scan_pickle(data, path, what=f"its {pickles[0].filename}")
        top, scanner = _read_records(data, path, legacy=False)
        members = {i.filename: i.file_size for i in infos}
        for record in scanner.storages.values():
            name = f"{prefix}data/{record.key}"
            need = record.numel * record.dtype.itemsize
            if name not in members:
                raise _refused(path, f"storage {record.key!r} has no member {name}")
            if members[name] < need:
                raise _refused(path, f"{name} holds {members[name]} bytes, its storage declares {need}")
    return top, scanner


def _scan_legacy(data, path: Path, size: int) -> tuple[Any, TorchFileScanner]:
    pos, scanner = 0, None
    values = []
    for index in range(_LEGACY_PICKLES):
        end = scan_pickle(data, path, pos, what="a legacy torch.save pickle")
        value, reader = _read_records(bytes(data[pos:end]), path, legacy=True)
        values.append(value)
        if index == 3:
            scanner = reader
        pos = end
    keys = values[4]
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise _refused(path, "the storage key list is malformed")
    for key in keys:
        record = scanner.storages.get(key)
        if record is None:
            raise _refused(path, f"storage {key!r} is listed but no tensor uses it")
        if pos + 8 > size:
            raise _refused(path, "it ends inside a storage header (truncated?)")
        header = int.from_bytes(data[pos:pos + 8], "little", signed=True)
        need = record.numel * record.dtype.itemsize
        if header != record.numel or need > size - pos - 8:
            raise _refused(path, f"storage {key!r} declares {header} elements in its header and {record.numel} in "
                                 f"its record, with {size - pos - 8} bytes left")
        pos += 8 + need
    return values[3], scanner
