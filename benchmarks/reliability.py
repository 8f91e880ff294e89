"""Reliability under hostile input (issue 13): the corpus of tests/hostile_corpus.py, run and tabulated.

Builds the hostile corpus (checkpoints, embeddings CSVs and sidecars, corrupted copies of a finished
`embed` run made here on tiny real-format checkpoints, mismatched models), runs every case in a forked
child under a memory limit and a timeout, and prints the table: per class, the cases, how many were
refused cleanly (one line naming the file or field; exit status 2 at start-up), loaded as expected,
crashed, hung, or were wrongly accepted, and the peak memory of a case. A control runs the same
nesting and amplification files through the stock loaders (`pickle.loads`, `torch.load(weights_only=True)`
then a copy of every tensor, as loading a network does) in the same sandbox.

    python benchmarks/reliability.py [--jobs 2] [--timeout 60] [--memory-mib 2048] [--keep DIR]
        [--out benchmarks/out/reliability.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hostile_corpus import (  # noqa: E402
    build_corpus,
    case,
    failures,
    format_table,
    run_corpus,
    summarize,
)

SEEDS, BATCH = 24, 8


def finished_run(root: Path) -> tuple[Path, callable]:
    """A small finished `embed` run on tiny real-format checkpoints, and the arguments that made it."""
    import torch
    from nets import tiny_net

    from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle

    root.mkdir(parents=True, exist_ok=True)
    net = tiny_net()
    teacher = write_edm_pickle(net, root / "teacher.pkl")
    student = root / "checkpoint_model_000100"
    student.mkdir()
    torch.save(net.state_dict(), student / "pytorch_model.bin")

    def argv(out: Path) -> list[str]:
        return ["embed", "--teacher", str(teacher), "--student", str(student), "--seeds", f"0-{SEEDS - 1}",
                "--batch-size", str(BATCH), "--num-steps", "3", "--steps", "first,last", "--layers",
                "encoder_bottleneck", "--device", "cpu", "--out", str(out), "--no-progress"]

    out = root / "run"
    subprocess.run([sys.executable, "-m", "visualizer", *argv(out)], check=True, cwd=ROOT, capture_output=True)
    return out, argv


def controls(cases: list[dict]) -> list[dict]:
    """The class 1 and 2 checkpoint files through the stock loaders."""
    out = []
    for c in cases:
        if c["kind"] != "checkpoint" or c["cls"] not in (1, 2):
            continue
        path = Path(c["path"])
        if path.is_dir():
            path = path / "pytorch_model.bin"
        loader = "pickle.loads" if path.suffix == ".pkl" else "torch.load"
        out.append(case(f"stock {loader}: {c['id']}", c["cls"], "control", "refuse", path=str(path), loader=loader))
    return out


def control_table(cases: list[dict], results: list[dict]) -> str:
    lines = ["| stock loader | files | killed by a signal | hangs | raised an exception | loaded | peak memory (MiB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for loader in ("pickle.loads", "torch.load"):
        mine = [r for c, r in zip(cases, results, strict=True) if c["loader"] == loader]
        if not mine:
            continue
        count = {k: sum(r["outcome"] == k for r in mine) for k in ("crash", "hang", "error", "accepted")}
        peak = max(r.get("peak_rss_mib", 0) for r in mine)
        lines.append(f"| {loader} | {len(mine)} | {count['crash']} | {count['hang']} | {count['error']} | "
                     f"{count['accepted']} | {peak:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--memory-mib", type=int, default=2048)
    parser.add_argument("--keep", type=Path, help="build the corpus here and keep it (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "reliability.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        run, embed_argv = finished_run(root / "embed")
        run_seconds = time.perf_counter() - start
        start = time.perf_counter()
        cases = build_corpus(root / "corpus", run=run, embed_argv=embed_argv)
        build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        results = run_corpus(cases, root / "work", jobs=args.jobs, timeout=args.timeout, memory_mib=args.memory_mib)
        corpus_seconds = time.perf_counter() - start
        stock = controls(cases)
        stock_results = run_corpus(stock, root / "control", jobs=args.jobs, timeout=args.timeout,
                                   memory_mib=args.memory_mib)

    rows = summarize(cases, results)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {len(cases)} cases, {args.jobs} at a time, each under "
          f"{args.memory_mib} MiB of address space above the worker and a {args.timeout:.0f} s timeout")
    print(f"finished embed run made in {run_seconds:.1f} s; corpus built in {build_seconds:.1f} s, "
          f"run in {corpus_seconds:.1f} s\n")
    print(format_table(rows))
    print("\ncontrol: the class 1-2 files through the stock loaders, in the same sandbox\n")
    print(control_table(stock, stock_results))
    bad = failures(cases, results)
    if bad:
        print("\nfailures:\n" + "\n".join(bad))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "rows": rows, "seconds": {"embed_run": run_seconds, "build": build_seconds, "corpus": corpus_seconds},
        "cases": [{**c, **{"result": r}} for c, r in zip(cases, results, strict=True)],
        "controls": [{**c, **{"result": r}} for c, r in zip(stock, stock_results, strict=True)],
    }, indent=1, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
