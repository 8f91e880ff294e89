"""Every speed goal: what was measured, its ratio to the reference anchors and to our eager path, met or missed.

Reads what the benchmark scripts wrote (each runs where it belongs: the GPU goals on an H200, UMAP
and the browser on the 2-core CPU machine) and prints one Markdown table, then, for each missed GPU
goal, where its GPU time goes (kernel kinds from `profile_body.py`):

    python benchmarks/bench_performance.py        # GPU speed goals       -> benchmarks/out/performance.json
    python benchmarks/bench_causal.py             # edited student, sweep -> benchmarks/out/causal.json
    python benchmarks/profile_body.py --configs full:bf16:1 full:bf16:256 --profile full:bf16
                                                  # the profiles          -> benchmarks/out/profile_body.json
    python benchmarks/bench_umap.py               # UMAP                  -> benchmarks/out/bench_umap.json
    pytest tests/browser                          # browser               -> benchmarks/out/app_browser.json
    python benchmarks/goals.py                    # the table

The GPU-speed issue's goals (1: the teacher click; 2a-2c: extraction; 3a-3b: edits) come first;
below them the goals of earlier issues that the same files measure. A missing file shows as 'not
measured' with the command that measures it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"

# The reference anchors: the papers' reference code on one H200, PyTorch 2.11, random weights (RESULTS.md).
ANCHOR_TEACHER_CLICK_S = 21.5     # 256-step FID preset, batch 1, eager fp16, image only
ANCHOR_STUDENT_S = 0.034          # DMD2 one step, batch 1, eager fp32
ANCHOR_DMD2_FP32 = 543.0          # img/s at batch 256, eager fp32
ANCHOR_DMD2_FP16 = 744.0          # img/s at batch 256, eager fp16 (344 ms per batch)
ANCHOR_EDM_S_PER_IMG = 0.735      # FID preset at batch 64, eager fp16

# The goals: the GPU-speed issue's, then the causal issue's sweep and the first performance issue's student click.
TEACHER_CLICK_S = 1.0
DMD2_IMG_S = 2200.0
EDM_S_PER_IMG = 0.25
RECORDING_OVERHEAD = 0.05
EDITED_CLICK_RATIO = 1.5
EDITED_STUDENT_S = 0.020
SWEEP_S = 10.0
STUDENT_CLICK_S = 0.010


def _spread(values: list[float] | None, fmt: str, scale: float = 1.0, invert: float | None = None) -> str:
    """', range lo-hi of n runs' for a median's runs (files from before `all_s` was kept show nothing): a gap
    between two figures narrower than their ranges is run-to-run noise, not a difference. `invert` reports
    invert / value (a rate from times)."""
    if not values or len(values) < 2:
        return ""
    shown = sorted(invert / v if invert else v * scale for v in values)
    return f", range {shown[0]:{fmt}}-{shown[-1]:{fmt}} of {len(shown)}"


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _case(perf: dict, case: str, path: str, record: bool | None = None) -> dict | None:
    for c in perf["cases"]:
        if c["case"].startswith(case) and c["path"] == path and (record is None or c.get("record") == record):
            return c
    return None


def rows(perf: dict | None, umap: dict | None, browser: dict | None, causal: dict | None = None
         ) -> list[tuple[str, ...]]:
    """The table's rows: (#, goal, target, measured, vs the reference anchors, vs our eager fp32, status)."""
    out: list[tuple[str, ...]] = []

    def status(ok: bool) -> str:
        return "met" if ok else "**missed**"

    if perf is None:
        out.append(("1-3", "GPU goals", "", "not measured: python benchmarks/bench_performance.py", "", "", ""))
    else:
        fast = f"{perf['fast']['compile']} {perf['fast']['precision']}"
        t, te = _case(perf, "teacher click (", fast), _case(perf, "teacher click (", "eager fp32")
        if t:
            s = t["seconds_256"]
            spread = _spread(t.get("all_s"), ".2f", 511 / t["nfe"])
            out.append(("1", "teacher click: 256-step FID sample + 37 l2 heatmaps every step, batch 1",
                        f"<= {TEACHER_CLICK_S:g} s", f"{s:.2f} s ({fast}{spread}; start-up: first click "
                        f"{t['first_click_s']:.1f} s)", f"{ANCHOR_TEACHER_CLICK_S / s:.1f}x faster than 21.5 s",
                        f"{te['seconds_256'] / s:.1f}x ({te['seconds_256']:.1f} s, scaled from {te['steps']} steps)"
                        if te else "", status(s <= TEACHER_CLICK_S)))
        rec, plain = _case(perf, "dmd2 batch", fast, True), _case(perf, "dmd2 batch", fast, False)
        eager_rec = _case(perf, "dmd2 batch", "eager fp32", True)
        if rec:
            ips = rec["images_per_s"]
            out.append(("2a", "DMD2 one step, batch 256, bottleneck recorded", f">= {DMD2_IMG_S:,.0f} img/s",
                        f"{ips:,.0f} img/s{_spread(rec.get('all_s'), ',.0f', invert=rec['batch'])}",
                        f"{ips / ANCHOR_DMD2_FP32:.2f}x 543 (fp32), "
                        f"{ips / ANCHOR_DMD2_FP16:.2f}x 744 (fp16)",
                        f"{ips / eager_rec['images_per_s']:.2f}x ({eager_rec['images_per_s']:.0f} img/s)"
                        if eager_rec else "", status(ips >= DMD2_IMG_S)))
        e, ee = _case(perf, "edm fid batch", fast), _case(perf, "edm fid batch", "eager fp32")
        if e:
            s = e["seconds_per_image_256"]
            out.append(("2b", "EDM FID preset (511 evaluations), batch 64, bottleneck recorded",
                        f"<= {EDM_S_PER_IMG:g} s/img", f"{s:.3f} s/img", f"{ANCHOR_EDM_S_PER_IMG / s:.2f}x faster "
                        "than 0.735 s", f"{ee['seconds_per_image_256'] / s:.2f}x ({ee['seconds_per_image_256']:.3f} "
                        f"s/img, scaled from {perf['baseline_steps']} steps)" if ee else "",
                        status(s <= EDM_S_PER_IMG)))
        else:
            out.append(("2b", "EDM FID preset, batch 64, bottleneck recorded", f"<= {EDM_S_PER_IMG:g} s/img",
                        "not measured: python benchmarks/bench_performance.py", "", "", ""))
        if rec and plain:
            over = rec["seconds_per_batch"] / plain["seconds_per_batch"] - 1
            out.append(("2c", "recording overhead (DMD2 batch 256, bottleneck)", f"<= {RECORDING_OVERHEAD:.0%}",
                        f"{over:+.1%}", "", "", status(over <= RECORDING_OVERHEAD)))
        ed = _case(perf, "teacher click, edited", fast)
        if ed:
            both = f"{ed['edited_s']:.2f} s{_spread(ed.get('edited_all_s'), '.2f')} vs {ed['unedited_s']:.2f} s" \
                f"{_spread(ed.get('unedited_all_s'), '.2f')}"
            out.append(("3a", "edited teacher click (half the bottleneck mean-ablated, every evaluation) vs "
                        "unedited", f"<= {EDITED_CLICK_RATIO:g}x", f"{ed['ratio']:.2f}x ({both})", "", "",
                        status(ed["ratio"] <= EDITED_CLICK_RATIO)))
    gpu = (causal or {}).get("gpu")
    if gpu is None or gpu.get("timing") != "cuda events":
        out.append(("3b", "edited student regeneration + 37 heatmaps, GPU time", "< 20 ms",
                    "not measured: python benchmarks/bench_causal.py (on a GPU)", "", "", ""))
    else:
        g = gpu["edited_student_click_s"]
        out.append(("3b", "edited student regeneration + 37 heatmaps, GPU time", f"< {EDITED_STUDENT_S * 1e3:g} ms",
                    f"{g * 1e3:.1f} ms{_spread(gpu.get('edited_student_click_all_s'), '.1f', 1e3)} ({gpu['timing']})",
                    "", "", status(g < EDITED_STUDENT_S)))
        out.append(("c", f"patch sweep, {gpu['sweep_layers']} layers x {gpu['sweep_seeds']} seeds (causal issue)",
                    f"< {SWEEP_S:g} s", f"{gpu['sweep_s']:.1f} s" + (f" (the first at this batch size, compiling: "
                                                                      f"{gpu['first_sweep_s']:.1f} s)"
                                                                      if "first_sweep_s" in gpu else ""),
                    "", "", status(gpu["sweep_s"] < SWEEP_S)))
    if perf is not None:
        st, se = _case(perf, "student click", fast), _case(perf, "student click", "eager fp32")
        if st and st["gpu_s"] is not None:
            g = st["gpu_s"]
            out.append(("p", "student click: one-step image + 37 heatmaps, GPU time (first performance issue)",
                        f"<= {STUDENT_CLICK_S * 1e3:g} ms",
                        f"{g * 1e3:.1f} ms{_spread(st.get('gpu_all_s'), '.1f', 1e3)} (app first_look wall "
                        f"{st['first_look_wall_s'] * 1e3:.1f} ms)", f"{ANCHOR_STUDENT_S / g:.1f}x faster than 34 ms "
                        "(image only)", f"{se['gpu_s'] / g:.1f}x ({se['gpu_s'] * 1e3:.1f} ms)" if se else "",
                        status(g <= STUDENT_CLICK_S)))
        fid = perf.get("fidelity")
        if fid:
            bound = 1e-5 if perf["fast"]["precision"] == "fp32" else 1e-2
            out.append(("-", f"fast path vs eager fp32, relative error ({perf['fast']['precision']})",
                        f"near {bound:g}", f"denoised {fid['denoised']:.1e}, heatmaps <= {fid['heatmaps_max']:.1e}",
                        "", "", status(fid["denoised"] <= 1.5 * bound)))
    if umap is None:
        out.append(("u", "UMAP 100k rows (PCA to 50 first)", "recorded",
                    "not measured: python benchmarks/bench_umap.py", "", "", ""))
    else:
        total = sum(umap["seconds"].values())
        backend = umap.get("backend", "umap-learn")
        out.append(("u", f"UMAP 100k rows (PCA to 50 first), {backend}, {umap['machine']['cpus']} CPUs", "recorded",
                    f"{total:.0f} s, peak {umap['peak_rss_gib']:.2f} GiB", "", "", "recorded"))
    if browser is None:
        out.append(("b", "browser: 100k scatter load, click to panels", "recorded",
                    "not measured: pytest tests/browser", "", "", ""))
    else:
        load = browser.get("scatter_100k_load_to_interactive_s")
        click = browser.get("click_to_panels_s_100k_points")
        out.append(("b", "browser: 100k-point scatter, load to interactive / click to panels", "recorded",
                    f"{load} s / {click} s", "", "", "recorded"))
    return out


