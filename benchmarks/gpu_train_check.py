"""GPU training check (run when a GPU is lent; see gpu_train_check.sh): a CIFAR-10-sized
run on synthetic data, the reference-style fp32 eager step against fdrl-train's step
(traced flow; bf16 autocast on a GPU), steps/s of both and their loss curves; a table last.

--small: a tiny model and batch on the CPU (fp32 only), to try the script anywhere.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fdrl_bench.reference_loop import ReferenceTrainStep  # noqa: E402
from fdrl_train.config import validate  # noqa: E402
from fdrl_train.datasets import Dataset  # noqa: E402
from fdrl_train.models import build_model  # noqa: E402
from fdrl_train.priors import UniformPrior  # noqa: E402
from fdrl_train.train import Trainer  # noqa: E402


class SyntheticImages(Dataset):
    """Smooth random images in [-1, 1] (low-frequency noise): CIFAR-shaped, no download."""
    value_range = (-1.0, 1.0)
    name = "synthetic"

    def __init__(self, shape, n=2048, seed=0):
        g = torch.Generator().manual_seed(seed)
        c, h, w = shape
        low = torch.randn(n, c, h // 4, w // 4, generator=g)
        self.images = torch.tanh(torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear"))
        self.sample_shape = tuple(shape)

    def sample(self, n, g):
        return self.images[torch.randint(0, len(self.images), (n,), generator=g)]

    def batches(self, batch_size=1024):
        yield from self.images.split(batch_size)


def measure_training(small: bool, steps: int, log=print) -> list[tuple[str, float | None, str]]:
    """Training steps/s, interleaved: the reference-style fp32 eager step and fdrl-train's
    (traced flow; bf16 autocast and CUDA-graph flow on a GPU). Rows (name, steps/s, note)."""
    cuda = torch.cuda.is_available()
    model, shape, batch, k = ("resnet8", (1, 8, 8), 16, 5) if small or not cuda else ("resnet32", (3, 32, 32), 64, 100)
    base = {"dataset": "cifar10", "model": model, "batch_size": batch, "flow_steps": k, "eta": 3.0, "noise": 0.01,
            "prior": "up", "lr": 1e-4, "sample_every": 0, "device": "cuda" if cuda else "cpu"}
    data = SyntheticImages(shape)
    fast = Trainer(validate({**base, "amp": "bf16" if cuda else "none"}), None, data=data,
                   prior=UniformPrior(shape), quiet=True)
    torch.manual_seed(0)
    dev = fast.place.device
    ref_model = build_model(fast.cfg, shape).to(dev)
    ref_model.load_state_dict(fast.model.state_dict())
    g = torch.Generator().manual_seed(1)
    ref = ReferenceTrainStep(ref_model, lambda b: data.sample(b, g).to(dev),
                             lambda b: (torch.rand((b,) + shape, generator=g) * 2 - 1).to(dev), fast.cfg)
    names = ["reference-style fp32 eager", "fdrl-train" + (" bf16 + CUDA-graph flow" if cuda else " fp32")]
    losses, times = {n: [] for n in names}, {n: [] for n in names}
    runs = dict(zip(names, (ref, lambda: fast.train_step()["loss"])))

    def sync():
        if cuda:
            torch.cuda.synchronize()

    log(f"training: device {dev}, model {model}, batch {batch}, K = {k}, {steps} steps each (interleaved)")
    for _ in range(steps):
        for name, run in runs.items():
            sync()
            t0 = time.perf_counter()
            losses[name].append(float(run()))
            sync()
            times[name].append(time.perf_counter() - t0)
    a, b = np.array(losses[names[0]]), np.array(losses[names[1]])
    log(f"training: loss after {steps} steps {a[-3:].mean():.4f} vs {b[-3:].mean():.4f} "
        f"(mean |difference| over the run {np.abs(a - b).mean():.4f})")
    ref_s = float(np.median(times[names[0]][1:]))
    rows = []
    for name in names:
        s = float(np.median(times[name][1:]))
        rows.append((f"{name} (batch {batch}, K = {k})", 1 / s, f"{ref_s / s:.2f}× the reference"))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    rows = measure_training(args.small, args.steps)
    print("\n| loop | steps/s (median, after the first) | vs reference |\n| --- | ---: | ---: |")
    for name, steps_s, note in rows:
        print(f"| {name} | {steps_s:.3f} | {note.split()[0]} |")


if __name__ == "__main__":
    main()
