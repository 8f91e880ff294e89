"""The README's teacher-vs-student figures from `python -m visualizer compare` outputs: Markdown tables, and PNGs
when plotly can write images (kaleido installed).

    python -m visualizer compare --layers all --sigma-alignment          # writes data/compare/demo/
    python tools/compare_report.py data/compare/demo/matrix-step0.json data/compare/demo/sigma-alignment.json \\
        [--png-dir docs/demo]

Prints the Markdown (matched layers with intervals and nulls, the whole matrix, the sigma-alignment
map and its ridge). With --png-dir and kaleido importable it also writes compare_matrix.png and
sigma_alignment.png there; without kaleido it says so and writes only the tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path


def _f(v, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _short(layer: str) -> str:
    return (layer.replace("encoder_block_", "e").replace("decoder_block_", "d").replace("encoder_bottleneck", "bn")
            .replace("midblock", "mid"))


def matrix_tables(m: dict) -> str:
    t, s, src = m["teacher"], m["student"], m["source"]
    where = "the run's pooled stores" if src["kind"] == "stores" else "a fresh trace at full resolution"
    out = [f"Debiased linear CKA over {m['n']} samples (rows from {where}); teacher step {t['step']} "
           f"(sigma {t['sigma']:g}) against the student (sigma {s['sigma']:g}); "
           f"{int(m['confidence'] * 100)}% intervals from {m['method']['resamples']} half-sample resamples, "
           f"null from {m['method']['null_draws']} shuffled pairings.", "",
           "| layer | CKA | interval | shuffled-pair null | per class (min - max) |", "| --- | --- | --- | --- | --- |"]
    per_class = m.get("per_class", {})
    for cell in m["diagonal"]:
        i = m["rows"].index(cell["row"])
        j = m["cols"].index(cell["col"])
        classes = [c["estimate"][i][j] for c in per_class.values() if c["estimate"][i][j] is not None]
        spread = f"{min(classes):.2f} - {max(classes):.2f}" if classes else "-"
        out.append(f"| {cell['row']} | {_f(cell['cka'])} | [{_f(cell['lo'])}, {_f(cell['hi'])}] | "
                   f"[{_f(cell['null_lo'], '.3f')}, {_f(cell['null_hi'], '.3f')}] | {spread} |")
    out += ["", "The whole matrix (rows: teacher layers, columns: student layers; e = encoder_block, "
                "d = decoder_block, bn = encoder_bottleneck, mid = midblock):", "",
            "| | " + " | ".join(_short(c) for c in m["cols"]) + " |", "|---" * (len(m["cols"]) + 1) + "|"]
    for name, row in zip(m["rows"], m["estimate"], strict=True):
        out.append(f"| **{_short(name)}** | " + " | ".join(_f(v) for v in row) + " |")
    return "\n".join(out)


def alignment_tables(a: dict) -> str:
    out = [f"Sigma alignment over {a['n']} samples: each student layer against the teacher's same layer at every "
           f"step; the peak (ridge) with the {int(a['confidence'] * 100)}% range of peak sigmas over "
           f"{a['method']['resamples']} half-sample resamples, and the share of resamples that peak there.", "",
           "| layer | peak step (sigma) | peak sigma range | CKA at peak | CKA at step 0 | share |",
           "| --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(a["ridge"]):
        out.append(f"| {r['layer']} | {r['step']} ({_f(r['sigma'], '.3g')}) | {_f(r['sigma_lo'], '.3g')} - "
                   f"{_f(r['sigma_hi'], '.3g')} | {_f(r['cka'])} | {_f(a['estimate'][i][0])} | "
                   f"{_f(r['share'])} |")
    out += ["", "The map (rows: layers; columns: teacher steps with their sigma):", "",
            "| | " + " | ".join(f"{s} ({sig:.3g})" for s, sig in zip(a["steps"], a["sigmas"], strict=True)) + " |",
            "|---" * (len(a["steps"]) + 1) + "|"]
    for name, row, r in zip(a["layers"], a["estimate"], a["ridge"], strict=True):
        cells = [f"**{_f(v)}**" if s == r["step"] else _f(v) for s, v in zip(a["steps"], row, strict=True)]
        out.append(f"| {_short(name)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def figures(m: dict | None, a: dict | None):
    """Plotly figures of the matrix and the alignment map with its ridge (None where not given)."""
    import plotly.graph_objects as go

    out = {}
    if m is not None:
        fig = go.Figure(go.Heatmap(z=m["estimate"], x=m["cols"], y=m["rows"], zmin=-0.1, zmax=1,
                                   colorscale="Viridis", colorbar={"title": "CKA"}))
        fig.update_layout(title=f"debiased CKA, teacher step {m['teacher']['step']} vs student, n = {m['n']}",
                          xaxis_title="student layer", yaxis_title="teacher layer", width=900, height=800)
        out["compare_matrix.png"] = fig
    if a is not None:
        labels = [f"{s} ({sig:.3g})" for s, sig in zip(a["steps"], a["sigmas"], strict=True)]
        fig = go.Figure(go.Heatmap(z=a["estimate"], x=labels, y=a["layers"], zmin=-0.1, zmax=1,
                                   colorscale="Viridis", colorbar={"title": "CKA"}))
        ridge = [r for r in a["ridge"] if r["step"] is not None]
        fig.add_trace(go.Scatter(x=[labels[a["steps"].index(r["step"])] for r in ridge],
                                 y=[r["layer"] for r in ridge], mode="markers", name="ridge",
                                 marker={"color": "red", "size": 9, "symbol": "x"}))
        fig.update_layout(title=f"sigma alignment: student layer vs teacher step, n = {a['n']}",
                          xaxis_title="teacher step (sigma)", width=1000, height=800)
        out["sigma_alignment.png"] = fig
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", type=Path, help="matrix-step*.json and/or sigma-alignment.json")
    p.add_argument("--png-dir", type=Path, help="also write PNGs here when kaleido is installed")
    args = p.parse_args(argv)
    m = a = None
    for path in args.inputs:
        data = json.loads(path.read_text())
        if "ridge" in data:
            a = data
        else:
            m = data
    parts = ([matrix_tables(m)] if m else []) + ([alignment_tables(a)] if a else [])
    print("\n\n".join(parts))
    if args.png_dir:
        if importlib.util.find_spec("kaleido") is None:
            print("\n(no PNGs: kaleido is not installed; the tables above are the figures)", file=sys.stderr)
        else:
            args.png_dir.mkdir(parents=True, exist_ok=True)
            for name, fig in figures(m, a).items():
                fig.write_image(args.png_dir / name)
                print(f"wrote {args.png_dir / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
