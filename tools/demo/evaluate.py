"""Judge the demo teacher and student: on-class rates, Frechet distances, sample grids.

A small CNN (visualizer/digits/classifier.py) is trained on the coloured training digits (or loaded
with --classifier). Then, for seeds 0..N-1 of every class (classes forced, per-seed noise as the
app draws it), the teacher samples with its demo sampler preset and the student in one step. The
report gives each model's on-class rate (goals: teacher >= 95 %, student >= 90 %), the classifier's
accuracy on the held-out real digits (goal >= 97 %), and Frechet distances in the classifier's
penultimate feature space against the training digits, for the teacher, the student and held-out
real digits (the floor a perfect model could reach with that many images).

Writes report.json, teacher_grid.png, student_grid.png, real_grid.png (rows = classes) and, when it
trained one, classifier.pt to --out.

    python tools/demo/evaluate.py --teacher data/demo/teacher.pkl \
        --student data/demo/student --out data/demo/eval --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: visualizer/ and tools/

from tools.demo.training import device_name, save_classifier, train_classifier, write_json  # noqa: E402
from visualizer.adapters.demo import DigitsTeacherAdapter  # noqa: E402
from visualizer.checkpoints.loading import load_network  # noqa: E402
from visualizer.digits.classifier import (  # noqa: E402
    CLASSIFIER_FILE,
    DigitClassifier,
    load_classifier,
    predict,
)
from visualizer.digits.dataset import NUM_CLASSES, load_split  # noqa: E402
from visualizer.metrics.diversity import frechet_distance, prdc, summarise  # noqa: E402
from visualizer.models.device import pick_device  # noqa: E402
from visualizer.models.networks import EDMPrecond  # noqa: E402
from visualizer.models.sampling import dmd2_generate, edm_sampler  # noqa: E402

PRESETS = DigitsTeacherAdapter.presets       # the demo teacher's sampler presets, where its adapter keeps them
from visualizer.models.seeding import draw_latents_and_classes, make_generators, one_hot  # noqa: E402

DEMO_TEACHER_STEPS = 18  # EDM's CIFAR-10 setting (NFE 35): 32x32 digits need no more
GOALS = dict(classifier_accuracy=0.97, teacher_on_class=0.95, student_on_class=0.90)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, help="teacher EDM pickle")
    p.add_argument("--student", type=Path,
                   help="student checkpoint_model_NNNNNN/ folder, its pytorch_model.bin, or the distillation "
                        "output folder (its newest checkpoint)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--classifier", type=Path, default=None,
                   help="load this classifier instead of training one (the shipped one: "
                        f"visualizer/assets/digits/{CLASSIFIER_FILE.name})")
    p.add_argument("--classifier-steps", type=int, default=2000)
    p.add_argument("--seeds-per-class", type=int, default=100)
    p.add_argument("--preset", default=None,
                   help="teacher sampler preset (the digits teacher adapter's presets); default 'demo' where it "
                        f"exists, else 'deterministic' with {DEMO_TEACHER_STEPS} steps")
    p.add_argument("--teacher-steps", type=int, default=None, help="override the preset's number of steps")
    p.add_argument("--real-repeats", type=int, default=2, help="renderings per digit in the real reference sets")
    p.add_argument("--grid-columns", type=int, default=10)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", type=int, default=5,
                   help="disjoint seed sets (seeds 0-199, 200-399, ... for the default 1,000): every score is given "
                        "as its mean over them with its min-max, and no ranking is claimed where ranges overlap")
    return p.parse_args(argv)


def class_seeds(seeds_per_class: int) -> tuple[list[int], list[int]]:
    """Seed s*10 + c ... : seeds 0..10N-1, class = seed mod 10, so every class gets N distinct seeds."""
    seeds = list(range(seeds_per_class * NUM_CLASSES))
    return seeds, [s % NUM_CLASSES for s in seeds]


def resolve_student(path: Path) -> Path:
    """A distillation output folder stands for its newest checkpoint_model_NNNNNN/ folder."""
    if path.is_dir() and not any((path / n).exists() for n in ("pytorch_model.bin", "model.safetensors")):
        folders = sorted(path.glob("checkpoint_model_*"))
        if folders:
            return folders[-1]
    return path


def teacher_settings(preset: str | None, steps: int | None):
    """The demo's teacher sampler: the 'demo' preset once the app defines one, else deterministic Heun."""
    if preset is None:
        preset, steps = ("demo", steps) if "demo" in PRESETS else ("deterministic", steps or DEMO_TEACHER_STEPS)
    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    settings = PRESETS[preset]
    return dataclasses.replace(settings, num_steps=steps) if steps else settings


