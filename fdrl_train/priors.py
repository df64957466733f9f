"""Priors q': the data-dependent Gaussian (DDP), uniform (UP) and a plain normal (toy).

A prior is stored as plain tensors and strings (`state()`), so checkpoints load with
`torch.load(weights_only=True)` and the export can copy it into an artifact.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

DDP_JITTER = 1e-4  # Sigma_D + 1e-4 I, as in the paper.


class Prior:
    kind: str
    clamp: bool  # clamp draws to [-1, 1] (image priors)

    def __init__(self, shape: tuple[int, ...], clamp: bool):
        self.shape = tuple(shape)
        self.clamp = clamp

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        x = self._draw(n, generator).reshape(n, *self.shape)
        return x.clamp(-1, 1) if self.clamp else x

    def state(self) -> dict:
        return {"kind": self.kind, "shape": list(self.shape), "clamp": self.clamp, **self._tensors()}

    def _tensors(self) -> dict:
        return {}


class NormalPrior(Prior):
    kind = "normal"

    def __init__(self, shape, std: float = 1.0, clamp: bool = False):
        super().__init__(shape, clamp)
        self.std = float(std)

    def _draw(self, n, g):
        return self.std * torch.randn(n, math.prod(self.shape), generator=g)

    def _tensors(self):
        return {"std": self.std}


class UniformPrior(Prior):
    kind = "up"

    def __init__(self, shape, clamp: bool = True):
        super().__init__(shape, clamp)

    def _draw(self, n, g):
        return torch.rand(n, math.prod(self.shape), generator=g) * 2 - 1


class GaussianPrior(Prior):
    """N(mean, factor factor^T): `factor` is a Cholesky factor [d, d] or a low-rank one [d, k]."""
    kind = "ddp"

    def __init__(self, shape, mean: torch.Tensor, factor: torch.Tensor, clamp: bool = True):
        super().__init__(shape, clamp)
        self.mean = mean.float()
        self.factor = factor.float()

    def _draw(self, n, g):
        z = torch.randn(n, self.factor.shape[1], generator=g)
        return self.mean + z @ self.factor.T

    def _tensors(self):
        return {"mean": self.mean, "factor": self.factor}

    @classmethod
    def fit(cls, batches: Iterable[torch.Tensor], shape, clamp: bool = True) -> "GaussianPrior":
        """Mean and covariance of the data in one streaming pass (float64 sums)."""
        d = math.prod(shape)
        n, s1, s2 = 0, torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
        for b in batches:
            b = b.reshape(b.shape[0], d).double()
            n += b.shape[0]
            s1 += b.sum(0)
            s2 += b.T @ b
        if n < 2:
            raise ValueError("fitting a DDP prior needs at least 2 samples")
        mean = s1 / n
        cov = (s2 - n * torch.outer(mean, mean)) / (n - 1)
        cov = 0.5 * (cov + cov.T) + DDP_JITTER * torch.eye(d, dtype=torch.float64)
        return cls(shape, mean, torch.linalg.cholesky(cov), clamp)


def prior_from_state(state: dict) -> Prior:
    kind, shape, clamp = state["kind"], tuple(state["shape"]), bool(state["clamp"])
    if kind == "normal":
        return NormalPrior(shape, state["std"], clamp)
    if kind == "up":
        return UniformPrior(shape, clamp)
    if kind == "ddp":
        return GaussianPrior(shape, state["mean"], state["factor"], clamp)
    raise ValueError(f"unknown prior kind '{kind}'")
