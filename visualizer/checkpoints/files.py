"""Plain file helpers shared by the readers, the writers and the downloader: atomic replace and sha256.

No torch here, so `python -m visualizer download` can use it without paying for torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HASH_CHUNK = 1 << 24


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


def file_sha256(path: str | Path, chunk_size: int = HASH_CHUNK) -> str:
    """The hex sha256 of a file's bytes, read in chunks (the one hash helper of the package)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()
