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
    allow_mismatch: bool = False         # load checkpoints that did not make the embeddings, with a note
    progress: bool = False               # progress of a large table's loading on stderr (the command line)


@dataclass
class AppState:
    """Everything loaded: read-only once the server runs (no per-user state lives here)."""

    config: AppConfig
    embeddings: object | None            # visualizer.embeddings.schema.Embeddings
    slots: list = field(default_factory=list)   # visualizer.inspection.ModelSlot, in display order
    notes: list[str] = field(default_factory=list)   # what the page says under the title (provenance, mismatches)

    def startup_lines(self) -> list[str]:
        """One line per loaded model (adapter, architecture, checkpoint), then the notes: what start-up prints."""
        from visualizer.adapters.base import describe_architecture

        lines = [f"{s.key}: {s.adapter.name} ({s.adapter.role}), {describe_architecture(s.adapter.architecture)}, "
                 f"from {s.adapter.checkpoint}" for s in self.slots]
        return lines + [f"note: {n}" for n in self.notes]


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
    if recorded.get("preset") and recorded["preset"] not in adapter.presets:
        recorded = {}   # made by another adapter (a mismatch allowed): its settings do not apply to this one
    preset = config.preset or recorded.get("preset")
    num_steps = config.num_steps or recorded.get("num_steps")
    try:
        settings = adapter.sampler_settings(preset, num_steps=num_steps)
    except UserError as e:
        raise UserError(f"--preset/--num-steps for {key} ({adapter.name}): {e}") from None
    return {"preset": preset or adapter.default_preset, "num_steps": int(settings.num_steps)}


def load(config: AppConfig) -> AppState:
    """Reads the table and loads the models; every failure a user can cause is a UserError.

    Checked at load: the embeddings (visualizer.embeddings.schema), each checkpoint against its adapter
    (an adapter's fixed facts against the file's architecture), each checkpoint against the embeddings'
    sidecar (the same sha256, the same role, the same architecture: refused unless `allow_mismatch`,
    which turns each problem into a note), and every class index of the table against the models'
    classes. The page shows `AppState.notes`: a CSV without a sidecar, an EDM pickle run as a student,
    allowed mismatches.
    """
    from visualizer.adapters import detect_adapter, get_adapter, known_presets
    from visualizer.embeddings.schema import load_embeddings
    from visualizer.embeddings.sidecar import MAX_NUM_STEPS
    from visualizer.inspection import ModelSlot
    from visualizer.models.device import pick_device

    if config.num_steps is not None and not 1 <= config.num_steps <= MAX_NUM_STEPS:
        raise UserError(f"--num-steps must be between 1 and {MAX_NUM_STEPS}, got {config.num_steps}")
    if config.preset is not None and config.preset not in known_presets():
        raise UserError(f"--preset {config.preset!r} is not a sampler preset; choose from {', '.join(known_presets())}")
    embeddings = load_embeddings(config.embeddings, progress=config.progress) if config.embeddings is not None \
        else None
    notes: list[str] = []
    if embeddings is not None and not embeddings.sidecar:
        notes.append(f"{embeddings.csv_path.name} has no sidecar ({embeddings.csv_path.with_suffix('.json').name}): "
                     "its provenance is unknown (which checkpoints, sampler and layers made these points), so "
                     "regenerated samples cannot be checked against it")
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
        adapter, opened = _load_model(src, config, device, detect_adapter, get_adapter)
        notes += _role_notes(src.key, adapter, opened)
        problems, remarks = _provenance(src.key, adapter, opened, embeddings)
        if problems and not config.allow_mismatch:
            raise UserError(f"{problems[0]}; pass --allow-mismatch to show them anyway")
        notes += [f"mismatch allowed: {p}" for p in problems] + remarks
        slots.append(ModelSlot(src.key, adapter, _sample_kwargs(adapter, src.key, config, sidecar)))
    if len({s.adapter.num_classes for s in slots}) > 1:
        counts = {s.key: s.adapter.num_classes for s in slots}
        raise UserError(f"the models have different numbers of classes ({counts}); they cannot share a seed and class")
    if embeddings is not None:
        _check_classes(embeddings, slots)
    return AppState(config=config, embeddings=embeddings, slots=slots, notes=notes)


