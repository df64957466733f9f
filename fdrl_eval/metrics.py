"""Sample-quality measures: kernel MMD and mode coverage (points), Fréchet distance and KID (features)."""
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


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians (numpy arrays).

    Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2), a symmetric PSD matrix, so two
    eigendecompositions give it without a general matrix square root."""
    import numpy as np
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (inner + inner.T)), 0, None)).sum()
    fd = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    return max(fd, 0.0)  # >= 0 exactly; rounding can make identical sets come out at -1e-12


def feature_stats(features):
    """Mean and covariance (numpy, float64) of [N, D] features."""
    import numpy as np
    f = np.asarray(features, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def kernel_inception_distance(a, b, subsets: int = 10, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, mean and std over subsets of
    `subset_size` (at most 80% of the smaller set, so that the subsets differ and the std means something)."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d, m = a.shape[1], max(2, min(subset_size, int(0.8 * min(len(a), len(b)))))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))
