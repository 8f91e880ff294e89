"""How alike two sets of activations or samples are, with what noise would score beside every number.

- `cka`: debiased linear CKA with samples as rows, layer against layer (`cka_matrix`), with
  half-sample intervals and a shuffled-pair null; `sigma_alignment` (which teacher step each student
  layer resembles).
- `teacher_student`: the data behind the app's comparisons (`compare_run`, `compare_traced`,
  `sigma_alignment_run`, `sample_report`), from an embed run's stores or a fresh trace.
- `compare`: one sample's per-layer scores (cosine, centred cosine, spatial CKA, difference maps)
  and their baselines.
- `runs`: an embed run's rows and stores, read without pandas. `cli`: `python -m visualizer compare`.
"""
