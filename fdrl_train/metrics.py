"""Sample-quality numbers for point data: kernel MMD and mode coverage."""
from __future__ import annotations

import torch


def mmd2_rbf(x: torch.Tensor, y: torch.Tensor, width: float = 0.1) -> float:
    """Unbiased squared MMD with k(a, b) = exp(-|a - b|^2 / (2 width^2))."""
    x, y = x.double().reshape(len(x), -1), y.double().reshape(len(y), -1)
    gamma = 1.0 / (2 * width * width)

    def k(a, b):
        return torch.exp(-gamma * torch.cdist(a, b).pow(2))

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mode_coverage(x: torch.Tensor, centres: torch.Tensor, radius: float, min_count: int = 1) -> int:
    """How many centres have at least `min_count` samples within `radius`."""
    d = torch.cdist(x.double().reshape(len(x), -1), centres.double())
    near = d.min(1)
    counts = torch.bincount(near.indices[near.values < radius], minlength=len(centres))
    return int((counts >= min_count).sum())
