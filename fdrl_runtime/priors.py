"""Prior draws x_0 from an artifact's prior (fdrl_core.prior), per sample (see noise.py)."""
from __future__ import annotations

import numpy as np

from .artifact import Artifact
from .noise import PRIOR_STEP, Draws


def prior_dim(artifact: Artifact) -> int:
    return artifact.prior.dim


def draw_prior(artifact: Artifact, draws: Draws, xp, as_array) -> object:
    """[B, *shape] prior samples; `as_array` moves a numpy array into the backend's namespace."""
    spec = artifact.prior
    dist, width = spec.noise_width()
    z = draws.normal(PRIOR_STEP, width) if dist == "normal" else draws.uniform(PRIOR_STEP, width)
    return spec.transform(z, lambda a: as_array(np.ascontiguousarray(a, dtype=np.float32)))
