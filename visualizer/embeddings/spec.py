"""What the user asked for, parsed and checked before any model is loaded: models, seeds, classes, steps, pooling.

Every function here is pure and raises `UserError` with the offending option and value, so a typo
costs a second, not a checkpoint load.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visualizer.errors import UserError
from visualizer.models.layer_names import BOTTLENECK
from visualizer.trace.steps import select_steps

SEED_LIMIT = 2**32          # generators are seeded with seed % 2^32; larger seeds would alias smaller ones
MAX_FEATURES = 4096         # `--pool auto` flattens layers up to this size and average-pools larger ones below it
DEFAULT_LAYERS = (BOTTLENECK,)
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*")


@dataclass(frozen=True)
class ModelSpec:
    """One `--model KEY=ADAPTER:CHECKPOINT`; adapter None means "detect it from the file"."""

    key: str
    adapter: str | None
    checkpoint: str


def parse_model(text: str) -> ModelSpec:
    key, sep, rest = text.partition("=")
    adapter, colon, checkpoint = rest.partition(":")
    if not sep or not colon or not checkpoint or not adapter:
        raise UserError(f"--model {text!r}: expected KEY=ADAPTER:CHECKPOINT, e.g. teacher=edm-imagenet-64:edm.pkl")
    check_key(key, f"--model {text!r}")
    return ModelSpec(key, adapter, checkpoint)


def check_key(key: str, where: str) -> str:
    # Keys name folders and prefix sample ids (`<model>-<seed>-<step>`), so no '/', '-' or spaces.
    if not _KEY.fullmatch(key):
        raise UserError(f"{where}: model key {key!r} must be letters, digits, '_' or '.' (not starting with '.')")
    return key


def model_specs(models: Sequence[str] | None, teacher: str | None, student: str | None) -> list[ModelSpec]:
    specs = [ModelSpec(k, None, p) for k, p in (("teacher", teacher), ("student", student)) if p]
    specs += [parse_model(m) for m in models or ()]
    if not specs:
        raise UserError("no models: give --model KEY=ADAPTER:CHECKPOINT (repeatable) or --teacher/--student PATH")
    seen: set[str] = set()
    for spec in specs:
        if spec.key in seen:
            raise UserError(f"model key {spec.key!r} is given twice; keys must be unique")
        seen.add(spec.key)
    return specs


def parse_seeds(text: str) -> list[int]:
    """`0-999` (inclusive), `3,7,11` or a mix such as `0-9,100-109`; order is kept, duplicates refused."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise UserError(f"--seeds {text!r}: {part!r} is not a seed or a range like 0-999 (seeds are integers >= 0)")
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) is not None else start
        if stop < start:
            raise UserError(f"--seeds {text!r}: range {part!r} ends before it starts")
        if stop >= SEED_LIMIT:
            raise UserError(f"--seeds {text!r}: seeds must be below 2^32 = {SEED_LIMIT}")
        seeds.extend(range(start, stop + 1))
    return _unique(seeds, f"--seeds {text!r}")


def seeds_from_args(seeds: str | None, num_samples: int | None, seed_start: int | None) -> list[int]:
    if seeds is not None and (num_samples is not None or seed_start is not None):
        raise UserError("give either --seeds or --num-samples/--seed-start, not both")
    if seeds is not None:
        return parse_seeds(seeds)
    n = 1000 if num_samples is None else num_samples
    start = 0 if seed_start is None else seed_start
    if n < 1:
        raise UserError(f"--num-samples must be >= 1, got {n}")
    if start < 0 or start + n > SEED_LIMIT:
        raise UserError(f"--seed-start {start} with --num-samples {n}: seeds must lie in [0, 2^32)")
    return list(range(start, start + n))


def _unique(seeds: list[int], where: str) -> list[int]:
    if len(set(seeds)) != len(seeds):
        dup = next(s for i, s in enumerate(seeds) if s in seeds[:i])
        raise UserError(f"{where}: seed {dup} appears more than once")
    return seeds


def seed_ranges(seeds: Sequence[int]) -> list[list[int]]:
    """Compact, order-preserving form for run.json and the sidecar: [[first, last], ...] of consecutive runs."""
    out: list[list[int]] = []
    for s in seeds:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


