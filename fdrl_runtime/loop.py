"""The sampling loop (paper Algorithm 2), written once for every backend.

For a batch of global sample ids: draw x_0 from the prior (or take given samples), run
`steps` Euler-Maruyama steps x <- x - eta * drift(x) + nu * xi_k, clamp to the value
range. A backend only evaluates drift(x) on its device (and may replay a captured
block of steps, see Backend.run_steps); noise and prior come from noise.py, keyed by
(seed, sample id, step), so results do not depend on batching or sharding.
"""
from __future__ import annotations

import numpy as np

from fdrl_core.flow import euler_maruyama

from .artifact import Artifact
from .noise import Draws
from .priors import draw_prior, prior_dim

NOISE_BLOCK = 10  # steps of noise drawn per call: amortises the draw's fixed cost


def euler_steps(drift, x, noise_block, eta: float, nu: float):
    """Apply len(noise_block) steps of the update (fdrl_core.flow); entries None when nu = 0."""
    return euler_maruyama(drift, x, len(noise_block), eta, nu, noise_block.__getitem__)


def sample_batch(backend, artifact: Artifact, ids: np.ndarray, seed: int, steps: int,
                 init: np.ndarray | None = None, labels: np.ndarray | None = None) -> np.ndarray:
    """Samples for global ids `ids` as a numpy float32 array [B, *shape]; `labels` [B] are
    the classes asked for from a class-conditional artifact."""
    eta, nu = artifact.meta.eta, artifact.meta.nu
    draws: Draws = backend.draws(seed, ids)
    if init is None:
        x = draw_prior(artifact, draws, backend.xp, backend.from_numpy)
    else:
        x = backend.from_numpy(np.ascontiguousarray(init, dtype=np.float32))
    y = None if labels is None else backend.labels(np.asarray(labels, dtype=np.int64))
    d = prior_dim(artifact)
    shape = (len(ids),) + artifact.sample_shape
    done = 0
    while done < steps:
        n = min(NOISE_BLOCK, steps - done)
        xi = draws.normal_steps(done, n, d).reshape((n,) + shape) if nu else [None] * n
        x = backend.run_steps(x, xi, eta, nu, y)
        done += n
    vr = artifact.value_range
    out = backend.to_numpy(x)
    return np.clip(out, vr[0], vr[1]) if vr is not None else out