@torch.no_grad()
def generate(net: EDMPrecond, kind: str, seeds: list[int], classes: list[int], device: torch.device,
             settings=None, batch: int = 500) -> torch.Tensor:
    """Images in [-1, 1] (float32, CPU) for each (seed, class), drawn with the app's per-seed scheme."""
    out = []
    shape = (net.img_channels, net.img_resolution, net.img_resolution)
    for start in range(0, len(seeds), batch):
        s, c = seeds[start:start + batch], classes[start:start + batch]
        generators = make_generators(s, device)
        forced = torch.as_tensor(c, dtype=torch.long, device=device)
        latents, cls = draw_latents_and_classes(generators, shape, net.label_dim, forced)
        labels = one_hot(cls, net.label_dim, device)
        if kind == "teacher":
            x = edm_sampler(net, latents, labels, generators=generators, settings=settings)
        else:
            x = dmd2_generate(net, latents, labels)
        out.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(out)


def save_grid(images: torch.Tensor, classes: list[int] | torch.Tensor, path: Path, columns: int) -> None:
    """Rows = classes 0..9, the first `columns` images of each class."""
    from PIL import Image

    classes = torch.as_tensor(classes)
    res = images.shape[-1]
    grid = torch.full((3, NUM_CLASSES * res, columns * res), -1.0)
    for c in range(NUM_CLASSES):
        for j, img in enumerate(images[classes == c][:columns]):
            grid[:, c * res:(c + 1) * res, j * res:(j + 1) * res] = img
    arr = ((grid.permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(arr).save(path)


def on_class(clf: DigitClassifier, images: torch.Tensor, classes: list[int]) -> tuple[float, np.ndarray, np.ndarray]:
    """(rate, per-class rates, features) of images whose predicted class is the requested one."""
    pred, feats = predict(clf, images)
    target = torch.as_tensor(classes, device=pred.device)
    hit = (pred == target).float()
    per_class = np.array([hit[target == c].mean().item() for c in range(NUM_CLASSES)])
    return hit.mean().item(), per_class, feats.cpu().numpy()


def over_seed_sets(hits: np.ndarray, feats: np.ndarray, train_feats: np.ndarray, held_sets: list[np.ndarray],
                   splits: int) -> dict:
    """On-class rate, Frechet distance to the training digits, and precision/recall/density/coverage against an
    equally large set of held-out digits, on each of `splits` disjoint blocks of consecutive seeds (classes stay
    balanced: class = seed mod 10); each score's mean, min, max and per-set values (`diversity.summarise`)."""
    size = len(hits) // splits
    per = []
    for i in range(splits):
        part = slice(i * size, (i + 1) * size)
        per.append({"on_class": float(hits[part].mean()), "frechet": frechet_distance(feats[part], train_feats),
                    **prdc(held_sets[i], feats[part])})
    return {"seed_sets": splits, "seeds_per_set": size, **{k: summarise([p[k] for p in per]) for k in per[0]}}


def held_out_sets(held_feats: np.ndarray, splits: int, size: int, seed: int) -> list[np.ndarray]:
    """`splits` disjoint random sets of `size` held-out real renderings (the reference for coverage and recall)."""
    order = np.random.default_rng(seed).permutation(len(held_feats))
    if splits * size > len(held_feats):
        raise SystemExit(f"{splits} x {size} held-out images needed, {len(held_feats)} rendered: raise --real-repeats")
    return [held_feats[order[i * size:(i + 1) * size]] for i in range(splits)]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    t0 = time.monotonic()
    device = pick_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    train, held = load_split("train", device=device), load_split("held_out", device=device)

    if args.classifier:
        clf = load_classifier(args.classifier, device)
        classifier_source = str(args.classifier)
    else:
        clf = train_classifier(train, steps=args.classifier_steps, seed=args.seed, device=device)
        save_classifier(clf, args.out / "classifier.pt")
        classifier_source = str(args.out / "classifier.pt")
    train_images, _ = train.fixed(seed=args.seed + 1, repeats=args.real_repeats)
    held_images, held_labels = held.fixed(seed=args.seed + 2, repeats=args.real_repeats * 4)
    _, train_feats = predict(clf, train_images)
    held_acc, held_per_class, held_feats = on_class(clf, held_images, held_labels.tolist())
    train_feats = train_feats.cpu().numpy()
    report: dict = dict(
        device=device_name(device), classifier=classifier_source, goals=GOALS,
        classifier_accuracy_held_out=held_acc, classifier_accuracy_per_class=held_per_class.tolist(),
        reference_images=len(train_images), held_out_images=len(held_images),
        frechet_held_out_real=frechet_distance(held_feats, train_feats),
    )
    save_grid(held_images.cpu(), held_labels.cpu(), args.out / "real_grid.png", args.grid_columns)
    print(f"classifier: held-out accuracy {held_acc:.4f}; FD(held-out real, train) "
          f"{report['frechet_held_out_real']:.3f}", flush=True)

    seeds, classes = class_seeds(args.seeds_per_class)
    report["seeds"] = dict(count=len(seeds), first=seeds[0], last=seeds[-1], class_rule="seed % 10")
    size = len(seeds) // args.splits
    held_sets = held_out_sets(held_feats, args.splits, size, args.seed + 3)
    report["held_out_real_sets"] = {"seed_sets": args.splits, "images_per_set": size, "frechet": summarise(
        [frechet_distance(h, train_feats) for h in held_sets])}
    report["intervals"] = (f"mean over {args.splits} disjoint sets of {size} (seeds in consecutive blocks; held-out "
                           "real images in random disjoint sets), with min and max; scores at that set size only")
    models = []
    if args.teacher:
        settings = teacher_settings(args.preset, args.teacher_steps)
        models.append(("teacher", args.teacher, settings))
        report["teacher_settings"] = dataclasses.asdict(settings)
    if args.student:
        models.append(("student", resolve_student(args.student), None))
    for kind, path, settings in models:
        net = load_network(path).float().eval().requires_grad_(False).to(device)
        start = time.monotonic()
        images = generate(net, kind, seeds, classes, device, settings, args.batch)
        seconds = time.monotonic() - start
        rate, per_class, feats = on_class(clf, images, classes)
        report[kind] = dict(
            checkpoint=str(path), on_class=rate, on_class_per_class=per_class.tolist(),
            frechet=frechet_distance(feats, train_feats), images=len(images), sampling_seconds=seconds,
            goal_met=rate >= GOALS[f"{kind}_on_class"],
            seed_sets=over_seed_sets(np.asarray(predict(clf, images)[0].cpu() == torch.as_tensor(classes), float),
                                     feats, train_feats, held_sets, args.splits),
        )
        save_grid(images, classes, args.out / f"{kind}_grid.png", args.grid_columns)
        print(f"{kind}: on-class {rate:.4f} (goal {GOALS[f'{kind}_on_class']}), FD {report[kind]['frechet']:.3f}, "
              f"{len(images)} images in {seconds:.1f} s", flush=True)
    report["seconds"] = time.monotonic() - t0
    write_json(args.out / "report.json", report)
    return report


if __name__ == "__main__":
    main()