@dataclass(frozen=True)
class ClassSpec:
    mode: str                         # 'balanced' | 'drawn' | 'list'
    values: tuple[int, ...] = ()

    def __str__(self) -> str:
        return ",".join(map(str, self.values)) if self.mode == "list" else self.mode

    def labels(self, num_seeds: int, num_classes: int) -> np.ndarray | None:
        """Class per seed position, or None for the generator's own draw.

        Positions, not seeds, pick the class, so the assignment does not depend on batching or ranks.
        """
        if self.mode == "drawn":
            return None
        if self.mode == "balanced":
            return np.arange(num_seeds, dtype=np.int64) % max(num_classes, 1)
        bad = [v for v in self.values if v >= max(num_classes, 1)]
        if bad:
            raise UserError(f"--classes {self}: class(es) {bad} out of range; the models have {num_classes} classes")
        return np.resize(np.asarray(self.values, dtype=np.int64), num_seeds)


def parse_classes(text: str) -> ClassSpec:
    text = text.strip()
    if text in ("balanced", "drawn"):
        return ClassSpec(text)
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--classes {text!r}: expected 'balanced', 'drawn' or class indices like 3,7") from None
    if any(v < 0 for v in values):
        raise UserError(f"--classes {text!r}: class indices must be >= 0")
    return ClassSpec("list", values)


def parse_names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"{option} {text!r}: no names given")
    if len(set(names)) != len(names):
        raise UserError(f"{option} {text!r}: a name appears more than once")
    return names


def parse_steps(text: str) -> tuple[str | int, ...]:
    """`first` (default), `last`, `all`, step indices, or a mix: `first,last`, `0,10,255`."""
    out: list[str | int] = []
    for part in (p.strip() for p in text.split(",")):
        if part in ("first", "last", "all"):
            out.append(part)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise UserError(f"--steps {text!r}: {part!r} is not 'first', 'last', 'all' or a step index >= 0")
    return tuple(dict.fromkeys(out))


def resolve_steps(tokens: Sequence[str | int], num_steps: int, model: str) -> list[int]:
    """Step indices for one model. A one-step model has only step 0, whatever was asked for the multi-step ones."""
    if num_steps <= 1:
        return [0]
    too_far = [t for t in tokens if isinstance(t, int) and t >= num_steps]
    if too_far:
        raise UserError(f"--steps: model {model!r} samples with {num_steps} steps (0..{num_steps - 1}); "
                        f"step {too_far[0]} does not exist")
    return select_steps(list(tokens), [0.0] * num_steps)


def parse_pool(text: str) -> str:
    """`auto` (default), `none`, `mean` or `avgK` (K x K average pooling, K a power of two)."""
    text = text.strip()
    if text in ("auto", "none", "mean"):
        return text
    m = re.fullmatch(r"avg(\d+)", text)
    if m and int(m.group(1)) >= 1 and int(m.group(1)) & (int(m.group(1)) - 1) == 0:
        return "none" if m.group(1) == "1" else text
    raise UserError(f"--pool {text!r}: expected auto, none, mean or avgK with K a power of two (avg2, avg4, ...)")


@dataclass
class EmbedConfig:
    """Everything the user chose; `out` and `progress` do not shape the results, the rest does."""

    models: list[ModelSpec]
    seeds: list[int]
    out: Path
    classes: ClassSpec = field(default_factory=lambda: ClassSpec("balanced"))
    layers: list[str] = field(default_factory=lambda: list(DEFAULT_LAYERS))
    steps: tuple[str | int, ...] = ("first",)
    preset: str | None = None
    num_steps: int | None = None
    batch_size: int = 64
    device: str | None = None
    precision: str | None = None       # None: each checkpoint's own (fp16 for the official EDM pickle)
    compile: str = "off"               # fast path on CUDA (off, graphs, full); a speed switch, not in the fingerprint
    pool: str = "auto"
    pca_dims: int = 50
    pca_fit_rows: int = 20000
    n_neighbors: int = 15
    min_dist: float = 0.1
    maps: str = "main"                 # main, or per-layer: also one map per layer and step (embeddings.maps)
    umap_backend: str = "auto"         # umap-learn, or RAPIDS cuML on the GPU when installed (reduce.umap_backend)
    random_state: int = 0
    progress: bool = True

    @classmethod
    def defaults(cls) -> dict:
        """Field -> default value: the one home of `embed`'s defaults, which its command line reads."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
