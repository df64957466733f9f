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
ROBUST_WEIGHTS = Path(__file__).parent / "assets" / "mnist_robust_classifier.pt"
CLASSIFIER_FORMAT = "fdrl-classifier"


class DigitClassifier(nn.Module):
    """28x28 grey images in [-1, 1] -> 10 logits; `features` is the 128-d penultimate layer."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, n_classes)

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


# --- classifiers for composition (class-conditional flows) ---------------------------------
# Built from the paper's ResNets so their input gradient exports like the estimator's.

def build_classifier(arch: str, sample_shape, n_classes: int) -> nn.Module:
    from .models import RESNETS, ResNet
    if arch not in RESNETS:
        raise ValueError(f"classifier architecture '{arch}': use one of {', '.join(RESNETS)}")
    return ResNet(sample_shape[0], n_out=n_classes, **RESNETS[arch])


def classifier_checkpoint(model: nn.Module, arch: str, sample_shape, n_classes: int, **info) -> dict:
    return {"format": CLASSIFIER_FORMAT, "arch": arch, "sample_shape": list(sample_shape), "n_classes": int(n_classes),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **info}


def load_classifier_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """A classifier saved by classifier_checkpoint: (model in eval mode, the dict)."""
    from .checkpoint import CheckpointError, read_torch_file
    ck = read_torch_file(path, "classifier")
    if not isinstance(ck, dict) or ck.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path} is not an fdrl classifier (train one with scripts/train_robust_classifier.py)")
    model = build_classifier(ck["arch"], tuple(ck["sample_shape"]), ck["n_classes"])
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"classifier {path}: weights do not fit '{ck['arch']}': {str(e).splitlines()[0][:160]}") from None
    return model.eval(), ck
