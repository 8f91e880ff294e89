"""Which kind of checkpoint a path holds, and which file in a DMD2 folder is the generator.

Below every reader: it needs only the first bytes of a file and the names in a folder (no torch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from visualizer.errors import CheckpointError

FORMATS = ("edm-pickle", "safetensors", "torch", "dmd2-folder")
GENERATOR_FILES = ("pytorch_model.bin", "model.safetensors")
GUIDANCE_FILE = "pytorch_model_1.bin"

# A legacy (non-zip) torch.save starts with a protocol-2 pickle of torch's magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ZIP_MAGIC = b"PK\x03\x04"
# How messages name each format.
FORMAT_NAMES = {"edm-pickle": "an EDM pickle", "safetensors": "a .safetensors file", "torch": "a torch checkpoint",
                "dmd2-folder": "a DMD2 checkpoint folder"}
MAX_SAFETENSORS_HEADER = 100_000_000   # the safetensors library's own limit
_EXTENSIONS = {
    ".pkl": "edm-pickle", ".pickle": "edm-pickle", ".safetensors": "safetensors",
    ".pt": "torch", ".pth": "torch", ".bin": "torch", ".ckpt": "torch",
}


def detect_format(path: str | Path) -> str:
    """'edm-pickle', 'safetensors', 'torch' or 'dmd2-folder', from the first bytes; the name only breaks ties.

    Content wins over the extension because people rename files; an extension whose content does
    not match is reported as damaged rather than guessed at.
    """
    path = Path(path)
    if path.is_dir():
        return "dmd2-folder"
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from e
    if not head:
        raise CheckpointError(f"{path}: empty file")
    # Safetensors first, by parsing its header: its first 8 bytes are a length, whose low byte can be
    # anything, 0x80 (the pickle PROTO opcode) or "PK" included.
    header = _safetensors_header(path, head, size)
    if header is True:
        return "safetensors"
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch"
    if head[0] == 0x80:  # pickle PROTO opcode
        return "edm-pickle"
    expected = _EXTENSIONS.get(path.suffix.lower())
    if expected == "safetensors" and header:
        raise CheckpointError(f"{path}: named like a .safetensors file, but its header is {header} (damaged?)")
    if expected:
        raise CheckpointError(f"{path}: named like {FORMAT_NAMES[expected]}, but its first bytes are not one "
                              "(damaged?)")
    raise CheckpointError(
        f"{path}: unrecognised checkpoint format; expected an EDM .pkl, a .safetensors file, "
        "a torch .pth/.bin or a DMD2 checkpoint_model_NNNNNN folder"
    )


def generator_file(path: str | Path) -> Path:
    """The generator's weights file for a file or a checkpoint_model_NNNNNN/ folder.

    DMD2 saves `checkpoint_model_NNNNNN/pytorch_model.bin` next to `pytorch_model_1.bin`, which holds
    the guidance networks and is never the generator: naming it is an error.
    """
    path = Path(path)
    if path.name == GUIDANCE_FILE:
        raise CheckpointError(guidance_message(path))
    if not path.is_dir():
        return path
    for name in GENERATOR_FILES:
        if (path / name).is_file():
            return path / name
    if (path / GUIDANCE_FILE).exists():
        raise CheckpointError(guidance_message(path / GUIDANCE_FILE) + f"; {path} has no {GENERATOR_FILES[0]}")
    found = sorted(p.name for p in path.iterdir())[:10]
    raise CheckpointError(
        f"{path}: a folder, not a checkpoint file, and there are no generator weights in this folder "
        f"(looked for {' or '.join(GENERATOR_FILES)}; "
        f"found {', '.join(found) or 'nothing'})"
    )


def guidance_message(path: Path) -> str:
    return (f"{path}: DMD2's {GUIDANCE_FILE} holds the guidance (real/fake score) networks, not the generator; "
            f"use {GENERATOR_FILES[0]} from the same folder")


def _safetensors_header(path: Path, head: bytes, size: int) -> bool | str | None:
    """True when the file starts with a valid safetensors header (a length, then that many bytes of a JSON
    object); None when it does not look like one at all; else what is wrong with the header it seems to have."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    length = int.from_bytes(head[:8], "little")
    if length < 2 or length > MAX_SAFETENSORS_HEADER or 8 + length > size:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(8)
            text = f.read(length)
        header = json.loads(text)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from e
    except RecursionError:
        return "JSON nested too deep"
    except (ValueError, UnicodeDecodeError):
        return "not valid JSON"
    return True if isinstance(header, dict) else "not a JSON object"
