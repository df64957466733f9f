"""The export check: an exported graph against float64 autograd, per sample.

fp32 PyTorch is itself no reference on large activations (shared/DESIGN.md §5), so the
reference is autograd of f'(D(x)) in float64 through the plain model, computed
independently of the traced graph. Criterion: per-sample relative error
||out - ref|| / ||ref|| with median <= 1e-5 and at most 2% of samples above 1e-4 (a
pre-activation within rounding of 0 can take the other LeakyReLU slope).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call

from fdrl_train.losses import get_pairing
from fdrl_train.priors import prior_from_state

from .graph import Estimator

MEDIAN_LIMIT = 1e-5
OUTLIER_LEVEL = 1e-4
OUTLIER_FRACTION = 0.02


@dataclass
class CheckResult:
    n: int
    median: float
    outlier_fraction: float
    worst: float

    @property
    def passed(self) -> bool:
        return self.median <= MEDIAN_LIMIT and self.outlier_fraction <= OUTLIER_FRACTION

    def describe(self) -> str:
        return (f"{self.n} samples: median relative error {self.median:.2e} (limit {MEDIAN_LIMIT:.0e}), "
                f"{100 * self.outlier_fraction:.1f}% above {OUTLIER_LEVEL:.0e} (limit {100 * OUTLIER_FRACTION:.0f}%), "
                f"worst {self.worst:.2e}")


def reference_drift(est: Estimator, x: torch.Tensor) -> np.ndarray:
    """grad_x f'(D(x)) by float64 autograd."""
    _, divergence = get_pairing(est.cfg["loss"], est.cfg["divergence"])
    params = {k: v.double() for k, v in est.params.items()}
    x = x.double().requires_grad_(True)
    out = functional_call(est.twin(), params, (x,))
    (g,) = torch.autograd.grad(divergence.f_prime(out).sum(), x)
    return g.numpy()


def check_inputs(est: Estimator, prior_state: dict | None, sizes=(32, 33), seed: int = 1234) -> list[torch.Tensor]:
    """Prior draws for the first batch, random inputs for the second (odd) one."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i, b in enumerate(sizes):
        if i == 0 and prior_state is not None and prior_state.get("kind") in ("normal", "up", "ddp"):
            x = prior_from_state(prior_state).sample(b, g)
        elif len(est.sample_shape) == 3:
            x = torch.rand((b,) + est.sample_shape, generator=g) * 2 - 1
        else:
            x = torch.randn((b,) + est.sample_shape, generator=g)
        batches.append(x.float())
    return batches


def per_sample_rel_err(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    out, ref = out.reshape(out.shape[0], -1).astype(np.float64), ref.reshape(ref.shape[0], -1)
    return np.linalg.norm(out - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-30)


def check_drift(est: Estimator, run: Callable[[np.ndarray], np.ndarray], prior_state: dict | None,
                sizes=(32, 33)) -> CheckResult:
    errs = []
    for x in check_inputs(est, prior_state, sizes):
        errs.append(per_sample_rel_err(run(x.numpy()), reference_drift(est, x)))
    e = np.concatenate(errs)
    return CheckResult(len(e), float(np.median(e)), float((e > OUTLIER_LEVEL).mean()), float(e.max()))
