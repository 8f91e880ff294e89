"""A small digit classifier for judging the demo models: on-class rates, and the feature space of the
demo's probe (`visualizer.metrics.probe.digit_probe`) where Frechet distances and coverage are measured.

Trained on the coloured training digits with random colours and poses, so it reads the shape
and ignores the colour. Its penultimate layer (96 features after global average pooling) is the
feature space of the Frechet distance. About 160 k parameters (0.6 MB as float32). The weights ship
as ``visualizer/assets/digits/digit_classifier.pt`` (a state dict); the training code is in the
repository's ``tools/demo/training.py`` (``train_classifier``, ``save_classifier``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from visualizer.checkpoints.torch_files import load_torch_file
from visualizer.digits.dataset import ASSETS, NUM_CLASSES

CLASSIFIER_FILE = ASSETS / "digit_classifier.pt"


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class DigitClassifier(nn.Module):
    """Three 2-conv stages (24, 48, 96 channels) at 32, 16 and 8 pixels, global average pool, linear head."""

    def __init__(self, widths: tuple[int, int, int] = (24, 48, 96), num_classes: int = NUM_CLASSES):
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            _conv(3, a), _conv(a, a), nn.AvgPool2d(2),
            _conv(a, b), _conv(b, b), nn.AvgPool2d(2),
            _conv(b, c), _conv(c, c),
        )
        self.head = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, 96] of images in [-1, 1]."""
        return self.body(x.float()).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_classifier(path: str | Path = CLASSIFIER_FILE, device: str | torch.device = "cpu") -> DigitClassifier:
    net = DigitClassifier()
    net.load_state_dict(load_torch_file(path))   # checked before torch.load reads it
    return net.to(device).eval()


@torch.no_grad()
def predict(net: DigitClassifier, images: torch.Tensor, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes [N] and penultimate features [N, 96] (float32, on the classifier's device)."""
    device = next(net.parameters()).device
    classes, feats = [], []
    for chunk in images.split(batch):
        f = net.features(chunk.to(device))
        feats.append(f)
        classes.append(net.head(f).argmax(1))
    return torch.cat(classes), torch.cat(feats)
