"""Look inside distilled diffusion models: EDM ImageNet-64 teacher vs DMD2 one-step student."""

__version__ = "0.1.0"
