"""GPU training check (run when a GPU is lent; see gpu_train_check.sh): a CIFAR-10-sized
run on synthetic data, the reference-style step (PyTorch's defaults) against fdrl-train's
step with amp=bf16 and amp=none, steps/s and losses; each row printed as it is measured,
the table again last.

--small: a tiny model and batch on the CPU (fp32 only), to try the script anywhere.
"""
from __future__ import annotations

import argparse
import os
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


def measure_training(small: bool, steps: int, log=print, emit=None, fail_row: str = "") -> list[tuple[str, float | None, str]]:
    """Training steps/s, interleaved, all from the same weights and data: the reference-style
    step (autograd flow, fp32 with PyTorch's defaults: cuDNN TF32 on) against fdrl-train's
    step with amp=bf16 (portable drift graph under autocast, CUDA-graph flow, noise drawn on
    the GPU) and with amp=none; on a CPU fdrl-train fp32 only. Rows (name, steps/s, note),
    each given to `emit` as soon as it is known; a variant that fails is one row saying
    why and the others go on. `fail_row`: a name fragment whose variant is made to raise
    (the dry run's fault test)."""
    cuda = torch.cuda.is_available()
    model, shape, batch, k = ("resnet8", (1, 8, 8), 16, 5) if small or not cuda else ("resnet32", (3, 32, 32), 64, 100)
    base = {"dataset": "cifar10", "model": model, "batch_size": batch, "flow_steps": k, "eta": 3.0, "noise": 0.01,
            "prior": "up", "lr": 1e-4, "sample_every": 0, "device": "cuda" if cuda else "cpu"}
    data = SyntheticImages(shape)
    emit = emit or (lambda row: None)
    rows: list[tuple[str, float | None, str]] = []

    def done(row):
        rows.append(row)
        emit(row)

    def trainer(amp):
        return Trainer(validate({**base, "amp": amp}), None, data=data, prior=UniformPrior(shape), quiet=True)

    variants = {"fdrl-train amp=bf16 (portable graph, CUDA-graph flow, noise on the GPU)": "bf16",
                "fdrl-train amp=none (fp32, cuDNN TF32 as PyTorch's default)": "none"} if cuda else \
        {"fdrl-train fp32": "none"}
    runs, first = {}, None
    for name, amp in variants.items():
        try:
            if fail_row and fail_row in name:
                raise RuntimeError("injected fault (GPU_CHECK_FAIL_ROW)")
            t = trainer(amp)
            if first is None:
                first = t
            else:
                t.model.load_state_dict(first.model.state_dict())
            runs[name] = lambda t=t: t.train_step()["loss"]
        except Exception as e:  # a variant that cannot run is a row saying why
            done((name, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"))
    ref_name = "reference-style step, fp32 (PyTorch defaults: cuDNN TF32)"
    try:
        template = first.model if first is not None else build_model(validate(base), shape)
        dev = torch.device(base["device"])
        ref_model = build_model(validate(base), shape).to(dev)
        ref_model.load_state_dict(template.state_dict())
        g = torch.Generator().manual_seed(1)
        ref = ReferenceTrainStep(ref_model, lambda b: data.sample(b, g).to(dev),
                                 lambda b: (torch.rand((b,) + shape, generator=g) * 2 - 1).to(dev), validate(base))
        runs = {ref_name: ref, **runs}
    except Exception as e:
        done((ref_name, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"))

    def sync():
        if cuda:
            torch.cuda.synchronize()

    log(f"training: device {base['device']}, model {model}, batch {batch}, K = {k}, {steps} steps each (interleaved)")
    losses, times = {n: [] for n in runs}, {n: [] for n in runs}
    for _ in range(steps):
        for name, run in list(runs.items()):
            try:
                sync()
                t0 = time.perf_counter()
                losses[name].append(float(run()))
                sync()
                times[name].append(time.perf_counter() - t0)
            except Exception as e:
                done((name, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"))
                del runs[name]
    ref_s = float(np.median(times[ref_name][1:])) if ref_name in runs and len(times[ref_name]) > 1 else None
    for name in runs:
        if len(times[name]) < 2:
            continue
        s = float(np.median(times[name][1:]))
        ratio = f"{ref_s / s:.2f}× the reference step" if ref_s else "no reference"
        done((f"{name} (batch {batch}, K = {k})", 1 / s,
              f"{ratio}; loss after {steps} steps {np.mean(losses[name][-3:]):.4f}"))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    print("| loop | steps/s (median, after the first) | note |\n| --- | ---: | --- |", flush=True)
    line = lambda r: f"| {r[0]} | {'' if r[1] is None else f'{r[1]:.3f}'} | {r[2]} |"  # noqa: E731
    rows = measure_training(args.small, args.steps, emit=lambda r: print(line(r), flush=True),
                            fail_row=os.environ.get("GPU_CHECK_FAIL_ROW", ""))
    print("\n| loop | steps/s (median, after the first) | note |\n| --- | ---: | --- |")
    for r in rows:
        print(line(r))


if __name__ == "__main__":
    main()
