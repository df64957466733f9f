"""The Euler-Maruyama update of the flow, written once (shared/DESIGN.md §1, eq. 9).

    x_{k+1} = x_k - eta * drift(x_k) + nu * xi_k,   drift = grad_x f'(r(x)),  xi_k ~ N(0, I)

Plain arithmetic, so it runs on numpy arrays, torch tensors (and is traced into the
exported step graph) alike. Training's flow, the runtime's loop and the export's fused
step graph all call it.
"""
from __future__ import annotations


def euler_maruyama_step(x, drift, eta: float, nu: float, xi=None):
    """One step from x given drift(x); xi is the step's standard normal noise, or None
    (nu = 0: no noise term at all, not nu times zeros)."""
    x = x - eta * drift
    if xi is not None:
        x = x + nu * xi
    return x


def euler_maruyama(drift_fn, x, steps: int, eta: float, nu: float, noise=None):
    """`steps` steps; noise(k) gives xi_k (None, or nu = 0: a deterministic flow)."""
    for k in range(steps):
        x = euler_maruyama_step(x, drift_fn(x), eta, nu, noise(k) if (nu and noise is not None) else None)
    return x
