"""Edits as a page or a notebook states them: plain, hashable, checked values that the engine turns into
`visualizer.trace.Edit`s for one model of a click.

    EditSpec(model="student", layer="enc.8x8_block2", op="replace", source="other")   # teacher into student
    EditSpec(model="student", layer="midblock", op="zero", channels=(3, 7), region=(0, 0, 4, 4))
    EditSpec(model="teacher", layer="dec.16x16_block1", op="scale", factor=0.5, sigma=(0.0, 1.0))
    EditSpec(model="student", layer="enc.8x8_block2", op="add", factor=2.0, source="classes:1-207")

`source` says where a replacement or direction comes from: 'other' (the other model of the pair at the
same seed: teacher into student at the shared first input, student into teacher at its first step),
'seed:N' (this model at another seed, same class), 'seeds:A,B,...' (their mean), 'samples:S@C,...'
(the mean over samples each at its own seed S and class C: a point's nearest neighbours on the map,
re-traced at full resolution), or for `add`, 'classes:A-B' (mean activation of class A minus class B
over `MEAN_SEEDS` seeds). A spec is part of the cache key, so an edited click is cached like any other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from visualizer.errors import UserError
from visualizer.trace import Edit, SigmaRange

OPS = ("zero", "mean", "scale", "add", "replace")
MEAN_SEEDS = 16          # seeds per class for a class-mean direction
MAX_SEEDS = 64           # seeds a 'seeds:' source may list
_SOURCE = re.compile(r"^(other|seed:\d{1,10}|seeds:\d{1,10}(,\d{1,10}){0,63}|"
                     r"samples:\d{1,10}@\d{1,6}(,\d{1,10}@\d{1,6}){0,63}|classes:\d{1,6}-\d{1,6})$")


@dataclass(frozen=True)
class EditSpec:
    model: str                                          # the model key the edit applies to
    layer: str
    op: str                                             # one of OPS
    channels: tuple[int, ...] | None = None             # None: every channel
    region: tuple[int, int, int, int] | None = None     # rows r0:r1, columns c0:c1 of the layer's grid
    sigma: tuple[float, float] | None = None            # apply where low <= sigma <= high; None: every step
    factor: float = 1.0                                 # scale factor, or the direction's multiple for 'add'
    source: str | None = None                           # replace/mean/add: where the values come from

    def __post_init__(self):
        if self.op not in OPS:
            raise UserError(f"edit: op {self.op!r} is not one of {', '.join(OPS)}")
        if self.op in ("replace", "add") and self.source is None:
            raise UserError(f"edit: {self.op} needs a source (other, seed:N, seeds:A,B or classes:A-B)")
        if self.source is not None and not _SOURCE.match(self.source):
            raise UserError(f"edit: source {self.source!r} is not 'other', 'seed:N', 'seeds:A,B,...', "
                            "'samples:S@C,...' or 'classes:A-B'")
        if self.source and self.source.startswith("classes:") and self.op != "add":
            raise UserError("edit: a classes:A-B source is a direction; use it with op 'add'")
        if self.op == "mean" and not (self.source and self.source.startswith(("seeds:", "samples:"))):
            raise UserError("edit: mean-ablation needs source 'seeds:A,B,...' or 'samples:S@C,...' (what to average)")
        if self.region is not None and not (len(self.region) == 4 and self.region[0] < self.region[2]
                                            and self.region[1] < self.region[3] and min(self.region) >= 0):
            raise UserError(f"edit: region {self.region} must be (r0, c0, r1, c1) with r0 < r1 and c0 < c1")
        if self.sigma is not None and not (len(self.sigma) == 2 and 0 <= self.sigma[0] <= self.sigma[1]):
            raise UserError(f"edit: sigma range {self.sigma} must be (low, high) with 0 <= low <= high")
        if not -1e6 < self.factor < 1e6:
            raise UserError(f"edit: factor {self.factor} is out of range")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EditSpec:
        """From JSON-like data (a browser, a URL): every field checked and converted, unknown fields refused."""
        if not isinstance(data, Mapping):
            raise UserError(f"edit: expected an object, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"edit: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        try:
            sigma = data.get("sigma")
            return cls(model=str(data["model"]), layer=str(data["layer"]), op=str(data["op"]),
                       channels=_ints(data.get("channels")), region=_ints(data.get("region"), 4),
                       sigma=None if sigma is None else (_number(sigma[0]), _number(sigma[1])),
                       factor=_number(data.get("factor", 1.0)),
                       source=None if data.get("source") is None else str(data["source"]))
        except KeyError as e:
            raise UserError(f"edit: missing field {e}") from None
        except (TypeError, ValueError, IndexError) as e:
            raise UserError(f"edit: malformed value ({e})") from None

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def label(self) -> str:
        """A short human line: 'student enc.8x8_block2: replace from other, channels 3,7'."""
        parts = [f"{self.model} {self.layer}: {self.op}"]
        if self.op in ("scale", "add"):
            parts[0] += f" x{self.factor:g}"
        if self.source and self.source.startswith("samples:"):
            pairs = samples_of(self.source)
            shown = ", ".join(f"{seed}@{label}" for seed, label in pairs[:4]) + (", ..." if len(pairs) > 4 else "")
            parts.append(f"from the mean over {len(pairs)} samples (seed@class {shown})")
        elif self.source:
            parts.append(f"from {self.source}")
        if self.channels is not None:
            parts.append("channels " + ",".join(map(str, self.channels)))
        if self.region is not None:
            r0, c0, r1, c1 = self.region
            parts.append(f"rows {r0}-{r1}, cols {c0}-{c1}")
        if self.sigma is not None:
            parts.append(f"sigma {self.sigma[0]:g}-{self.sigma[1]:g}")
        return ", ".join(parts)


def _ints(value: Any, n: int | None = None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise ValueError(f"expected a list of whole numbers, got {value!r:.60}")
    if (n is not None and len(value) != n) or len(value) > 4096:
        raise ValueError(f"expected {n or 'at most 4096'} numbers, got {len(value)}")
    return tuple(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r:.60}")
    return float(value)


def region_mask(region: tuple[int, int, int, int], h: int, w: int):
    import torch

    r0, c0, r1, c1 = region
    if r1 > h or c1 > w:
        raise UserError(f"edit: region {region} lies outside the layer's {h}x{w} grid")
    mask = torch.zeros(h, w)
    mask[r0:r1, c0:c1] = 1
    return mask


def where(spec: EditSpec, shape: tuple[int, ...]) -> dict:
    """The channels / region / steps arguments of a trace Edit for a layer of per-sample `shape` (C, H, W)."""
    _, h, w = shape
    return {"channels": spec.channels,
            "region": None if spec.region is None else region_mask(spec.region, h, w),
            "steps": "all" if spec.sigma is None else SigmaRange(*spec.sigma)}


def seeds_of(source: str) -> list[int]:
    kind, _, rest = source.partition(":")
    if kind == "samples":
        return [seed for seed, _ in samples_of(source)]
    return [int(s) for s in rest.split(",")] if kind in ("seed", "seeds") else []


def samples_of(source: str) -> list[tuple[int, int]]:
    """The (seed, class) pairs of a 'samples:S@C,...' source (none for any other)."""
    kind, _, rest = source.partition(":")
    if kind != "samples":
        return []
    return [(int(seed), int(label)) for seed, _, label in (part.partition("@") for part in rest.split(","))]


def samples_source(samples) -> str:
    """'samples:S@C,...' for (seed, class) pairs, each once, in order (a UserError for none or too many)."""
    pairs = list(dict.fromkeys((int(s), int(c)) for s, c in samples))
    if not pairs:
        raise UserError("edit: no samples to average")
    if len(pairs) > MAX_SEEDS:
        raise UserError(f"edit: at most {MAX_SEEDS} samples to average, got {len(pairs)}")
    return "samples:" + ",".join(f"{s}@{c}" for s, c in pairs)


def to_trace_edit(spec: EditSpec, shape: tuple[int, ...], value=None) -> Edit:
    """The trace Edit for `spec`, with `value` the replacement, mean or direction already computed."""
    kw = where(spec, shape)
    if spec.op == "zero":
        return Edit.zero(spec.layer, **kw)
    if spec.op == "scale":
        return Edit.scale(spec.layer, spec.factor, **kw)
    if spec.op == "mean":
        return Edit.mean_ablate(spec.layer, value, **kw)
    if spec.op == "add":
        return Edit.add(spec.layer, value, alpha=spec.factor, **kw)
    return Edit.replace(spec.layer, value, **kw)
