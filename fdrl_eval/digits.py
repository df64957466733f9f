"""The judge of 8x8 digit samples (scikit-learn's `load_digits`, the `digits` preset), against
the preset's held-out split: independent of the estimator (issue 18).

Fréchet distance in the hidden features of a scikit-learn MLP digit classifier trained on
the training split (32 ReLU units: small enough that a 180-image reference has little
bias); RBF MMD² in pixel space (bandwidth: the median pairwise distance of the held-out
split); the 1-Wasserstein distance of the pixel values; the smallest class share the
classifier assigns. Used by `fdrl-eval --against digits`, fdrl-train's quality watch,
scripts/preset_quality.py and scripts/build_bundled.py: one judge, one set of numbers.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


class DigitsJudge:
    def __init__(self, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray):
        from scipy.spatial.distance import pdist
        from sklearn.neural_network import MLPClassifier
        self.clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=0).fit(train_x, train_y)
        self.train_x, self.test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
        self.test_stats = self._stats(self.features(self.test_x))
        self.width = float(np.median(pdist(self.test_x)))

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.clf.coefs_[0] + self.clf.intercepts_[0], 0)

    @staticmethod
    def _stats(f):
        from .metrics import feature_stats
        return feature_stats(f)

    def __call__(self, x: np.ndarray) -> dict:
        """Measures of samples x [N, 64] or [N, 1, 8, 8] in [-1, 1]."""
        import torch
        from scipy.stats import wasserstein_distance

        from .metrics import frechet_distance, mmd2_rbf
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        shares = np.bincount(self.clf.predict(x), minlength=10) / len(x)
        return {"digit_fd": frechet_distance(*self._stats(self.features(x)), *self.test_stats),
                "mmd2": mmd2_rbf(torch.from_numpy(x), torch.from_numpy(self.test_x), self.width),
                "pixel_w1": float(wasserstein_distance(x.ravel(), self.test_x.ravel())),
                "pixel_mean": float(x.mean()), "pixel_std": float(x.std()), "min_class": float(shares.min())}


@lru_cache(maxsize=1)
def digits_judge() -> DigitsJudge:
    """The judge on the `digits` preset's own split (fitted once per process, a second or two)."""
    from fdrl_train.config import load_config
    from fdrl_train.data import load_dataset
    data = load_dataset(load_config("digits"))
    flat = lambda t: t.reshape(len(t), -1).numpy().astype(np.float64)  # noqa: E731
    return DigitsJudge(flat(data.train_images), data.train_labels.numpy(), flat(data.test_images))


def digits_report(x: np.ndarray) -> dict:
    from .samples import EvalError
    if tuple(x.shape[1:]) not in ((1, 8, 8), (64,)):
        raise EvalError(f"--against digits takes 8x8 grey images; the samples have shape {tuple(x.shape[1:])}")
    judge = digits_judge()
    return {"reference": f"digits held-out split ({len(judge.test_x)} images)", "n": len(x),
            "kernel_width": judge.width, **judge(x)}
