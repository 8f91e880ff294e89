"""Which kind of checkpoint a path holds, and turning (settings, weights) into a network without a copy.

Every format ends in `build_network`: the network is built on the meta device (no memory, no
random init), compared key by key with the weights, and then takes the loaded tensors as its own
(`assign=True`), so loading never holds two copies of a 1.2 GB network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from visualizer.errors import CheckpointError
from visualizer.models import EDMPrecond

FORMATS = ("edm-pickle", "safetensors", "torch", "dmd2-folder")

# A legacy (non-zip) torch.save starts with a protocol-2 pickle of torch's magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ZIP_MAGIC = b"PK\x03\x04"
_EXTENSIONS = {
    ".pkl": "edm-pickle", ".pickle": "edm-pickle", ".safetensors": "safetensors",
    ".pt": "torch", ".pth": "torch", ".bin": "torch", ".ckpt": "torch",
}
_LIST_CAP = 8


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
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch"
    if head[0] == 0x80:  # pickle PROTO opcode
        return "edm-pickle"
    if len(head) >= 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    expected = _EXTENSIONS.get(path.suffix.lower())
    if expected:
        raise CheckpointError(f"{path}: named like a {expected} file, but its first bytes are not (damaged?)")
    raise CheckpointError(
        f"{path}: unrecognised checkpoint format; expected an EDM .pkl, a .safetensors file, "
        "a torch .pth/.bin or a DMD2 checkpoint_model_NNNNNN folder"
    )


def load_network(path: str | Path, device: str | torch.device = "cpu") -> EDMPrecond:
    """Any supported checkpoint as an EDMPrecond in eval mode, on `device`."""
    # Imported here: those modules import this one for build_network.
    from visualizer.checkpoints.dmd2 import load_dmd2_generator
    from visualizer.checkpoints.edm_pickle import load_edm_pickle
    from visualizer.checkpoints.safetensors_io import load_network_safetensors

    fmt = detect_format(path)
    if fmt == "edm-pickle":
        net = load_edm_pickle(path)
    elif fmt == "safetensors":
        net = load_network_safetensors(path)
    else:
        net = load_dmd2_generator(path)
    return net.to(device).eval()


def build_network(kwargs: Mapping, state_dict: Mapping[str, torch.Tensor], source: str | Path) -> EDMPrecond:
    """EDMPrecond(**kwargs) holding exactly `state_dict` (its tensors, not copies), in eval mode.

    Raises CheckpointError naming `source` when the settings cannot build a network or when the
    weights do not fit it (missing, unexpected, mis-shaped or non-float entries, listed).
    """
    kwargs = dict(kwargs)
    _check_plausible(kwargs, len(state_dict), source)
    try:
        with torch.device("meta"):
            net = EDMPrecond(**kwargs)
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{source}: cannot build the network from its settings {_summary(kwargs)}: {e}") from e
    problems = state_dict_problems(net.state_dict(), state_dict)
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not fit the network {_summary(kwargs)}: " + "; ".join(problems)
        )
    try:
        net.load_state_dict(state_dict, strict=True, assign=True)
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{source}: the weights do not load: {_first_line(e)}") from e
    # Non-persistent buffers are not in any file; a network that had some would be left on meta.
    left = [name for name, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta and name not in state_dict]
    if left:
        raise CheckpointError(f"{source}: no weights for {_capped(left)}")
    return net.eval()


def state_dict_problems(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between the network's state dict and a file's; empty when they fit."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [
        f"{k} {tuple(found[k].shape)} in the file vs {tuple(v.shape)} in the network"
        for k, v in expected.items() if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    not_float = [f"{k} ({found[k].dtype})" for k in expected if k in found and not found[k].is_floating_point()]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped),
                         ("not floating point", not_float)):
        if items:
            problems.append(f"{len(items)} {label}: {_capped(items)}")
    return problems


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_plausible(kwargs: dict, entries: int, source: str | Path) -> None:
    """Refuse settings that would take long to build before comparing them with the weights."""
    mult, blocks = kwargs.get("channel_mult", (1, 2, 3, 4)), kwargs.get("num_blocks", 3)
    if not isinstance(mult, (list, tuple)) or not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
        raise CheckpointError(f"{source}: malformed settings channel_mult={mult!r} num_blocks={blocks!r}")
    if len(mult) * (blocks + 1) > entries:
        raise CheckpointError(
            f"{source}: its settings ask for {len(mult)} levels of {blocks} blocks, "
            f"more than its {entries} weight entries could describe"
        )


def _summary(kwargs: Mapping) -> str:
    keys = ("img_resolution", "label_dim", "model_channels", "channel_mult", "num_blocks", "attn_resolutions")
    return "(" + ", ".join(f"{k}={kwargs[k]!r}" for k in keys if k in kwargs) + ")"


def _capped(items: list[str], cap: int = _LIST_CAP) -> str:
    shown = ", ".join(items[:cap])
    return shown + (f", ... and {len(items) - cap} more" if len(items) > cap else "")


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[:limit] + "..."
