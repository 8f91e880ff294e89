"""What every feature reads: `AppContext` (the server side) and `LayoutInfo` (what the page shows).

`build_context(state)` turns a loaded `AppState` into the context the callbacks take as their first
argument: the table (row = position), the inspection engine, and fixed facts about the models. It
holds only read-only things; whatever belongs to one browser tab lives in that tab's dcc.Store.
`layout_info(state, ctx)` reduces it to the plain values the features' `layout(info)` need.
`bind(fn, ctx)` is how a feature's `register` turns a module-level callback into what Dash calls.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dash
import numpy as np
import pandas as pd

from visualizer.app.config import AppState
from visualizer.app.jobs import ThreadedJobManager
from visualizer.inspection import Inspector, LRUCache
from visualizer.inspection.maps import RunMaps
from visualizer.inspection.neighbours import NeighbourIndex
from visualizer.trace.reductions import REDUCTIONS

DEFAULT_LAYER_COUNT = 8
EXACT_LIMIT = 50_000      # visible points the scatter draws as markers; above it, an overview image (issue 21)


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
    neighbours: NeighbourIndex | None = None   # the run's PCA space, loaded on first use (issue 17's gallery)
    maps: RunMaps | None = None       # the run's maps (main, per-layer) and trajectory placement (issue 19)
    exact_limit: int = EXACT_LIMIT    # more visible points in view than this: the overview image (issue 21)

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


def build_context(state: AppState, cache: LRUCache | None = None, jobs: ThreadedJobManager | None = None) -> AppContext:
    frame = None
    root = None
    if state.embeddings is not None:
        frame = state.embeddings.frame.reset_index(drop=True)
        root = state.embeddings.root
    inspector = Inspector(state.slots, cache=cache)
    teacher = next((k for k in inspector.shown() if inspector.slots[k].multi_step), None)
    maps = RunMaps.of(state.embeddings) if state.embeddings is not None else None
    if maps is not None:
        inspector.map_pools = maps.pools()     # the teacher's runs record the run's layers, to place them on maps
    return AppContext(
        frame=frame, root=root, inspector=inspector,
        model_order=list(dict.fromkeys(frame["model"])) if frame is not None else [],
        classes=_classes(state, frame),
        default_layers=default_layers(inspector.legacy_layers(), inspector.native_layers()),
        teacher=teacher, jobs=jobs, neighbours=NeighbourIndex(frame, root), maps=maps,
    )


def bind(fn: Callable, c: AppContext, *, triggered: bool = False) -> Callable:
    """`fn(c, *inputs)` as Dash calls it, `(*inputs)`; with `triggered`, `fn(c, triggered_id, *inputs)`."""
    if triggered:
        @functools.wraps(fn)
        def callback(*inputs):
            return fn(c, dash.ctx.triggered_id, *inputs)
    else:
        @functools.wraps(fn)
        def callback(*inputs):
            return fn(c, *inputs)
    return callback


# -- what the page shows -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LayoutInfo:
    """What the page needs to know about what was loaded; plain values only."""

    title: str
    note: str | None
    models_line: str
    embedding_models: Sequence[str]
    classes: Sequence[tuple[int, str]]
    layers: Sequence[str]
    default_layers: Sequence[str]
    reductions: Sequence[str]
    has_models: bool
    teacher: str | None
    teacher_steps: int | None
    num_points: int
    notes: Sequence[str] = ()      # AppState.notes: provenance unknown, mismatches allowed, a teacher file as student
    models: Sequence[str] = ()     # the loaded models' keys, in display order (the compared pair first)
    maps: Sequence[tuple[str, str]] = ()   # (id, name) of each map the run holds, the main one first
    probe_map: bool = False        # the run holds a probe map (`embed --probe`): the class-collapse box (issue 16)


def models_line(ctx: AppContext) -> str:
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


def layout_info(state: AppState, ctx: AppContext) -> LayoutInfo:
    inspector = ctx.inspector
    return LayoutInfo(
        title=state.config.title, note=state.config.note, models_line=models_line(ctx),
        embedding_models=ctx.model_order, classes=ctx.classes, layers=inspector.layers(),
        default_layers=ctx.default_layers, reductions=list(REDUCTIONS), has_models=bool(inspector.slots),
        teacher=ctx.teacher, teacher_steps=inspector.slots[ctx.teacher].num_steps() if ctx.teacher else None,
        num_points=0 if ctx.frame is None else len(ctx.frame), notes=tuple(state.notes),
        models=tuple(inspector.shown()),
        maps=tuple((m.id, m.name) for m in ctx.maps.maps.values()) if ctx.maps is not None else (),
        probe_map=ctx.maps is not None and any(m.is_probe for m in ctx.maps.maps.values()),
    )
