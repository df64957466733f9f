"""Train the digit classifier that ships in fdrl_train/assets (about a minute on 2 cores).

    python scripts/train_digit_classifier.py

MNIST-5k training split only (the held-out split of fdrl_train.datasets stays unseen);
random shifts of up to 2 pixels; Adam, 8 epochs. Prints the held-out accuracy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fdrl_train.classifier import WEIGHTS, DigitClassifier, predict
from fdrl_train.datasets import load_mnist_dataset


def main(epochs: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    data = load_mnist_dataset(0.1)
    x, y = data.train_images, data.train_labels
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            xb = x[idx]
            dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
            xb = torch.roll(xb, (dx, dy), (2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = (predict(model.eval(), data.test_images).argmax(1) == data.test_labels).float().mean()
        model.train()
        print(f"epoch {epoch + 1}: held-out accuracy {acc:.4f}", flush=True)
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), WEIGHTS)
    print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
