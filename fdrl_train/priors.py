"""Priors q': the data-dependent Gaussian (DDP), uniform (UP) and a plain normal (toy).

What a prior is (its kinds, stored forms and draw) is fdrl_core.prior.PriorSpec; this
module adds what needs torch: drawing with a torch.Generator, fitting the DDP prior to
data, and the translation prior that draws from a dataset.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from fdrl_core.prior import PriorError, PriorSpec

DDP_JITTER = 1e-4  # Sigma_D + 1e-4 I, as in the paper.


class Prior:
    """A PriorSpec drawn with torch: standard noise from the generator, then spec.transform."""

    def __init__(self, spec: PriorSpec):
        self.spec = spec

    kind = property(lambda self: self.spec.kind)
    shape = property(lambda self: self.spec.shape)
    clamp = property(lambda self: self.spec.clamp)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        dist, width = self.spec.noise_width()
        z = (torch.randn if dist == "normal" else torch.rand)(n, width, generator=generator)
        return self.spec.transform(z)

    def state(self) -> dict:
        return self.spec.to_state()


class NormalPrior(Prior):
    def __init__(self, shape, std: float = 1.0, clamp: bool = False):
        super().__init__(PriorSpec("normal", shape, clamp, std=float(std)))


class UniformPrior(Prior):
    def __init__(self, shape, clamp: bool = True):
        super().__init__(PriorSpec("up", shape, clamp))


class GaussianPrior(Prior):
    """N(mean, F F^T + diag(d^2)): F a Cholesky factor [d, d] (full covariance, d = None)
    or a low-rank factor [d, k] plus a diagonal std d [d] (large images: O(d k) memory)."""

    def __init__(self, shape, mean: torch.Tensor, factor: torch.Tensor, clamp: bool = True,
                 diag: torch.Tensor | None = None):
        super().__init__(PriorSpec("ddp", shape, clamp, mean=mean.float(), factor=factor.float(),
                                   diag=None if diag is None else diag.float()))

    mean = property(lambda self: self.spec.mean)
    factor = property(lambda self: self.spec.factor)
    diag = property(lambda self: self.spec.diag)

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
            raise PriorError(f"fitting a DDP prior needs at least 2 samples; the data has {n}")
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
            raise PriorError(f"fitting a DDP prior needs at least 2 samples; the data has {n}")
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

    def __init__(self, dataset, source: str):
        super().__init__(PriorSpec("input", dataset.sample_shape, True, source=source))
        self.dataset = dataset

    def sample(self, n, g):
        return self.dataset.sample(n, g).reshape(n, *self.shape).clamp(-1, 1)


def prior_from_state(state: dict) -> Prior:
    """The checkpoint's prior record as a drawable prior (a translation prior is rebuilt
    from the config's source domain instead: make_prior)."""
    spec = PriorSpec.from_state(state)
    if not spec.drawable:
        raise PriorError("a translation prior is rebuilt from the config's source domain (make_prior)")
    return Prior(spec)
