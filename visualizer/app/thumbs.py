"""The thumbnail route: `/thumbs/<path>` serves image files under the embeddings folder, and nothing else.

`thumb_url(image_path)` is the URL the scatter's tooltip and the selection's gallery show;
`add_thumbnail_route(server, root)` adds the Flask route (cache headers, ETag, 404 for anything
outside the folder or not an image).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from flask import Flask, abort, request, send_file

THUMBS_ROUTE = "/thumbs/"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
THUMB_MAX_AGE = 24 * 3600


def resolve_under(root: Path, relative: str) -> Path | None:
    """The image file `relative` names inside `root`, or None for anything else.

    Refused: empty names, absolute paths, drive letters, backslashes, NUL, '.'/'..' segments, and
    anything whose real path (symlinks followed) is outside the folder or is not an image file.
    """
    if not relative or any(ch in relative for ch in ("\\", "\x00")) or relative.startswith("/"):
        return None
    if len(relative) > 1 and relative[1] == ":":
        return None
    if any(part in ("", ".", "..") for part in relative.split("/")):
        return None
    base = root.resolve()
    try:
        candidate = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not candidate.is_relative_to(base) or not candidate.is_file() or candidate.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return candidate


def thumb_url(image_path: str) -> str:
    return THUMBS_ROUTE + urllib.parse.quote(str(image_path))


def add_thumbnail_route(server: Flask, root: Path | None) -> None:
    @server.before_request
    def no_fallthrough():
        # Dash answers every unmatched path with its page; under /thumbs/ anything unmatched
        # (e.g. '/thumbs//etc/passwd', which the path converter refuses) is a plain 404.
        if request.path.startswith(THUMBS_ROUTE) and request.endpoint != "thumbnail":
            abort(404)

    @server.route(THUMBS_ROUTE + "<path:relative>")
    def thumbnail(relative: str):
        path = resolve_under(root, relative) if root is not None else None
        if path is None:
            abort(404)
        return send_file(path, max_age=THUMB_MAX_AGE, conditional=True, etag=True)
