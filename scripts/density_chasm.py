"""The density chasm (paper Fig. 2b and 4) at CPU scale.

q' = N(0, 0.1 I), p = N(6 * 1, 0.1 I) in 2-D. A stale estimator trained on q' against p
(no flow during training) is flowed 400 steps; an FDRL estimator (K = 100 during
training) is flowed K steps. Both use their EMA weights, the export's default.

    python scripts/density_chasm.py [--out docs]

Writes docs/density_chasm.md, docs/density_chasm_fdrl.png, docs/density_chasm_stale.png.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from fdrl_core.pictures import save_png, scatter_plot
from fdrl_train.config import load_config
from fdrl_train.datasets import CHASM_MEAN
from fdrl_train.train import Trainer

TARGET = torch.tensor(CHASM_MEAN)


def trajectory(trainer: Trainer, steps: int, n: int = 2000, seed: int = 3):
    """Distance of the sample mean from (6, 6) after each flow step (EMA weights)."""
    g = torch.Generator().manual_seed(seed)
    x = trainer.prior.sample(n, g)
    w = trainer.current_weights(trainer.ema)
    dists = []
    for _ in range(steps):
        x = trainer.flow(w, x, 1, g)
        dists.append(float((x.mean(0) - TARGET).norm()))
    return x, dists


def describe(x):
    m, s = x.mean(0), x.std(0) / math.sqrt(0.1)
    return f"({m[0]:.3g}, {m[1]:.3g})", f"({s[0]:.3g}, {s[1]:.3g})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs")
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    out = Path(args.out)
    fdrl = Trainer(load_config("chasm", [f"steps={args.steps}", "sample_every=0"]), out / ".chasm_fdrl", quiet=True)
    fdrl.run()
    stale = Trainer(load_config("chasm", [f"steps={args.steps}", "sample_every=0", "flow_steps=0"]), out / ".chasm_stale", quiet=True)
    stale.run()
    xf, df = trajectory(fdrl, 400)
    xf100, _ = trajectory(fdrl, 100)
    xs, ds = trajectory(stale, 400)
    save_png(scatter_plot(xf100.numpy(), lim=8.0), out / "density_chasm_fdrl.png")
    finite = xs[torch.isfinite(xs).all(1)]
    save_png(scatter_plot(finite.numpy(), lim=8.0), out / "density_chasm_stale.png")
    rows = [("FDRL (K = 100 in training)", 100, xf100), ("FDRL, flowed on", 400, xf), ("stale estimator", 400, xs)]
    lines = ["# The density chasm", "",
             "q' = N(0, 0.1 I), p = N(6·1, 0.1 I). Both estimators: MLP 3×64, LSIF-Pearson, η = 1, ν = 0.01,",
             f"{args.steps} training steps, EMA weights; 2,000 samples. Std is per axis, in units of √0.1 (p's).",
             "", "    python scripts/density_chasm.py", "",
             "| estimator | flow steps | sample mean | std / √0.1 | distance of mean to (6, 6) |",
             "| --- | ---: | --- | --- | ---: |"]
    for name, k, x in rows:
        mean, std = describe(x)
        lines.append(f"| {name} | {k} | {mean} | {std} | {float((x.mean(0) - TARGET).norm()):.3g} |")
    lines += ["", "Distance of the sample mean from (6, 6) along the flow:", "",
              "| step | FDRL | stale |", "| ---: | ---: | ---: |"]
    for k in (1, 10, 25, 50, 100, 200, 400):
        lines.append(f"| {k} | {df[k - 1]:.3g} | {ds[k - 1]:.3g} |")
    lines += ["", "The stale estimator was trained on q' against p directly: its ratio is astronomically",
              "steep between the two, so its flow overshoots and diverges instead of crossing (Lemma 1",
              "of the paper speaks of the mode only). FDRL trains on samples it has already moved, and",
              "its K-step samples land on p. Pictures: `density_chasm_fdrl.png` (K steps),",
              "`density_chasm_stale.png` (400 steps, finite samples only; axes ±8)."]
    (out / "density_chasm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
