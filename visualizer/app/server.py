"""`create_app(state)`: the Dash app over what was loaded, plus the Flask route that serves thumbnails.

The server object holds only read-only things (the table, the models, the result cache keyed by
value, the job manager); whatever belongs to one browser tab lives in that tab's dcc.Store.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import dash
import numpy as np
import pandas as pd
from flask import Flask, abort, request, send_file

from visualizer.app.config import AppState
from visualizer.app.jobs import ThreadedJobManager
from visualizer.app.layout import LayoutInfo, build_layout
from visualizer.inspection import Inspector, LRUCache
from visualizer.trace.reductions import REDUCTIONS

THUMBS_ROUTE = "/thumbs/"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
THUMB_MAX_AGE = 24 * 3600
DEFAULT_LAYER_COUNT = 8


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


@dataclass
class AppContext:
    """What callbacks read: the table (row = position), the engine, and fixed facts about the models."""

    frame: pd.DataFrame | None
    root: Path | None
    inspector: Inspector
    model_order: list[str]
    classes: list[tuple[int, str]]
    default_layers: list[str]
    teacher: str | None               # the multi-step model whose trajectory runs in the background
    jobs: ThreadedJobManager | None = None

    def row(self, position) -> pd.Series | None:
        """The table row at `position` (a point's customdata, as the browser sent it), or None if there is none."""
        rows = self.valid_rows([position])
        return self.frame.iloc[rows[0]] if rows else None

    def valid_rows(self, positions) -> list[int]:
        """Sorted, unique row numbers among `positions` that exist in the table; anything else is dropped."""
        if self.frame is None:
            return []
        n = len(self.frame)
        return sorted({int(p) for p in positions if isinstance(p, int) and not isinstance(p, bool) and 0 <= p < n})

    def class_name(self, label: int) -> str:
        if not hasattr(self, "_names"):
            self._names = dict(self.classes)
        return self._names.get(int(label), str(label))


def default_layers(legacy: list[str], native: list[str], count: int = DEFAULT_LAYER_COUNT) -> list[str]:
    """A few layers spread over the network, first and bottleneck included; legacy names when there are any."""
    names = legacy or native
    if len(names) <= count:
        return list(names)
    picks = np.unique(np.linspace(0, len(names) - 1, count).round().astype(int))
    chosen = [names[i] for i in picks]
    if "encoder_bottleneck" in names and "encoder_bottleneck" not in chosen:
        chosen[len(chosen) // 2] = "encoder_bottleneck"
    return [n for n in names if n in chosen]


def _classes(state: AppState, frame: pd.DataFrame | None) -> list[tuple[int, str]]:
    names: dict[int, str] = {}
    if state.slots:
        names.update(enumerate(state.slots[0].adapter.class_names))
    if frame is not None:
        present = frame.drop_duplicates("class_label")[["class_label", "class_name"]]
        names.update(zip(present["class_label"].astype(int), present["class_name"], strict=True))
        if not state.slots:
            return sorted(names.items())
        # Classes in the table first (what the filter is for), then the rest the models know.
        shown = set(present["class_label"].astype(int))
        return sorted((c, n) for c, n in names.items() if c in shown) + \
            sorted((c, n) for c, n in names.items() if c not in shown)
    return sorted(names.items())


def build_context(state: AppState, cache: LRUCache | None = None) -> AppContext:
    frame = None
    root = None
    if state.embeddings is not None:
        frame = state.embeddings.frame.reset_index(drop=True)
        root = state.embeddings.root
    inspector = Inspector(state.slots, cache=cache)
    teacher = next((k for k in inspector.shown() if inspector.slots[k].multi_step), None)
    return AppContext(
        frame=frame, root=root, inspector=inspector,
        model_order=list(dict.fromkeys(frame["model"])) if frame is not None else [],
        classes=_classes(state, frame),
        default_layers=default_layers(inspector.legacy_layers(), inspector.native_layers()),
        teacher=teacher,
    )


def _models_line(ctx: AppContext) -> str:
    parts = []
    for key in ctx.inspector.shown():
        slot = ctx.inspector.slots[key]
        steps = slot.num_steps()
        sampler = f"{steps} step{'s' if steps != 1 else ''}"
        if "preset" in slot.sample_kwargs:
            sampler += f", preset {slot.sample_kwargs['preset']}"
        parts.append(f"{key}: {slot.adapter.name} ({slot.role}, {sampler}) from {slot.adapter.checkpoint} "
                     f"on {slot.adapter.device}")
    return " | ".join(parts) if parts else "no models loaded (browse only)"


def create_app(state: AppState, *, cache: LRUCache | None = None,
               manager: ThreadedJobManager | None = None) -> dash.Dash:
    """The app as a thin shell: layout from `layout`, behaviour from `callbacks`, work in `visualizer.inspection`."""
    from visualizer.app import callbacks

    ctx = build_context(state, cache)
    manager = manager or ThreadedJobManager()
    ctx.jobs = manager
    app = dash.Dash(__name__, title="visualizer", background_callback_manager=manager,
                    update_title=None, suppress_callback_exceptions=False)
    add_thumbnail_route(app.server, ctx.root)
    inspector = ctx.inspector
    info = LayoutInfo(
        title=state.config.title, note=state.config.note, models_line=_models_line(ctx),
        embedding_models=ctx.model_order, classes=ctx.classes, layers=inspector.layers(),
        default_layers=ctx.default_layers, reductions=list(REDUCTIONS), has_models=bool(inspector.slots),
        teacher=ctx.teacher, teacher_steps=inspector.slots[ctx.teacher].num_steps() if ctx.teacher else None,
        num_points=0 if ctx.frame is None else len(ctx.frame),
    )
    app.layout = build_layout(info)
    with manager.accepting():
        callbacks.register(app, ctx)
    app.visualizer = ctx   # for tests and scripts: the engine behind this app
    return app
