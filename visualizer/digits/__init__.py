"""Coloured 32x32 digits: the dataset the shipped demo pair learned, and the classifier that judges samples.

Run-time code only (loading, rendering, classifying, Frechet distances); the files live in
`visualizer/assets/digits/`. The training and evaluation code is in the repository's `tools/demo/`.
"""
