"""The performance issue's table: every goal, what was measured, its ratio to the anchors, met or missed.

Reads what the benchmark scripts wrote (each runs where it belongs: the GPU goals on an H200, UMAP
and the browser on the 2-core CPU machine) and prints one Markdown table:

    python benchmarks/bench_performance.py        # GPU goals 1-3   -> benchmarks/out/performance.json
    python benchmarks/bench_umap.py               # goal 4          -> benchmarks/out/bench_umap.json
    pytest tests/browser                          # goal 5          -> benchmarks/out/app_browser.json
    python benchmarks/goals.py                    # the table of all goals

A missing file shows as 'not measured' with the command that measures it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"

# The issue's anchors: the papers' reference code on one H200, PyTorch 2.11, random weights.
ANCHOR_TEACHER_CLICK_S = 21.5     # 256-step FID preset, batch 1, eager fp16
ANCHOR_STUDENT_S = 0.034          # DMD2 one step, batch 1, eager fp32
ANCHOR_DMD2_FP32 = 543.0          # img/s at batch 256, eager fp32
ANCHOR_DMD2_FP16 = 744.0          # img/s at batch 256, eager fp16 (344 ms per batch)
ANCHOR_EDM_S_PER_IMG = 0.735      # FID preset at batch 64, eager fp16


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _case(perf: dict, case: str, path: str, record: bool | None = None) -> dict | None:
    for c in perf["cases"]:
        if c["case"].startswith(case) and c["path"] == path and (record is None or c.get("record") == record):
            return c
    return None


def rows(perf: dict | None, umap: dict | None, browser: dict | None) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []

    def status(ok: bool) -> str:
        return "met" if ok else "**missed**"

    if perf is None:
        out.append(("1-3", "GPU goals", "", "not measured: python benchmarks/bench_performance.py", "", "", ""))
    else:
        fast = f"{perf['fast']['compile']} {perf['fast']['precision']}"
        t, te = _case(perf, "teacher click", fast), _case(perf, "teacher click", "eager fp32")
        if t:
            s = t["seconds_256"]
            out.append(("1", "teacher click: 256-step FID sample + 37 heatmaps every step", "<= 1.5 s",
                        f"{s:.2f} s ({fast})", f"{ANCHOR_TEACHER_CLICK_S / s:.1f}x faster than 21.5 s",
                        f"{te['seconds_256'] / s:.1f}x ({te['seconds_256']:.1f} s, scaled from {te['steps']} steps)"
                        if te else "", status(s <= 1.5)))
        st, se = _case(perf, "student click", fast), _case(perf, "student click", "eager fp32")
        if st and st["gpu_s"] is not None:
            g = st["gpu_s"]
            out.append(("2", "student click: one-step image + 37 heatmaps, GPU time", "<= 10 ms",
                        f"{g * 1e3:.1f} ms (app first_look wall {st['first_look_wall_s'] * 1e3:.1f} ms)",
                        f"{ANCHOR_STUDENT_S / g:.1f}x faster than 34 ms (image only)",
                        f"{se['gpu_s'] / g:.1f}x ({se['gpu_s'] * 1e3:.1f} ms)" if se else "", status(g <= 0.010)))
        rec, plain = _case(perf, "dmd2 batch", fast, True), _case(perf, "dmd2 batch", fast, False)
        eager_rec = _case(perf, "dmd2 batch", "eager fp32", True)
        if rec:
            ips = rec["images_per_s"]
            out.append(("3a", "DMD2 one step, batch 256, bottleneck recorded", ">= 1,100 img/s", f"{ips:,.0f} img/s",
                        f"{ips / ANCHOR_DMD2_FP32:.2f}x 543 (fp32), {ips / ANCHOR_DMD2_FP16:.2f}x 744 (fp16)",
                        f"{ips / eager_rec['images_per_s']:.2f}x ({eager_rec['images_per_s']:.0f} img/s)"
                        if eager_rec else "", status(ips >= 1100)))
        if rec and plain:
            over = rec["seconds_per_batch"] / plain["seconds_per_batch"] - 1
            out.append(("3c", "recording overhead (DMD2 batch 256)", "<= 10%", f"{over:+.1%}", "", "",
                        status(over <= 0.10)))
        e, ee = _case(perf, "edm fid batch", fast), _case(perf, "edm fid batch", "eager fp32")
        if e:
            s = e["seconds_per_image_256"]
            out.append(("3b", "EDM FID preset, batch 64, bottleneck recorded", "<= 0.5 s/img", f"{s:.3f} s/img",
                        f"{ANCHOR_EDM_S_PER_IMG / s:.2f}x faster than 0.735 s",
                        f"{ee['seconds_per_image_256'] / s:.2f}x ({ee['seconds_per_image_256']:.3f} s/img, scaled "
                        f"from {perf['baseline_steps']} steps)"
                        if ee else "", status(s <= 0.5)))
        fid = perf.get("fidelity")
        if fid:
            bound = 1e-5 if perf["fast"]["precision"] == "fp32" else 1e-2
            out.append(("-", f"fast path vs eager fp32, relative error ({perf['fast']['precision']})",
                        f"near {bound:g}", f"denoised {fid['denoised']:.1e}, heatmaps <= {fid['heatmaps_max']:.1e}",
                        "", "", status(fid["denoised"] <= 1.5 * bound)))
    if umap is None:
        out.append(("4", "UMAP 100k rows (PCA to 50 first)", "recorded",
                    "not measured: python benchmarks/bench_umap.py", "", "", ""))
    else:
        total = sum(umap["seconds"].values())
        backend = umap.get("backend", "umap-learn")
        out.append(("4", f"UMAP 100k rows (PCA to 50 first), {backend}, {umap['machine']['cpus']} CPUs", "recorded",
                    f"{total:.0f} s, peak {umap['peak_rss_gib']:.2f} GiB", "", "", "recorded"))
    if browser is None:
        out.append(("5", "browser: 100k scatter load, click to panels", "recorded",
                    "not measured: pytest tests/browser", "", "", ""))
    else:
        load = browser.get("scatter_100k_load_to_interactive_s")
        click = browser.get("click_to_panels_s_100k_points")
        out.append(("5", "browser: 100k-point scatter, load to interactive / click to panels", "recorded",
                    f"{load} s / {click} s", "", "", "recorded"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--performance", type=Path, default=OUT / "performance.json")
    p.add_argument("--umap", type=Path, default=OUT / "bench_umap.json")
    p.add_argument("--browser", type=Path, default=OUT / "app_browser.json")
    args = p.parse_args(argv)
    perf = _load(args.performance)
    header = ("#", "goal", "target", "measured", "vs the reference anchors", "vs our eager fp32", "status")
    table = [header, ("---",) * len(header), *rows(perf, _load(args.umap), _load(args.browser))]
    if perf is not None:
        print(f"GPU: {perf['device_name']}, torch {perf['torch']}, fast path: compile {perf['fast']['compile']}, "
              f"precision {perf['fast']['precision']} ({perf['created']})")
    for r in table:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
