"""What every model adapter offers: load a checkpoint, denoise one step, sample, trace, expose named layers.

An adapter owns one network on one device and its sampler. Everything the app and the pipeline do
with a model goes through this interface, so a third-party model plugs in by subclassing
`DiffusionAdapter` and registering under the `visualizer.adapters` entry-point group.

The sampler contract: `presets` (name -> settings), `default_preset`, `sampler_settings(preset,
num_steps)` (validated, typed), `run_sampler(...)` and `to_uint8(x)` (the model's own pixel
conversion). `trace()` runs that sampler with layers recorded and edited; `sample()` is a trace
that records nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.hooks import RemovableHandle

from visualizer.errors import CheckpointError, UserError
from visualizer.models.acceleration import COMPILE_MODES, accelerate
from visualizer.models.device import pick_device
from visualizer.models.layer_names import layer_shapes, layer_table, resolve_layers
from visualizer.models.networks import PRECISIONS, EDMPrecond
from visualizer.models.sampling import SIGMA_MAX, Evaluation, evaluations
from visualizer.models.seeding import draw_latents_and_classes, make_generators, one_hot
from visualizer.trace.edits import Edit
from visualizer.trace.recorder import register_forward_hooks
from visualizer.trace.run import Reduce, Trace, run_traced
from visualizer.trace.steps import Steps

HookFn = Callable[[torch.nn.Module, tuple, Any], Any]
Callback = Callable[[dict], None]


@dataclass
class SampleResult:
    images: np.ndarray          # uint8 [B, H, W, C]
    class_labels: np.ndarray    # int64 [B]
    seeds: list[int]
    denoised: torch.Tensor      # float32 [B, C, H, W], the model's final estimate in [-1, 1] (CPU)


@cache
def imagenet_class_names() -> tuple[str, ...]:
    data = json.loads(resources.files("visualizer.data").joinpath("imagenet_class_index.json").read_text())
    return tuple(data[str(i)][1].replace("_", " ") for i in range(len(data)))


def default_class_names(num_classes: int) -> tuple[str, ...]:
    return imagenet_class_names() if num_classes == 1000 else tuple(str(i) for i in range(num_classes))


def architecture_of(net: EDMPrecond) -> dict[str, int]:
    """The facts that decide whether a network fits an adapter and a set of embeddings."""
    return {"resolution": int(net.img_resolution), "channels": int(net.img_channels), "num_classes": int(net.label_dim)}


def describe_architecture(arch: Mapping[str, int]) -> str:
    """'a 64x64, 3-channel, 1000-class network' from whichever of the three facts are given."""
    parts = []
    if "resolution" in arch:
        parts.append(f"{arch['resolution']}x{arch['resolution']}")
    if "channels" in arch:
        parts.append(f"{arch['channels']}-channel")
    if "num_classes" in arch:
        parts.append(f"{arch['num_classes']}-class" if arch["num_classes"] else "unconditional")
    return f"a {', '.join(parts)} network"


class DiffusionAdapter(ABC):
    """One EDM-family network with its sampler; `forward` is a single denoising step D(x, sigma)."""

    name: ClassVar[str]
    role: ClassVar[str]             # 'teacher' (multi-step) or 'student' (few-step generator)
    first_sigma: ClassVar[float] = SIGMA_MAX
    presets: ClassVar[Mapping[str, Any]]        # preset name -> sampler settings (a frozen dataclass)
    default_preset: ClassVar[str]
    default_class_names: ClassVar[tuple[str, ...] | None] = None   # None: ImageNet for 1000 classes, else indices
    # Facts an adapter is built for ({resolution, channels, num_classes}); None: whatever the checkpoint holds.
    fixed_architecture: ClassVar[Mapping[str, int] | None] = None

    def __init__(self, net: EDMPrecond, *, device: str | torch.device | None = None,
                 checkpoint: str | Path | None = None, class_names: Sequence[str] | None = None,
                 precision: str | None = None, compile: bool | str = False):
        """`precision` ('fp32', 'fp16', 'bf16') overrides the checkpoint's own; CPU and MPS always compute in fp32.

        `compile` picks the fast path on CUDA: False/'off' eager, 'graphs' CUDA-graph replay of the
        eager body, True/'full' torch.compile plus graphs (see `models.acceleration`). Elsewhere the
        net stays eager and a warning says so.
        """
        self._check_fits(net, checkpoint)
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        mode = {False: "off", True: "full", None: "off"}.get(compile, compile)
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile {compile!r} is not one of {', '.join(COMPILE_MODES)}")
        if precision is not None:
            net.precision = precision
        self.device = pick_device(device)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.net.cast_body_weights(self.device)
        self.compile = accelerate(self.net, self.device, mode)
        if mode != self.compile:
            warnings.warn(f"compile {mode!r} needs CUDA; {self.name} runs eagerly on {self.device.type}", stacklevel=2)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.class_names = tuple(class_names or self.default_class_names or default_class_names(net.label_dim))
        self._layers = layer_table(net)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def _check_fits(cls, net: EDMPrecond, checkpoint: str | Path | None) -> None:
        """Refuse a network that contradicts the adapter's fixed facts (its architecture, its class names)."""
        found = architecture_of(net)
        fixed = dict(cls.fixed_architecture or {})
        if cls.default_class_names is not None:
            fixed.setdefault("num_classes", len(cls.default_class_names))
        wrong = [k for k, v in fixed.items() if found.get(k) != v]
        if wrong:
            names = cls.default_class_names
            named = f" (its {len(names)} class names: {names[0]} ... {names[-1]})" if names else ""
            raise CheckpointError(
                f"{checkpoint or 'the network'}: holds {describe_architecture(found)}, but adapter {cls.name!r} is "
                f"for {describe_architecture(fixed)}{named}; choose an adapter that reads the architecture from "
                "the file (edm-imagenet-64, dmd2-imagenet-64) or leave --adapter out to detect it")

    @classmethod
    @abstractmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None, **kw) -> DiffusionAdapter:
        """Loads the adapter's official checkpoint format(s); errors name the file and the problem."""

    def warm_up(self, reduce: Callable | None = None, full: Sequence[str] = ()) -> float:
        """Compiles and captures the batch-1 graphs a click replays (seconds taken; 0 when eager): the one that
        keeps every block's output and, with `reduce` (a `trace.reductions.IN_GRAPH` function), the one that keeps
        that reduction of every block but those in `full` (a trajectory's heatmaps, its pooled layers whole)."""
        if self.net.body is None:
            return 0.0
        start = time.perf_counter()
        dtype = self.net.compute_dtype(self.device)
        self.net.body.warm_up(1, dtype)
        if reduce is not None:
            table = layer_table(self.net)        # any name of a block -> its module path, model.<block>
            blocks = [table[n].removeprefix("model.") for n in full if n in table]
            self.net.body.warm_up(1, dtype, reduce=reduce, full=blocks)
        return time.perf_counter() - start

    # -- description ----------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return self.net.img_resolution

    @property
    def num_classes(self) -> int:
        return self.net.label_dim

    @property
    def architecture(self) -> dict[str, int]:
        """{resolution, channels, num_classes} of the loaded network (what the embeddings sidecar records)."""
        return architecture_of(self.net)

    @property
    def hookable_layers(self) -> list[str]:
        """Native paths (`enc.16x16_block1`) and the earlier tool's names (`encoder_block_7`)."""
        return list(self._layers)

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        return layer_shapes(self.net)

    @property
    def precision(self) -> str:
        """What the U-Net body computes in on this device (fp32 off CUDA, whatever was asked)."""
        dtype = self.net.compute_dtype(self.device)
        return next(name for name, d in PRECISIONS.items() if d == dtype)

    def describe(self) -> dict:
        return {"adapter": self.name, "role": self.role, "checkpoint": self.checkpoint,
                "resolution": self.resolution, "num_classes": self.num_classes, "precision": self.precision,
                "compile": self.compile}

    # -- computation ----------------------------------------------------------------------------
    def labels(self, class_labels: torch.Tensor | Sequence[int] | int | None, batch: int) -> torch.Tensor | None:
        """Class indices (or one-hot rows) to the one-hot float matrix the network takes."""
        if not self.num_classes or class_labels is None:
            return None
        t = torch.as_tensor(class_labels, device=self.device)
        if t.ndim == 2:
            return t.float()
        return one_hot(t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(-1), self.num_classes, self.device)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels=None) -> torch.Tensor:
        """One denoising step D(x, sigma): the model's estimate of the clean image."""
        x = x.to(self.device)
        return self.net(x, torch.as_tensor(sigma), self.labels(class_labels, x.shape[0]))

    def draw(self, seeds: Sequence[int], class_label: int | Sequence[int] | None = None):
        """Per-seed generators, latents z and class indices, drawn in the reference order."""
        seeds = [int(s) for s in seeds]
        generators = make_generators(seeds, self.device)
        forced = None
        if class_label is not None:
            forced = torch.as_tensor(class_label, dtype=torch.long).reshape(-1).expand(len(seeds)).to(self.device)
        shape = (self.net.img_channels, self.resolution, self.resolution)
        latents, classes = draw_latents_and_classes(generators, shape, self.num_classes, forced)
        return generators, latents, classes

    def first_input(self, seeds: Sequence[int], class_label: int | Sequence[int] | None = None):
        """(x, sigma, one-hot labels, class indices) of the first network call: z*80 at sigma 80.

        Teacher and student share it for the same seed and class, so their activations at this
        step compare one to one.
        """
        _, latents, classes = self.draw(seeds, class_label)
        return latents * self.first_sigma, self.first_sigma, self.labels(classes, len(seeds)), classes

    # -- the sampler contract ---------------------------------------------------------------------
    @property
    def multi_step(self) -> bool:
        return self.role == "teacher"

    def sampler_settings(self, preset: str | None = None, num_steps: int | None = None, **overrides) -> Any:
        """The settings a preset (default: `default_preset`) gives, with `num_steps` and other fields overridden.

        Unknown presets and invalid values are a UserError that lists the valid presets.
        """
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise UserError(f"unknown preset {preset!r} for {self.name}; choose from {', '.join(self.presets)}")
        changes = {k: v for k, v in dict(overrides, num_steps=num_steps).items() if v is not None}
        try:
            return dataclasses.replace(self.presets[preset], **changes)
        except (TypeError, ValueError) as e:
            raise UserError(f"sampler settings for {self.name}: {e}") from None

    def describe_settings(self, settings: Any, preset: str | None = None) -> dict:
        """The settings as plain data, for run records and sidecars; without `preset`, named after the preset they
        come from whatever their step count ('custom' when none gives them), never the default by assumption."""
        if preset is None:
            names = dict.fromkeys([self.default_preset, *self.presets])      # the default first, if it matches
            preset = next((name for name in names
                           if dataclasses.replace(self.presets[name], num_steps=settings.num_steps) == settings),
                          "custom")
        return {**dataclasses.asdict(settings), "preset": preset}

    def evaluations(self, settings: Any) -> list[Evaluation]:
        """Every network call the sampler makes with `settings`: (step, stage, sigma), in order."""
        return evaluations(settings)

    @abstractmethod
    def run_sampler(self, latents: torch.Tensor, labels: torch.Tensor | None, generators: Sequence[torch.Generator],
                    settings: Any, callback: Callback | None = None, progress: bool = False) -> torch.Tensor:
        """The model's own sampler from per-seed latents; returns the final estimate (float)."""

    @abstractmethod
    def to_uint8(self, x: torch.Tensor) -> np.ndarray:
        """[B, C, H, W] in about [-1, 1] to uint8 [B, H, W, C], the way the model's paper quantises."""

    # -- running it ---------------------------------------------------------------------------------
    @torch.no_grad()
    def trace(self, seeds: Sequence[int], classes: int | Sequence[int] | None = None, layers: Sequence[str] = (),
              *, steps: Steps = "first", reduce: Reduce = None, edits: Sequence[Edit] = (),
              preset: str | None = None, num_steps: int | None = None, settings: Any = None,
              forward_only: bool = False, keep_denoised: bool = False, to_cpu: bool = True,
              callback: Callback | None = None, progress: bool = False) -> Trace:
        """Runs the sampler (or only its first network call) for `seeds`, recording and editing layers.

        `steps`: sampler steps to record ('first', 'last', 'all', indices, a `SigmaRange`), at the
        first evaluation of each. `reduce`: a reduction name ('l2', 'pca_rgb', ...), a function, or
        {layer: either}; None keeps the full activation. `edits`: `Edit`s applied while it runs.
        `forward_only`: only the first call, at the shared input z*80 and sigma 80.
        `keep_denoised`: also keep the denoised estimate at the recorded steps. `callback(info)`
        runs after every network call (see `models.sampling`); it may raise to abandon the run.
        """
        seeds = [int(s) for s in seeds]
        settings = settings if settings is not None else self.sampler_settings(preset, num_steps)
        plan = self.evaluations(settings)
        generators, latents, drawn = self.draw(seeds, classes)
        labels = self.labels(drawn, len(seeds))
        edits = [self._resolved(e, settings) for e in edits]
        if forward_only:
            plan = plan[:1]

            def run(cb: Callback) -> torch.Tensor:
                x, sigma = latents * self.first_sigma, torch.tensor(self.first_sigma)
                d = self.net(x, sigma, labels)
                cb(dict(step=0, stage=plan[0].stage, sigma=self.first_sigma, sigma_next=self.first_sigma,
                        x=x, denoised=d, num_steps=1))
                return d
        else:
            def run(cb: Callback) -> torch.Tensor:
                return self.run_sampler(latents, labels, generators, settings, cb, progress)

        final, parts = run_traced(self.net, plan, run, list(layers), steps=steps, reduce=reduce, edits=edits,
                                  keep_denoised=keep_denoised, to_cpu=to_cpu, callback=callback)
        return Trace(seeds=seeds, class_labels=drawn.cpu().numpy(), images=self.to_uint8(final),
                     final=final.float().cpu() if to_cpu else final.float(), **parts)

    def sample(self, num_samples: int = 1, class_label: int | Sequence[int] | None = None,
               seeds: Sequence[int] | None = None, callback: Callback | None = None,
               num_steps: int | None = None, preset: str | None = None, progress: bool = False,
               **overrides) -> SampleResult:
        """Runs the adapter's own sampler from per-seed noise; seeds default to 0..num_samples-1."""
        settings = self.sampler_settings(preset, num_steps, **overrides)
        t = self.trace(self._seeds(num_samples, seeds), class_label, settings=settings, callback=callback,
                       progress=progress)
        return SampleResult(images=t.images, class_labels=t.class_labels, seeds=t.seeds, denoised=t.final)

    def _resolved(self, edit: Edit, settings: Any) -> Edit:
        """A mean-ablation given as seeds becomes one with its per-step mean over those seeds."""
        if edit.op != "mean" or edit.value is not None:
            return edit
        t = self.trace(edit.seeds, None, [edit.layer], steps="all", settings=settings, to_cpu=False)
        mean = {s: t[(edit.layer, s)].mean(0, keepdim=True) for s in t.steps}
        return dataclasses.replace(edit, value=mean, seeds=None)

    @staticmethod
    def _seeds(num_samples: int, seeds: Sequence[int] | None) -> list[int]:
        return list(range(num_samples)) if seeds is None else [int(s) for s in seeds]

    # -- activations ----------------------------------------------------------------------------
    def resolve(self, names: Sequence[str]) -> dict[str, torch.nn.Module]:
        return resolve_layers(self.net, names)

    def register_activation_hooks(self, names: Sequence[str], fn: HookFn) -> list[RemovableHandle]:
        """The raw primitive: PyTorch forward hooks `fn(module, input, output)` on the named layers; remove
        the handles when done. Recording and editing go through `trace()`."""
        return register_forward_hooks(self.net, names, fn)