def _load_model(src: ModelSource, config: AppConfig, device, detect_adapter, get_adapter):
    """(adapter, opened checkpoint) for one source; a detected adapter reuses the network it was detected from."""
    from visualizer.checkpoints.loading import load_network
    from visualizer.checkpoints.opener import open_checkpoint

    path = Path(src.checkpoint)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint ({src.key})")
    name = src.adapter
    try:
        opened = open_checkpoint(path)
        if name is None:
            net = load_network(opened)
            name = detect_adapter(opened, network=net)
            adapter = get_adapter(name)(net, device=device, checkpoint=path, precision=config.precision,
                                        compile=config.compile)
        else:
            adapter = get_adapter(name).from_checkpoint(path, device=device, precision=config.precision,
                                                        compile=config.compile)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read a user's file is that file's problem
        raise UserError(f"{path}: cannot be loaded with adapter {name!r} ({type(e).__name__}: {e})") from None
    return adapter, opened


def _role_notes(key: str, adapter, opened) -> list[str]:
    """A teacher's file run by a student adapter (or the reverse) loads, with a note saying so."""
    from visualizer.checkpoints.loading import is_teacher_format

    teacher_file = is_teacher_format(opened)
    if adapter.role == "student" and teacher_file:
        return [f"{key}: {opened.path.name} is an EDM (teacher) checkpoint run by the student adapter "
                f"{adapter.name}: a one-step generation from the teacher's weights (an undistilled initialisation)"]
    if adapter.role == "teacher" and not teacher_file:
        return [f"{key}: {opened.path.name} is a DMD2 (student) checkpoint run by the teacher adapter {adapter.name}, "
                "with the teacher's multi-step sampler"]
    return []


def _provenance(key: str, adapter, opened, embeddings) -> tuple[list[str], list[str]]:
    """(problems, remarks) of a loaded checkpoint against what the embeddings' sidecar records.

    A problem: not the checkpoint that made the points of `key` (another sha256 or architecture), or
    the checkpoint of another model there (another role). A remark: the same checkpoint under another
    adapter. A sidecar that records nothing about a model compares nothing.
    """
    from visualizer.adapters.base import describe_architecture

    models = embeddings.models if embeddings is not None else {}
    if not models:
        return [], []
    csv = embeddings.csv_path.name
    file = opened.path.name
    any_hash = any(m.get("sha256") for m in models.values())
    digest = opened.sha256 if any_hash else None
    same = [k for k, m in models.items() if digest and m.get("sha256") == digest]
    recorded = models.get(key)
    loaded = f"{file} ({adapter.name}, {describe_architecture(adapter.architecture)})"
    if recorded is None:
        if same:
            other = models[same[0]]
            return [f"{key}: {loaded} made the {same[0]!r} points of {csv} (as the {other.get('role', '?')}); "
                    f"here it is loaded as {key!r} ({adapter.role})"], []
        return [], []
    problems, remarks = [], []
    made_by = f"the checkpoint that made the {key!r} points of {csv}"
    if digest and recorded.get("sha256") and recorded["sha256"] != digest:
        if same:
            problems.append(f"{key}: {loaded} is not {made_by} ({recorded.get('checkpoint', '?')}); it made the "
                            f"{same[0]!r} points there, as the {models[same[0]].get('role', '?')}")
        else:
            problems.append(f"{key}: {loaded} (sha256 {digest[:12]}...) is not {made_by} "
                            f"({recorded.get('checkpoint', '?')}, sha256 {recorded['sha256'][:12]}..., "
                            f"{recorded.get('adapter', '?')})")
    arch = recorded.get("architecture") or ({"resolution": recorded["resolution"]} if recorded.get("resolution")
                                             else {})
    wrong = [k for k, v in arch.items() if adapter.architecture.get(k, v) != v]
    if wrong and not problems:
        problems.append(f"{key}: {loaded} does not have the architecture of {made_by} "
                        f"({describe_architecture(arch)})")
    role = recorded.get("role")
    if role and role != adapter.role and not problems:
        problems.append(f"{key}: {loaded} runs as the {adapter.role}, but the {key!r} points of {csv} were made by "
                        f"the {role}")
    if not problems and recorded.get("adapter") and recorded["adapter"] != adapter.name:
        remarks.append(f"{key}: the points of {csv} were made with adapter {recorded['adapter']}; shown with "
                       f"{adapter.name}")
    return problems, remarks


def _check_classes(embeddings, slots) -> None:
    """Every class index of the table must exist in the loaded models (conditional ones)."""
    conditional = [s for s in slots if s.adapter.num_classes]
    if not conditional:
        return
    slot = min(conditional, key=lambda s: s.adapter.num_classes)
    labels = embeddings.frame["class_label"].to_numpy()
    over = labels >= slot.adapter.num_classes
    if over.any():
        i = int(over.argmax())
        raise UserError(f"{embeddings.csv_path}, row {i + 2}, column 'class_label': {int(labels[i])} is beyond the "
                        f"{slot.adapter.num_classes} classes of the loaded {slot.key!r} model ({slot.adapter.name})")
