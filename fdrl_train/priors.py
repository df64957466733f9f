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
    """N(mean, F F^T + diag(d^2)): F a Cholesky factor [d, d] (full covariance, d = None)
    or a low-rank factor [d, k] plus a diagonal std d [d] (large images: O(d k) memory)."""
    kind = "ddp"

    def __init__(self, shape, mean: torch.Tensor, factor: torch.Tensor, clamp: bool = True,
                 diag: torch.Tensor | None = None):
        super().__init__(shape, clamp)
        self.mean = mean.float()
        self.factor = factor.float()
        self.diag = None if diag is None else diag.float()

    def _draw(self, n, g):
        k = self.factor.shape[1]
        z = torch.randn(n, k + (0 if self.diag is None else self.mean.numel()), generator=g)
        x = self.mean + z[:, :k] @ self.factor.T
        return x if self.diag is None else x + z[:, k:] * self.diag

    def _tensors(self):
        out = {"mean": self.mean, "factor": self.factor}
        if self.diag is not None:
            out["diag"] = self.diag
        return out

    @classmethod
    def fit(cls, batches: Iterable[torch.Tensor], shape, clamp: bool = True, rank: int = 0) -> "GaussianPrior":
        """One streaming pass over the data. rank 0: the full covariance (float64 sums,
        O(d^2) memory); rank k: top-k components plus the diagonal rest (O(d k))."""
        if rank:
            return cls._fit_low_rank(batches, shape, clamp, rank)
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

    @classmethod
    def _fit_low_rank(cls, batches, shape, clamp, rank):
        """Frequent Directions (Liberty 2013) on the raw rows sketches X^T X in 2k rows; the
        mean and per-pixel second moments are summed exactly. Then the top k components of
        X^T X / n - mean mean^T within span(sketch, mean), and the diagonal remainder."""
        d, ell = math.prod(shape), 2 * rank
        n, s1, sq = 0, torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
        sketch = torch.zeros(0, d, dtype=torch.float64)
        for b in batches:
            b = b.reshape(b.shape[0], d).double()
            n += b.shape[0]
            s1 += b.sum(0)
            sq += (b * b).sum(0)
            sketch = torch.cat([sketch, b])
            if sketch.shape[0] >= 2 * ell:
                sketch = _shrink(sketch, ell)
        if n < 2:
            raise ValueError("fitting a DDP prior needs at least 2 samples")
        sketch = _shrink(sketch, ell) if sketch.shape[0] > ell else sketch
        mean = s1 / n
        q, _ = torch.linalg.qr(torch.cat([sketch, mean[None]]).T)  # [d, <= ell + 1]
        proj = sketch @ q
        small = proj.T @ proj / n - torch.outer(mean @ q, mean @ q)
        evals, evecs = torch.linalg.eigh(0.5 * (small + small.T))
        top = evals.argsort(descending=True)[:rank]
        lam = evals[top].clamp_min(0) * n / (n - 1)
        u = q @ evecs[:, top]
        var = (sq / n - mean * mean) * n / (n - 1)
        rest = (var - (u * u) @ lam).clamp_min(0) + DDP_JITTER
        return cls(shape, mean, u * lam.sqrt(), clamp, diag=rest.sqrt())


def _shrink(rows: torch.Tensor, ell: int) -> torch.Tensor:
    """Frequent Directions' shrink: keep ell rows, subtract the ell-th squared singular value."""
    _, s, vh = torch.linalg.svd(rows, full_matrices=False)
    s2 = (s * s - s[min(ell, len(s)) - 1] ** 2).clamp_min(0)
    return (s2.sqrt()[:ell, None] * vh[:ell])


class DomainPrior(Prior):
    """Unpaired translation: q' is the source domain's images (the paper's I2I setting).

    Stored as kind "input": the exported artifact samples nothing and needs --init."""
    kind = "input"

    def __init__(self, dataset, source: str):
        super().__init__(dataset.sample_shape, clamp=True)
        self.dataset, self.source = dataset, source

    def _draw(self, n, g):
        return self.dataset.sample(n, g).reshape(n, -1)

    def _tensors(self):
        return {"source": self.source}


def prior_from_state(state: dict) -> Prior:
    kind, shape, clamp = state["kind"], tuple(state["shape"]), bool(state["clamp"])
    if kind == "normal":
        return NormalPrior(shape, state["std"], clamp)
    if kind == "up":
        return UniformPrior(shape, clamp)
    if kind == "ddp":
        return GaussianPrior(shape, state["mean"], state["factor"], clamp, state.get("diag"))
    if kind == "input":
        raise ValueError("a translation prior is rebuilt from the config's source domain (make_prior)")
    raise ValueError(f"unknown prior kind '{kind}'")
