"""What the golden file records (recorded on main before the trace API; the runner now calls the same public
functions through their new homes)."""

from __future__ import annotations

import numpy as np
import torch


def golden_runs(teacher, student, layers) -> dict:
    from visualizer.embeddings.extract import record_batch
    from visualizer.inspection import Inspector, ModelSlot, Request
    from visualizer.trace.capture import capture

    out = {}
    seeds, classes = [0, 1], [3, 7]
    # Samplers with every evaluation's full activations.
    with capture(teacher.net, layers, keep="full") as cap:
        r = teacher.sample(seeds=seeds, class_label=classes, preset="fid", num_steps=4)
    out["teacher.denoised"], out["teacher.images"] = r.denoised, torch.from_numpy(r.images)
    for n in layers:
        out[f"teacher.full.{n}"] = cap.stacked(n)
    out["teacher.sigmas"] = torch.tensor(cap.sigmas, dtype=torch.float64)
    with capture(student.net, layers, reduce="l2") as cap:
        r = student.sample(seeds=seeds, class_label=classes, num_steps=3)
    out["student3.denoised"] = r.denoised
    for n in layers:
        out[f"student3.l2.{n}"] = cap.stacked(n)
    r = student.sample(seeds=seeds, class_label=classes)
    out["student.images"] = torch.from_numpy(r.images)
    # Embedding batches: pooled rows at the first and last sampler steps.
    rec = record_batch(teacher, seeds, classes, {"encoder_bottleneck": "none", "dec.16x16_block1": "avg4"}, [0, 3],
                       {"preset": "deterministic", "num_steps": 4})
    for (n, s), v in rec.features.items():
        out[f"embed.teacher.{n}.{s}"] = torch.from_numpy(v.astype(np.float32))
    out["embed.teacher.images"] = torch.from_numpy(rec.images)
    rec = record_batch(student, seeds, None, {"encoder_bottleneck": "mean"}, [0], {})
    rows = rec.features[("encoder_bottleneck", 0)]
    out["embed.student.encoder_bottleneck.0"] = torch.from_numpy(rows.astype(np.float32))
    # The app's engine: first look and the teacher's trajectory.
    ins = Inspector([ModelSlot("teacher", teacher, {"preset": "fid", "num_steps": 4}), ModelSlot("student", student)])
    first, trajs = ins.regenerate(Request.make(5, 2, layers[:3], "l2"))
    for key, view in first.views.items():
        out[f"first.{key}.image"] = torch.from_numpy(view.image)
        for n, m in view.maps.items():
            out[f"first.{key}.{n}"] = torch.from_numpy(m.astype(np.float32))
    out["first.student.final"] = torch.from_numpy(first.finals["student"])
    out["first.similarity"] = torch.tensor([[v["cosine"], v["cka"]] for v in first.similarity.values()],
                                           dtype=torch.float64)
    t = trajs["teacher"]
    out["traj.final"] = torch.from_numpy(t.final)
    out["traj.sigmas"] = torch.tensor(t.sigmas, dtype=torch.float64)
    out["traj.images"] = torch.from_numpy(np.stack([s.image for s in t.steps]))
    for n in layers[:3]:
        out[f"traj.{n}"] = torch.from_numpy(np.stack([s.maps[n] for s in t.steps]).astype(np.float32))
    return out
