"""Bregman losses for density-ratio estimation and the f-divergences whose f' drives the flow.

r = q~/p, where p is the data and q~ the flowed prior. A loss knows whether the network
outputs r or log r; a divergence knows f' (what the flow descends) and its derivative in
the network's output (what the input gradient is scaled by). shared/DESIGN.md §1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .config import VALID_PAIRINGS


@dataclass(frozen=True)
class LossTerms:
    loss: torch.Tensor
    term_data: torch.Tensor
    term_flowed: torch.Tensor
    r_data: torch.Tensor
    r_flowed: torch.Tensor


@dataclass(frozen=True)
class Loss:
    name: str
    output: str  # "r" or "log_r"
    data_term: Callable[[torch.Tensor], torch.Tensor]
    flowed_term: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, out_data: torch.Tensor, out_flowed: torch.Tensor) -> LossTerms:
        a = self.data_term(out_data).mean()
        b = self.flowed_term(out_flowed).mean()
        to_r = (lambda o: o) if self.output == "r" else torch.exp
        return LossTerms(a + b, a, b, to_r(out_data.detach()).mean(), to_r(out_flowed.detach()).mean())


LOSSES = {
    # LSIF: mean(r(x_p)^2 / 2) - mean(r(x_q)).
    "LSIF": Loss("LSIF", "r", lambda r: 0.5 * r * r, lambda r: -r),
    # Logistic regression on s = log r: data labelled 0, flowed samples labelled 1.
    "LR": Loss("LR", "log_r", lambda s: -F.logsigmoid(-s), lambda s: -F.logsigmoid(s)),
    # KLIEP-style, as in the reference code: mean(exp s(x_p)) - mean(s(x_q)).
    "KL": Loss("KL", "log_r", torch.exp, lambda s: -s),
}


@dataclass(frozen=True)
class Divergence:
    name: str
    f_prime: Callable[[torch.Tensor], torch.Tensor]
    # d f'(out) / d out, so that grad_x f'(D(x)) = f''(D(x)) * grad_x D(x).
    f_prime_grad: Callable[[torch.Tensor], torch.Tensor]


DIVERGENCES = {
    "Pearson": Divergence("Pearson", lambda r: 2 * r, lambda r: torch.full_like(r, 2.0)),
    "KL": Divergence("KL", lambda s: s, torch.ones_like),
    "JS": Divergence("JS", F.logsigmoid, lambda s: torch.sigmoid(-s)),
    "logD": Divergence("logD", lambda s: -F.logsigmoid(-s), torch.sigmoid),
}


def get_pairing(loss: str, divergence: str) -> tuple[Loss, Divergence]:
    if loss not in LOSSES or divergence not in DIVERGENCES or divergence not in VALID_PAIRINGS[loss]:
        pairs = "; ".join(f"{l} with {'/'.join(d)}" for l, d in VALID_PAIRINGS.items())
        raise ValueError(f"{loss} with {divergence} is not a valid pairing; valid: {pairs}")
    return LOSSES[loss], DIVERGENCES[divergence]
