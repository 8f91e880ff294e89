"""The embeddings sidecar (`embeddings.json`) as a schema: every field typed and bounded, checked with pydantic.

A sidecar is read from a file the user hands the app, so before any of it is used it must be UTF-8,
at most `MAX_SIDECAR_BYTES`, JSON nested at most `MAX_JSON_DEPTH` deep, and fit `Sidecar` below.
Unknown keys are kept (newer writers may add some) but are still bounded by size and depth; known keys
must have their type and range. Sidecars written before a field existed (no `architecture`, no
`sha256`, no `maps`) still load: every field but `schema_version`, `models` and `layers` is optional.

`validate_sidecar(data, path)` returns the data unchanged or raises `UserError` with one line that
names the file, the field (`models.teacher.checkpoint`) and the problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from visualizer.errors import UserError

SCHEMA_VERSION = 1
MAX_SIDECAR_BYTES = 16 << 20
MAX_JSON_DEPTH = 32
MAX_NUM_STEPS = 1024          # sampler steps (4x the FID preset's 256); also the largest `step` in the CSV
MAX_CLASSES = 100_000
MAX_RESOLUTION = 4096
MAX_CHANNELS = 64
MAX_MODELS = 64
MAX_LAYERS = 4096
MAX_MAPS = 4096               # per-layer and per-step maps (`embed --maps per-layer`)
MAX_REAL = 1_000_000          # real images on a probe map (`embed --probe --real`)
SEED_LIMIT = 2**32            # the reference sampler seeds one generator per image with seed % 2^32
REQUIRED_KEYS = ("schema_version", "models", "layers")

Text = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00]*$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.]*$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
NumSteps = Annotated[int, Field(ge=1, le=MAX_NUM_STEPS)]
Step = Annotated[int, Field(ge=0, lt=MAX_NUM_STEPS)]
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]
Count = Annotated[int, Field(ge=0, le=2**40)]
Real = Annotated[float, Field(allow_inf_nan=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Architecture(_Strict):
    """What the checkpoint's network is: image size, image channels, number of classes (0: unconditional)."""

    resolution: Annotated[int, Field(ge=1, le=MAX_RESOLUTION)]
    channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
    num_classes: Annotated[int, Field(ge=0, le=MAX_CLASSES)]


class ModelEntry(_Strict):
    adapter: Name
    checkpoint: Text | None = None
    sha256: Sha256 | None = None
    role: Name | None = None
    resolution: Annotated[int, Field(ge=1, le=MAX_RESOLUTION)] | None = None
    num_steps: NumSteps | None = None
    steps: Annotated[list[Step], Field(max_length=MAX_NUM_STEPS)] | None = None
    architecture: Architecture | None = None


class SamplerEntry(_Strict):
    num_steps: NumSteps | None = None
    preset: Name | None = None
    sigma_min: Real | None = None
    sigma_max: Real | None = None
    rho: Real | None = None
    S_churn: Real | None = None
    S_min: Real | None = None
    S_max: Real | None = None
    S_noise: Real | None = None


class Seeds(_Strict):
    count: Count
    ranges: Annotated[list[Annotated[list[Seed], Field(min_length=2, max_length=2)]], Field(max_length=1_000_000)]


class Classes(_Strict):
    mode: Name | None = None
    num_classes: Annotated[int, Field(ge=0, le=MAX_CLASSES)]


class Steps(_Strict):
    requested: Annotated[list[Name], Field(max_length=MAX_NUM_STEPS)] | None = None
    by_model: dict[Key, Annotated[list[Step], Field(max_length=MAX_NUM_STEPS)]] | None = None


RunFile = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")]


class ProbeEntry(_Strict):
    """What a probe map embeds (`embed --probe`, `visualizer.metrics.probe_map`): the probe and its features,
    float16 [table rows, dims] in `features` (NaN on the rows the map does not hold)."""

    spec: Name
    describe: Text
    features: RunFile
    dims: Annotated[int, Field(ge=1, le=1 << 20)]


class RealPoints(_Strict):
    """Real images on a probe map: positions [count, 2] in `file`, classes [count] in `labels`, probe features
    [count, dims] in `features`, one PNG each at `thumbnails` with {index} filled in."""

    file: RunFile
    labels: RunFile
    features: RunFile
    thumbnails: Annotated[str, StringConstraints(min_length=1, max_length=512,
                                                 pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*\{index\}\.png$")]
    count: Annotated[int, Field(ge=1, le=MAX_REAL)]
    source: Text | None = None


class MapEntry(_Strict):
    """One extra map (`visualizer.embeddings.maps`): its coordinates live in `file`. A per-layer map names its
    layers; a probe map (`probe` set) embeds final images and names none, and may carry real images."""

    id: Key
    name: Name
    layers: Annotated[list[Name], Field(max_length=MAX_LAYERS)]
    steps: Annotated[list[Step], Field(max_length=MAX_NUM_STEPS)] | None = None
    rows: Count
    file: RunFile
    about: Text | None = None
    probe: ProbeEntry | None = None
    real: RealPoints | None = None

    @model_validator(mode="after")
    def _layers_or_probe(self) -> MapEntry:
        if not self.layers and self.probe is None:
            raise ValueError("a map names at least one layer, or is a probe map")
        if self.real is not None and self.probe is None:
            raise ValueError("real images appear on probe maps only")
        return self


class Sidecar(_Strict):
    schema_version: int
    models: Annotated[dict[Key, ModelEntry], Field(max_length=MAX_MODELS)]
    layers: Annotated[list[Name], Field(max_length=MAX_LAYERS)]
    steps: Steps | None = None
    seeds: Seeds | None = None
    classes: Classes | None = None
    sampler: Annotated[dict[Key, SamplerEntry], Field(max_length=MAX_MODELS)] | None = None
    activations: dict[str, Any] | None = None
    thumbnails: Text | None = None
    reduction: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    versions: dict[Name, Text | None] | None = None
    created: Text | None = None
    maps: Annotated[list[MapEntry], Field(max_length=MAX_MAPS)] | None = None    # `embed --maps per-layer`


def read_json_file(path: Path, what: str, max_bytes: int = MAX_SIDECAR_BYTES) -> Any:
    """A small JSON file from the user: a file (not a folder), at most `max_bytes`, UTF-8, nested at most
    `MAX_JSON_DEPTH` deep; any other problem is a UserError naming the file."""
    if path.is_dir():
        raise UserError(f"{path}: a folder, not {what}")
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise UserError(f"{path}: larger than {max_bytes >> 20} MiB; not {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); not {what}") from None
    if "\x00" in text:
        raise UserError(f"{path}: holds a NUL byte; not {what}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} deep") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise UserError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} deep")
    return data


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            break
    return deepest


def validate_sidecar(data: Any, path: Path) -> dict:
    """`data` (parsed JSON) checked against `Sidecar`; returned as it is, or a one-line UserError."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object at the top level")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)}")
    if data["schema_version"] != SCHEMA_VERSION or type(data["schema_version"]) is not int:
        raise UserError(f"{path}, field 'schema_version': unsupported version {_short(data['schema_version'])}")
    try:
        Sidecar.model_validate(data)
    except ValidationError as e:
        raise UserError(f"{path}, {_first_error(e)}") from None
    return data


def _first_error(e: ValidationError) -> str:
    errors = e.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"field '{_clip(field, 120)}': {first['msg'].rstrip('.')}, got {_short(first.get('input'))}{more}"


def _short(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dict, list)):
        kind = "an object" if isinstance(value, dict) else "a list"
        return f"{kind} ({_clip(json.dumps(value, default=str), 60)})"
    return _clip(repr(value), 60)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
