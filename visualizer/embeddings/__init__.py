"""Samples -> activations -> PCA/UMAP -> embeddings CSV with a JSON sidecar, and its validation."""
