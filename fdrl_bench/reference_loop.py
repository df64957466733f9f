"""The obvious PyTorch implementation, as the reference code (clear-nus/fdrl) writes it:
the baseline every speed-up in RESULTS.md is measured against.

The model stays in training mode with its parameters requiring gradients; every flow step
evaluates f'(D(x)), calls torch.autograd.grad on x (retain_graph=True, as the reference
does) and updates x in place (shared/DESIGN.md §5).
"""
from __future__ import annotations

import torch

from fdrl_train.losses import DIVERGENCES, LOSSES


def reference_flow(model: torch.nn.Module, x: torch.Tensor, steps: int, eta: float, nu: float,
                   divergence: str) -> torch.Tensor:
    f_prime = DIVERGENCES[divergence].f_prime
    x_k = x.clone().requires_grad_(True)
    for _ in range(steps):
        out = model(x_k)
        grad = torch.autograd.grad(f_prime(out).sum(), [x_k], retain_graph=True)[0]
        x_k.data -= eta * grad + nu * torch.randn_like(x_k)
    return x_k.detach()


class ReferenceTrainStep:
    """One training step of the reference loop: flow, two forwards, loss, Adam, EMA."""

    def __init__(self, model, data_sampler, prior_sampler, cfg: dict):
        self.model, self.data, self.prior, self.cfg = model, data_sampler, prior_sampler, cfg
        self.optim = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]))
        self.loss = LOSSES[cfg["loss"]]
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def __call__(self):
        cfg, b = self.cfg, self.cfg["batch_size"]
        x_data = self.data(b)
        x_flowed = reference_flow(self.model, self.prior(b), cfg["flow_steps"], cfg["eta"], cfg["noise"], cfg["divergence"])
        terms = self.loss(self.model(x_data), self.model(x_flowed))
        self.optim.zero_grad()
        terms.loss.backward()
        self.optim.step()
        mu = cfg["ema_rate"]
        for k, v in self.model.state_dict().items():
            self.ema[k].data = (1.0 - mu) * v.data + mu * self.ema[k].data
        return terms.loss.item()
