"""Opening a checkpoint once: where it is, what format it holds, which file has the weights, and its sha256.

`open_checkpoint` is the one place a checkpoint given by the user (a local path, or a URL downloaded
once into the cache) is resolved, has its format detected (the first bytes of one file) and, on
request, is hashed. Every loader takes the `OpenedCheckpoint` it returns, so nothing below
re-detects or re-locates the weights, and callers that record provenance read `sha256` from the same
object: the file is hashed at most once per opened checkpoint, and not at all by a load that does
not ask (hashing a 1.2 GB pickle takes seconds).

No torch here: `python -m visualizer download` and the embed planner can open and hash without it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from visualizer.checkpoints.download import is_url, known_url, resolve_checkpoint
from visualizer.checkpoints.files import file_sha256
from visualizer.checkpoints.formats import detect_format, generator_file
from visualizer.errors import CheckpointError

_HASH_LOCK = threading.Lock()  # two threads asking one checkpoint for its sha256 hash it once


@dataclass(frozen=True)
class OpenedCheckpoint:
    """A checkpoint that has been located and recognised; make one with `open_checkpoint`.

    path:           the checkpoint as the user named it (a file or a DMD2 checkpoint_model_NNNNNN/
                    folder), local: a URL is the downloaded file in the cache
    format:         'edm-pickle', 'safetensors', 'torch' or 'dmd2-folder' (see `detect_format`)
    weights_file:   the file holding the weights: `path`, or the generator file inside a DMD2 folder
    weights_format: the format of `weights_file` ('torch' or 'safetensors' inside a folder, else `format`)
    size:           bytes in `weights_file` when it was opened
    url:            the URL it was downloaded from, or None
    sha256:         hex sha256 of `weights_file`, computed on first use and kept (or known from the download)
    """

    path: Path
    format: str
    weights_file: Path
    weights_format: str
    size: int
    url: str | None = None
    _sha256: str | None = field(default=None, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        """The weights file's sha256 (what provenance records): hashed once, on first access."""
        if self._sha256 is None:
            with _HASH_LOCK:
                if self._sha256 is None:
                    object.__setattr__(self, "_sha256", _hash(self.weights_file))
        return self._sha256


def open_checkpoint(path_or_url: str | Path | OpenedCheckpoint) -> OpenedCheckpoint:
    """Locate, recognise and size a checkpoint once; an OpenedCheckpoint is returned as it is.

    A local path (`~` expanded) must exist: a missing one raises CheckpointError "<path>: no such
    file", an unreadable or unrecognised one the errors of `detect_format`, a DMD2 folder without a
    generator (or DMD2's guidance file `pytorch_model_1.bin` named directly) those of `generator_file`.
    An http(s) URL is downloaded once into the cache (`resolve_checkpoint`); for an official file
    whose sha256 is recorded the download is verified against it, and that hash is kept.
    """
    if isinstance(path_or_url, OpenedCheckpoint):
        return path_or_url
    url, known_sha256 = None, None
    if is_url(path_or_url):
        url = str(path_or_url)
        path = resolve_checkpoint(url)
        known = known_url(url)
        known_sha256 = known.sha256.lower() if known is not None and known.sha256 else None
    else:
        path = Path(path_or_url).expanduser()
    if path.is_dir():
        fmt = "dmd2-folder"
        weights = generator_file(path)
        weights_format = detect_format(weights)
    else:
        fmt = weights_format = detect_format(path)
        # An EDM pickle is read whatever its name; anything else follows the DMD2 naming rule.
        weights = path if fmt == "edm-pickle" else generator_file(path)
    try:
        size = weights.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{weights}: cannot be read ({e.strerror or e})") from e
    return OpenedCheckpoint(path, fmt, weights, weights_format, size, url, known_sha256)


def weights_path(checkpoint: str | Path | OpenedCheckpoint) -> str | Path:
    """The weights file of an opened checkpoint; a path is returned as given (for the readers' messages)."""
    return checkpoint.weights_file if isinstance(checkpoint, OpenedCheckpoint) else checkpoint


def _hash(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from e
