"""`python -m visualizer diversity [RUN]`: quality, diversity and coverage of teacher and student, with intervals.

Examples:

    python -m visualizer diversity                       # the demo pair, 1,000 seeds, against held-out digits
    python -m visualizer diversity --seeds 0-499 --splits 5
    python -m visualizer diversity data/runs/imagenet --real val64.npz --probe network:enc.8x8_block3@0.5

The run's teacher and student (an `embed` run folder; default the shipped demo) generate the seeds
(class = seed mod classes); a real set (`--real`: an .npz with `images` and `labels`, or a folder of
class folders; the demo uses its held-out digits) is the reference when given, else the teacher is.
One probe encodes every set: `digits` (the demo's classifier), or `network[:LAYER][@SIGMA]` (the teacher
network itself on x0 + sigma*eps, seeded). Writes <out>/diversity.json and per-class.csv and prints
precision, recall, density, coverage, Frechet distance and spread ratio with their spread over disjoint
seed sets, the classes the student collapses most, and the seed correspondence of the pair.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

OUT_DIR = Path("data", "diversity")
# The probe's spec (`probe.parse_probe`), for every command that takes --probe (no torch import for --help).
PROBE_HELP = ("digits (the demo's digit classifier), or network[:LAYER][@SIGMA] (the teacher network on x0 + "
              "sigma*eps, seeded; default layer: the bottleneck, sigma 0.5); auto: digits for the demo, else network")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument("run", nargs="?", metavar="RUN", help="an `embed` run folder or its embeddings.csv "
                        "(its models are used; default: the shipped demo run)")
    parser.add_argument("--seeds", default="0-999", metavar="RANGES", help="seeds to generate (default 0-999)")
    parser.add_argument("--real", metavar="PATH", help="real images: .npz (images, labels) or a folder of class "
                        "folders (default for the demo: its held-out digits; elsewhere none)")
    parser.add_argument("--probe", default="auto", metavar="PROBE", help=PROBE_HELP)
    parser.add_argument("--splits", type=int, default=5, metavar="S", help="disjoint seed sets for the spread "
                        "(default 5)")
    parser.add_argument("--k", type=int, default=5, metavar="K", help="k of the k-NN balls (default 5)")
    parser.add_argument("--preset", metavar="NAME", help="the teacher's sampler preset (default: the run's)")
    parser.add_argument("--num-steps", type=int, metavar="N", help="the teacher's sampler steps (default: the run's)")
    parser.add_argument("--other-preset", default="auto", metavar="NAME",
                        help="a second teacher preset the student's seeds are also matched against (auto: "
                             "deterministic when the teacher's sampler is stochastic (churn), else the first "
                             "stochastic preset; none: skip)")
    parser.add_argument("--batch", type=int, default=256, metavar="B", help="samples per batch (default 256)")
    parser.add_argument("--device", metavar="DEVICE", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"output folder (default {OUT_DIR}/<run>)")


def run(args: argparse.Namespace) -> int:
    from visualizer.adapters.demo import DEMO_EMBEDDINGS
    from visualizer.embeddings.spec import parse_seeds
    from visualizer.errors import UserError
    from visualizer.metrics import sample_sets
    from visualizer.metrics.probe import parse_probe
    from visualizer.metrics.runs import EmbedRun

    if args.splits < 1 or args.k < 1 or args.batch < 1:
        raise UserError("--splits, --k and --batch must be >= 1")
    source = EmbedRun.open(args.run or DEMO_EMBEDDINGS)
    is_demo = Path(source.csv_path).resolve() == DEMO_EMBEDDINGS.resolve()
    seeds = parse_seeds(args.seeds)
    t_key, s_key = source.model_with_role("teacher"), source.model_with_role("student")
    teacher, student = source.open_adapter(t_key, args.device), source.open_adapter(s_key, args.device)
    settings = teacher.sampler_settings(args.preset, args.num_steps) if args.preset or args.num_steps else \
        source.sampler_settings(t_key, teacher)
    probe = parse_probe(args.probe, teacher, is_demo)

    start = time.perf_counter()
    sets = {"teacher": sample_sets.generate(teacher, seeds, name="teacher", settings=settings, batch=args.batch),
            "student": sample_sets.generate(student, seeds, name="student", batch=args.batch)}
    sampled = time.perf_counter() - start
    real = _real(args.real, is_demo, teacher.resolution, len(seeds))
    if real is not None:
        sets = {"real": real, **sets}
    reference = "real" if real is not None else "teacher"
    start = time.perf_counter()
    report = {
        "probe": probe.describe(), "reference": reference, "reference_source": sets[reference].source,
        "seeds": [seeds[0], seeds[-1]] if seeds == list(range(seeds[0], seeds[-1] + 1)) else seeds,
        "teacher_sampler": teacher.describe_settings(settings), "models": {"teacher": t_key, "student": s_key},
        "scores": sample_sets.evaluate(sets, probe, reference=reference, splits=args.splits, k=args.k),
        "correspondence": sample_sets.correspondence(sets["student"], sets["teacher"], probe),
        "seconds": {"sampling": round(sampled, 2)},
    }
    if reference == "real":          # the student against its teacher too: what distillation kept
        report["student_vs_teacher"] = sample_sets.evaluate({k: sets[k] for k in ("teacher", "student")}, probe,
                                                            reference="teacher", splits=args.splits, k=args.k)
    other = _other_preset(teacher, settings, args.other_preset)
    if other is not None:     # seed correspondence holds (or not) for the teacher's other sampler too
        start_other = time.perf_counter()
        other_settings = teacher.sampler_settings(other, settings.num_steps)
        other_set = sample_sets.generate(teacher, seeds, name=f"teacher ({other})", settings=other_settings,
                                         batch=args.batch)
        report["seconds"]["sampling"] += round(time.perf_counter() - start_other, 2)
        report["correspondence_other"] = {"teacher_sampler": teacher.describe_settings(other_settings),
                                          **sample_sets.correspondence(sets["student"], other_set, probe)}
    report["seconds"]["scoring"] = round(time.perf_counter() - start, 2)
    out = args.out or OUT_DIR / ("demo" if is_demo else source.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diversity.json").write_text(json.dumps(report, indent=1))
    _per_class_csv(report, out / "per-class.csv")
    print(summary(report))
    print(f"wrote {out / 'diversity.json'}, {out / 'per-class.csv'}")
    return 0


def _other_preset(teacher, settings, choice: str) -> str | None:
    """The teacher preset of the other kind (stochastic vs deterministic) than `settings`, or the one named."""
    from visualizer.errors import UserError

    if choice == "none":
        return None
    if choice != "auto":
        if choice not in teacher.presets:
            raise UserError(f"--other-preset {choice!r}: {teacher.name} has the presets {', '.join(teacher.presets)}")
        return choice
    churn = getattr(settings, "S_churn", None)
    if churn is None:
        return None
    return next((name for name, p in teacher.presets.items() if (p.S_churn > 0) != (churn > 0)), None)


def _real(path: str | None, is_demo: bool, resolution: int, n: int):
    from visualizer.metrics import sample_sets

    if path is not None:
        return sample_sets.load_real(path, resolution=resolution)
    return sample_sets.held_out_digits(n) if is_demo else None


def _fmt(score: dict) -> str:
    sd = score.get("sd")
    return f"{score['mean']:.3f} ({score['min']:.3f}-{score['max']:.3f})" if sd is not None else f"{score['mean']:.3f}"


def _split_size(report: dict) -> int:
    return next(iter(report["scores"].values()))["overall"]["split_size"]


def summary(report: dict) -> str:
    """A plain-text table of the overall scores, the most collapsed classes and the seed correspondence."""
    names = ("precision", "recall", "density", "coverage", "frechet", "spread_ratio")
    lines = [f"probe: {report['probe']}", f"reference: {report['reference']} ({report['reference_source']})",
             f"mean over disjoint seed sets of {_split_size(report)} rows per set (min-max); the k-NN scores and "
             "the Frechet distance depend on that size, so compare only at equal sizes:",
             "set      " + "".join(f"{n:>22}" for n in names)]
    blocks = [("", report["scores"])] + ([("vs teacher: ", report["student_vs_teacher"])]
                                         if "student_vs_teacher" in report else [])
    for prefix, block in blocks:
        for name, r in block.items():
            lines.append(f"{prefix + name:<9}" + "".join(f"{_fmt(r['overall']['scores'][n]):>22}" for n in names))
    student = report["scores"]["student"]["per_class"]
    worst = list(student.items())[:3]
    if worst:
        lines.append("classes the student spreads least (spread ratio to the reference; coverage): " +
                     ", ".join(f"{c}: {v['spread_ratio']:.2f}; {v['coverage']:.2f}" for c, v in worst))
    blocks = [("", report["correspondence"])]
    if "correspondence_other" in report:
        blocks.append((f", teacher {report['correspondence_other']['teacher_sampler']['preset']}",
                       report["correspondence_other"]))
    for where, block in blocks:
        for space in ("pixel_rmse", "probe"):
            c = block.get(space)
            if c:
                pool = "of the class" if c.get("pool", "class") == "class" else "(one seed per class: all seeds)"
                lines.append(f"seed correspondence ({space}{where}): same seed {c['same_seed_mean']:.3f} vs other "
                             f"seeds {pool} {c['other_seeds_mean']:.3f}; top-1 {c['top1']:.1%} "
                             f"(chance {c['top1_chance']:.1%})")
    return "\n".join(lines)


def _per_class_csv(report: dict, path: Path) -> None:
    columns = ("set", "class", "n", "precision", "recall", "density", "coverage", "spread_ratio")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for name, r in report["scores"].items():
            for c, v in r["per_class"].items():
                w.writerow([name, c, v["n"], *(round(v[k], 6) for k in columns[3:])])
