"""The backend interface: load an artifact's step graph, evaluate drift(x), close."""
from __future__ import annotations

import numpy as np

from fdrl_core.errors import FdrlError

from ..artifact import Artifact
from ..loop import euler_steps
from ..noise import Draws, numpy_draws


class BackendError(FdrlError, RuntimeError):
    """The backend cannot run here (missing package or device, bad option)."""


class Backend:
    """Owns its device buffers; arrays it returns from `drift` are valid until the next call.

    The default array namespace is numpy on the host. Backends on a device override
    xp / from_numpy / to_numpy / draws so x stays there between steps.
    """
    name = "base"
    xp = np
    precisions = ("fp32",)

    def __init__(self, artifact: Artifact, device: str = "cpu", precision: str = "fp32", threads: int = 0,
                 trust_pickle: bool = False):
        self.trust_pickle = trust_pickle  # only the torch backend's .pt2 archives can hold pickles
        if precision not in self.precisions:
            raise BackendError(f"backend {self.name} runs {', '.join(self.precisions)}, not {precision}")
        self.artifact, self.device, self.precision, self.threads = artifact, device, precision, threads

    @property
    def numerics(self) -> str:
        """What decides the numbers this backend makes (a run folder records it: a rerun must match)."""
        return self.name

    def drift(self, x, y=None):
        """grad_x f'(r(x)) (or of r(x|y) for a class-conditional artifact, labels y)."""
        raise NotImplementedError

    def run_steps(self, x, noise_block, eta: float, nu: float, y=None):
        return euler_steps(lambda x_: self.drift(x_, y), x, noise_block, eta, nu)

    def labels(self, y: np.ndarray):
        """Class labels in this backend's array type."""
        return self.from_numpy(y)

    def draws(self, seed: int, ids: np.ndarray) -> Draws:
        return numpy_draws(seed, ids)

    def from_numpy(self, a: np.ndarray):
        return a

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
