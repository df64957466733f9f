import math

import pytest
import torch

from fdrl_train.losses import DIVERGENCES, LOSSES, get_pairing


def test_lsif_closed_form():
    r_p, r_q = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0])
    t = LOSSES["LSIF"](r_p, r_q)
    assert t.loss.item() == pytest.approx(0.5 * (1 + 9) / 2 - 3.0)
    assert t.r_data.item() == pytest.approx(2.0) and t.r_flowed.item() == pytest.approx(3.0)


def test_lr_is_stable_at_large_logits():
    s = torch.tensor([-100.0, 100.0])
    t = LOSSES["LR"](s, s)
    assert torch.isfinite(t.loss)
    # -log sigma(-s) + -log sigma(s), averaged: each pair sums to |s| + log(1 + e^-|s|)
    assert t.loss.item() == pytest.approx(100.0, rel=1e-6)


def test_kl_closed_form():
    s_p, s_q = torch.tensor([0.0, math.log(3.0)]), torch.tensor([1.0, 2.0])
    assert LOSSES["KL"](s_p, s_q).loss.item() == pytest.approx(2.0 - 1.5)


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_f_prime_grad_is_the_derivative_of_f_prime(name):
    d = DIVERGENCES[name]
    s = torch.linspace(-30, 30, 101, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(d.f_prime(s).sum(), s)
    assert torch.allclose(d.f_prime_grad(s.detach()), auto, rtol=1e-12, atol=1e-300)


def test_invalid_pairing_is_refused():
    with pytest.raises(ValueError, match="valid: LSIF with Pearson"):
        get_pairing("LSIF", "JS")
