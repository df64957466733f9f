"""The Euler-Maruyama flow x <- x - eta * drift(x) + nu * xi (shared/DESIGN.md §1, eq. 9)."""
from __future__ import annotations

from typing import Callable

import torch

from .drift import DriftGraph


def flow(drift: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int, eta: float,
         nu: float, noise: Callable[[int], torch.Tensor] | None) -> torch.Tensor:
    """`steps` Euler-Maruyama steps; `noise(k)` gives xi_k (shape of x), None for nu = 0."""
    for k in range(steps):
        x = x - eta * drift(x)
        if nu and noise is not None:
            x = x + nu * noise(k)
    return x


class GraphFlow:
    """The training-time flow over a DriftGraph: no autograd tape, no gradient to theta.

    Steps run in chunks of `chunk`; each chunk's noise is drawn at once from the caller's
    generator, so compiled and plain runs see the same numbers. With `compile=True` a
    chunk is one torch.compile'd call: on small models per-op overhead is what costs
    (shared/DESIGN.md §5), and fusing a chunk removes most of it.
    """

    def __init__(self, graph: DriftGraph, eta: float, nu: float, compile: bool = False, chunk: int = 10):
        self.graph, self.eta, self.nu, self.chunk = graph, float(eta), float(nu), chunk
        self._run_chunk = torch.compile(self._chunk, dynamic=False) if compile else self._chunk

    def _chunk(self, weights, x, xi):
        return flow(lambda x_: self.graph(weights, x_)[0], x, xi.shape[0], self.eta, self.nu, lambda k: xi[k])

    @torch.no_grad()
    def __call__(self, weights: list[torch.Tensor], x: torch.Tensor, steps: int, g: torch.Generator):
        done = 0
        while done < steps:
            n = min(self.chunk, steps - done)
            xi = torch.randn((n,) + tuple(x.shape), generator=g, dtype=x.dtype)
            x = self._run_chunk(weights, x, xi)
            done += n
        return x
