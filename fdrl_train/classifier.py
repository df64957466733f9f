"""A small digit classifier trained by this project on the MNIST-5k training split.

Used to measure samples (confidence, label spread, a Fréchet distance on its features);
its weights ship in fdrl_train/assets (scripts/train_digit_classifier.py makes them).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = Path(__file__).parent / "assets" / "mnist_classifier.pt"


class DigitClassifier(nn.Module):
    """28x28 grey images in [-1, 1] -> 10 logits; `features` is the 128-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))


def load_digit_classifier(path: str | Path = WEIGHTS) -> DigitClassifier:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"digit classifier weights {path} are missing: run scripts/train_digit_classifier.py")
    model = DigitClassifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


@torch.no_grad()
def predict(model: DigitClassifier, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Class probabilities [N, 10] for images [N, 1, 28, 28] in [-1, 1]."""
    return torch.cat([F.softmax(model(x[i:i + batch].float()), 1) for i in range(0, len(x), batch)])
