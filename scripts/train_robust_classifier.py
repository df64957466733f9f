"""Train the L2-robust MNIST-5k classifier used to steer class-conditional flows.

The paper needed an adversarially robust classifier for useful input gradients; this is
L2 PGD adversarial training (Madry et al.) on the MNIST-5k training split with the
resnet28 architecture (its gradient exports like the estimator's).

    python scripts/train_robust_classifier.py [--eps 4.0] [--epochs 6]

Writes fdrl_train/assets/mnist_robust_classifier.pt; prints clean and attacked accuracy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from fdrl_train.checkpoint import atomic_torch_save
from fdrl_train.classifier import (
    ROBUST_WEIGHTS,
    build_classifier,
    classifier_checkpoint,
)
from fdrl_train.datasets import load_mnist_dataset


def pgd_l2(model, x, y, eps: float, steps: int, step_size: float):
    """An L2-bounded perturbation that raises the loss (images stay in [-1, 1])."""
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        loss = F.cross_entropy(model((x + delta).clamp(-1, 1)), y)
        (g,) = torch.autograd.grad(loss, delta)
        g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
        delta = delta.detach() + step_size * g
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
        delta = (delta * (eps / norm).clamp(max=1.0)).requires_grad_(True)
    return (x + delta).clamp(-1, 1).detach()


def accuracy(model, x, y, eps=0.0):
    model.eval()
    xa = pgd_l2(model, x, y, eps, 10, eps / 4) if eps else x
    with torch.no_grad():
        return float((model(xa).argmax(1) == y).float().mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eps", type=float, default=4.0, help="L2 radius in [-1, 1] pixel units")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROBUST_WEIGHTS), help="where to write the classifier")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    data = load_mnist_dataset(0.1)
    x, y = data.train_images, data.train_labels
    model = build_classifier("resnet28", (1, 28, 28), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            xb, yb = x[idx], y[idx]
            xa = pgd_l2(model, xb, yb, args.eps, 5, args.eps / 3)
            loss = F.cross_entropy(model(xa), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        xt, yt = data.test_images, data.test_labels
        print(f"epoch {epoch + 1}: clean {accuracy(model, xt, yt):.3f}, "
              f"L2-PGD eps={args.eps} {accuracy(model, xt[:200], yt[:200], args.eps):.3f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(classifier_checkpoint(model.eval(), "resnet28", (1, 28, 28), 10,
                                            training={"eps_l2": args.eps, "epochs": args.epochs}), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