def _kinds_lines(kinds: dict[str, float], per: str) -> list[str]:
    total = sum(kinds.values()) or 1.0
    return [f"  - {kind}: {seconds * 1e3:.2f} ms {per} ({seconds / total:.0%})" for kind, seconds in kinds.items()]


def where_time_goes(table: list[tuple[str, ...]], profile: dict | None) -> list[str]:
    """For each missed GPU goal, the profile that shows where its time goes: the click's kernel kinds for goal 1
    and the edited click, the large-batch forward's for the extraction goals; or the command that profiles."""
    missed = {r[0] for r in table if r[-1] == "**missed**"}
    lines: list[str] = []
    command = "python benchmarks/profile_body.py --configs full:bf16:1 full:bf16:256 --profile full:bf16"
    if missed & {"1", "3a"}:
        click = next((c for c in (profile or {}).get("profiles", []) if c.get("gpu_kinds_s")), None)
        if click is None:
            lines.append(f"Goal 1 missed; not profiled: {command}")
        else:
            lines.append(f"Goal 1 missed: the profiled click ({click['mode']} {click['precision']}, {click['nfe']} "
                         f"evaluations) keeps the GPU busy {click['gpu_per_nfe_ms']:.2f} ms of "
                         f"{click['wall_per_nfe_ms']:.2f} ms wall per evaluation; by kernel kind:")
            lines += _kinds_lines({k: v / click["nfe"] for k, v in click["gpu_kinds_s"].items()}, "per evaluation")
    if missed & {"2a", "2b", "2c"}:
        big = max((c for c in (profile or {}).get("body", []) if c.get("gpu_kinds_per_forward_s")),
                  key=lambda c: int(c["config"].rsplit(":", 1)[1]), default=None)
        if big is None:
            lines.append(f"Goals 2a-2c: a goal is missed; not profiled: {command}")
        else:
            batch = int(big["config"].rsplit(":", 1)[1])
            lines.append(f"Goals 2a-2c: a goal is missed; one forward at batch {batch} ({big['config']}) takes "
                         f"{big['seconds'] * 1e3:.1f} ms ({big['images_per_s']:,.0f} img/s); by kernel kind:")
            lines += _kinds_lines(big["gpu_kinds_per_forward_s"], "per forward")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--performance", type=Path, default=OUT / "performance.json")
    p.add_argument("--umap", type=Path, default=OUT / "bench_umap.json")
    p.add_argument("--browser", type=Path, default=OUT / "app_browser.json")
    p.add_argument("--causal", type=Path, default=OUT / "causal.json")
    p.add_argument("--profile", type=Path, default=OUT / "profile_body.json")
    args = p.parse_args(argv)
    perf = _load(args.performance)
    header = ("#", "goal", "target", "measured", "vs the reference anchors", "vs our eager fp32", "status")
    body = rows(perf, _load(args.umap), _load(args.browser), _load(args.causal))
    table = [header, ("---",) * len(header), *body]
    if perf is not None:
        print(f"GPU: {perf['device_name']}, torch {perf['torch']}, fast path: compile {perf['fast']['compile']}, "
              f"precision {perf['fast']['precision']} ({perf['created']})"
              + ("" if perf.get("complete", True) else "; a partial run: the cases it reached"))
    for r in table:
        print("| " + " | ".join(r) + " |")
    for line in where_time_goes(body, _load(args.profile)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
