"""Networks and samplers: torch only, no app, dataframe or UMAP code below this line."""

from visualizer.models.config import IMAGENET64_KWARGS, infer_kwargs
from visualizer.models.networks import DhariwalUNet, EDMPrecond, UNetBlock

__all__ = ["IMAGENET64_KWARGS", "DhariwalUNet", "EDMPrecond", "UNetBlock", "infer_kwargs"]
