"""What the app loads: an embeddings table and zero, one or two (or more) models, and how to load them.

`AppConfig` is plain data (the command line builds it; `demo_config()` builds the one used when
there are no arguments). `load(config)` turns it into an `AppState`: the validated table and the
loaded models, or a `UserError` naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from visualizer.errors import UserError


@dataclass(frozen=True)
class ModelSource:
    """One model to load; adapter None means "detect it from the file"."""

    key: str
    checkpoint: str
    adapter: str | None = None


@dataclass(frozen=True)
class AppConfig:
    embeddings: Path | None = None
    models: tuple[ModelSource, ...] = ()
    device: str | None = None
    precision: str | None = None         # U-Net precision on CUDA; default: each checkpoint's own
    compile: str = "off"                 # fast path on CUDA: off, graphs, full (models.acceleration)
    preset: str | None = None            # teacher sampler preset; default: the embeddings' run, else the adapter's
    num_steps: int | None = None         # teacher sampler steps; same defaults
    title: str = "Teacher vs student, layer by layer"
    note: str | None = None              # a line under the title (the demo says what it is)


@dataclass
class AppState:
    """Everything loaded: read-only once the server runs (no per-user state lives here)."""

    config: AppConfig
    embeddings: object | None            # visualizer.embeddings.schema.Embeddings
    slots: list = field(default_factory=list)   # visualizer.inspection.ModelSlot, in display order


def demo_config() -> AppConfig:
    """The configuration the app runs with no arguments: the shipped digits teacher and its DMD2 student.

    Both checkpoints are in the official formats (an EDM pickle read by the safe loader, a DMD2
    checkpoint folder), and the embeddings were made by `python -m visualizer embed`.
    """
    from visualizer.adapters.demo import DEMO_EMBEDDINGS, DEMO_STUDENT, DEMO_TEACHER

    return AppConfig(
        embeddings=DEMO_EMBEDDINGS,
        models=(ModelSource("teacher", str(DEMO_TEACHER), "edm-digits-32"),
                ModelSource("student", str(DEMO_STUDENT), "dmd2-digits-32")),
        title="Teacher vs student, layer by layer — demo",
        note="Demo: a small EDM teacher trained on coloured digits (32×32, 10 classes, Heun 18 steps) and its "
             "DMD2-distilled one-step student, shipped with the package. Start with --embeddings/--teacher/"
             "--student for the ImageNet-64 models.",
    )


def models_from_sidecar(embeddings) -> tuple[ModelSource, ...]:
    """The sidecar's models {key: {adapter, checkpoint}}: paths as written, else relative to the CSV's folder."""
    found = []
    for key, info in embeddings.models.items():
        checkpoint = info.get("checkpoint")
        if not checkpoint:
            continue
        path = Path(checkpoint)
        if not path.is_absolute() and not path.exists() and (embeddings.root / path).exists():
            path = embeddings.root / path
        found.append(ModelSource(key, str(path), info.get("adapter")))
    return tuple(found)


def _sample_kwargs(adapter, key: str, config: AppConfig, sidecar: dict) -> dict:
    """Teacher sampler settings: the command line, else what the embeddings were made with, else the adapter's."""
    if not adapter.multi_step:
        return {}
    recorded = (sidecar.get("sampler") or {}).get(key) or {}
    preset = config.preset or recorded.get("preset")
    num_steps = config.num_steps or recorded.get("num_steps")
    try:
        settings = adapter.sampler_settings(preset, num_steps=num_steps)
    except UserError as e:
        raise UserError(f"--preset/--num-steps for {key} ({adapter.name}): {e}") from None
    return {"preset": preset or adapter.default_preset, "num_steps": int(settings.num_steps)}


def load(config: AppConfig) -> AppState:
    """Reads the table and loads the models; every failure a user can cause is a UserError."""
    from visualizer.adapters import detect_adapter, get_adapter, known_presets
    from visualizer.embeddings.schema import load_embeddings
    from visualizer.inspection import ModelSlot
    from visualizer.models.device import pick_device

    if config.num_steps is not None and config.num_steps < 1:
        raise UserError(f"--num-steps must be at least 1, got {config.num_steps}")
    if config.preset is not None and config.preset not in known_presets():
        raise UserError(f"--preset {config.preset!r} is not a sampler preset; choose from {', '.join(known_presets())}")
    embeddings = load_embeddings(config.embeddings) if config.embeddings is not None else None
    sources = config.models or (models_from_sidecar(embeddings) if embeddings is not None else ())
    if embeddings is None and not sources:
        raise UserError("nothing to show: give --embeddings CSV and/or models (--teacher/--student, "
                        "or --adapter with --checkpoint_path)")
    try:
        device = pick_device(config.device)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--device: {e}") from None
    sidecar = embeddings.sidecar if embeddings is not None else {}
    slots = []
    for src in sources:
        path = Path(src.checkpoint)
        if not path.exists():
            raise UserError(f"{path}: no such checkpoint ({src.key})")
        name = src.adapter or detect_adapter(path)
        cls = get_adapter(name)
        try:
            adapter = cls.from_checkpoint(path, device=device, precision=config.precision,
                                         compile=config.compile)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read a user's file is that file's problem
            raise UserError(f"{path}: cannot be loaded with adapter {name!r} ({type(e).__name__}: {e})") from None
        slots.append(ModelSlot(src.key, adapter, _sample_kwargs(adapter, src.key, config, sidecar)))
    if len({s.adapter.num_classes for s in slots}) > 1:
        counts = {s.key: s.adapter.num_classes for s in slots}
        raise UserError(f"the models have different numbers of classes ({counts}); they cannot share a seed and class")
    return AppState(config=config, embeddings=embeddings, slots=slots)
