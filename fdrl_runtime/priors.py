"""Prior draws x_0 from an artifact's prior, per sample (see noise.py)."""
from __future__ import annotations

import numpy as np

from .artifact import Artifact, ArtifactError
from .noise import PRIOR_STEP, Draws


def prior_dim(artifact: Artifact) -> int:
    d = 1
    for s in artifact.sample_shape:
        d *= int(s)
    return d


def draw_prior(artifact: Artifact, draws: Draws, xp, as_array) -> object:
    """[B, *shape] prior samples; `as_array` moves a numpy array into the namespace xp."""
    p = artifact.meta["prior"]
    kind, d = p["kind"], prior_dim(artifact)
    b = draws.keys.shape[0]
    if kind == "normal":
        x = float(p.get("std", 1.0)) * draws.normal(PRIOR_STEP, d)
    elif kind == "up":
        x = 2.0 * draws.uniform(PRIOR_STEP, d) - 1.0
    elif kind == "ddp":
        mean, factor = artifact.prior_arrays.get("mean"), artifact.prior_arrays.get("factor")
        diag = artifact.prior_arrays.get("diag")  # low-rank priors: std of the diagonal rest
        if mean is None or factor is None:
            raise ArtifactError(f"{artifact.path}: the DDP prior's mean or factor is missing; export again")
        k = factor.shape[1]
        z = draws.normal(PRIOR_STEP, k + (0 if diag is None else d))
        x = as_array(mean.astype(np.float32))[None] + z[:, :k] @ as_array(factor.astype(np.float32)).T
        if diag is not None:
            x = x + z[:, k:] * as_array(diag.astype(np.float32))[None]
    elif kind == "input":
        raise ArtifactError("this artifact has no prior (image-to-image translation): give --init SOURCE")
    else:
        raise ArtifactError(f"{artifact.path}: unknown prior kind '{kind}'")
    x = x.reshape((b,) + artifact.sample_shape)
    if p.get("clamp"):
        x = xp.clip(x, -1.0, 1.0) if xp is np else x.clamp(-1.0, 1.0)
    return x
