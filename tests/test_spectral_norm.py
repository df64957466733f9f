"""Spectral norm: right from step 0, and a converged sigma in what is exported."""
import pytest
import torch

from fdrl_export.graph import estimator_from_checkpoint
from fdrl_train.checkpoint import checkpoint_dict
from fdrl_train.config import load_config
from fdrl_train.models import build_model, fold_spectral_norm


def power_iteration_sigma(w: torch.Tensor, iters: int = 2000) -> float:
    """The largest singular value by a plain float64 power iteration from a random start."""
    mat = w.detach().double().reshape(w.shape[0], -1)
    v = torch.randn(mat.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for _ in range(iters):
        u = mat @ v
        u = u / u.norm()
        v = mat.T @ u
        v = v / v.norm()
    return float(u @ mat @ v)


@pytest.mark.parametrize("preset,shape", [("cifar10", (3, 32, 32)), ("cat2dog", (3, 64, 64))])
def test_fresh_spectral_norm_estimator_is_finite_in_eval_and_train_mode(preset, shape):
    torch.manual_seed(0)
    model = build_model(load_config(preset), shape)
    x = torch.rand(4, *shape) * 2 - 1
    for mode in ("eval", "train"):
        getattr(model, mode)()
        xr = x.clone().requires_grad_(True)
        out = model(xr)
        (grad,) = torch.autograd.grad(out.sum(), xr)
        assert out.shape == (4,) and torch.isfinite(out).all(), (mode, out)
        assert torch.isfinite(grad).all() and grad.abs().max() > 0, mode
        # Lipschitz-bounded: each normalised layer has gain <= 1 (a residual block <= 2).
        assert out.abs().max() < 1e3, (mode, out)


def test_exported_sigma_is_the_converged_power_iteration():
    torch.manual_seed(0)
    cfg = load_config("cifar10")
    model = build_model(cfg, (3, 32, 32))
    with torch.no_grad():  # weights away from their initial values, u and v now stale
        for name, p in model.named_parameters():
            if name.endswith("weight_orig"):
                p.mul_(1 + 0.5 * torch.rand_like(p))
    ckpt = checkpoint_dict(cfg, model.state_dict(), model.state_dict(), {"kind": "up", "shape": [3, 32, 32], "clamp": True},
                           (3, 32, 32), (-1.0, 1.0), 1)
    params = estimator_from_checkpoint(ckpt).params
    state = model.state_dict()
    checked = 0
    for key, w_orig in state.items():
        if not key.endswith("weight_orig"):
            continue
        exported_sigma = float((w_orig.norm() / params[key[:-5]].norm()))
        ref = power_iteration_sigma(w_orig)
        assert abs(exported_sigma - ref) / ref <= 1e-3, (key, exported_sigma, ref)
        checked += 1
    assert checked == 29  # stem, 12 blocks x 2 convs, 3 shortcut convs, the dense head


def test_fold_with_stored_vectors_is_what_the_live_model_computes():
    torch.manual_seed(0)
    model = build_model(load_config("cifar10"), (3, 32, 32)).train()
    model(torch.rand(2, 3, 32, 32))  # one power iteration per normalised layer
    folded = fold_spectral_norm(model.state_dict(), sigma="stored")
    assert not any(k.endswith(("_orig", "_u", "_v")) for k in folded)
    model.eval()  # eval: weight = weight_orig / u.W.v with the stored u, v
    model(torch.rand(1, 3, 32, 32))
    for name, module in model.named_modules():
        if hasattr(module, "weight_orig"):
            torch.testing.assert_close(folded[name + ".weight"], module.weight, rtol=1e-6, atol=0)
