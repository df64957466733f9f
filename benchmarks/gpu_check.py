"""GPU check (run when a GPU is lent; see gpu_check.sh): the torch backend's CUDA-graph
and bf16 samples against fp32 eager, then a throughput table (printed last).

Needs only torch and numpy (what the lent H200 has); imports the project from the
checkout. --small shrinks everything so the script itself can be tried on a CPU.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fdrl_export.graph import drift_module, estimator_from_checkpoint  # noqa: E402
from fdrl_export.meta import build_meta  # noqa: E402
from fdrl_export.to_torch import export_program, save_program  # noqa: E402
from fdrl_runtime.artifact import load_artifact  # noqa: E402
from fdrl_runtime.backends.base import Backend  # noqa: E402
from fdrl_runtime.backends.torch import TorchBackend  # noqa: E402
from fdrl_runtime.loop import sample_batch  # noqa: E402
from fdrl_train.checkpoint import checkpoint_dict  # noqa: E402
from fdrl_train.config import validate  # noqa: E402
from fdrl_train.models import build_model  # noqa: E402

from benchmarks.reference_loop import reference_flow  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="tiny model and batch: a dry run on a CPU")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, shape = ("resnet8", (1, 8, 8)) if args.small else ("resnet32", (3, 32, 32))
    batch = 8 if args.small else args.batch
    cfg = validate({"model": model, "dataset": "cifar10", "flow_steps": 10 if args.small else 100,
                    "refine_steps": 0 if args.small else 20, "eta": 3.0, "noise": 0.01})
    torch.manual_seed(0)
    m = build_model(cfg, shape)
    prior = {"kind": "up", "shape": list(shape), "clamp": True}
    ckpt = checkpoint_dict(cfg, m.state_dict(), m.state_dict(), prior, shape, (-1.0, 1.0), 0)
    tmp = Path(tempfile.mkdtemp())
    est = estimator_from_checkpoint(ckpt)
    module = drift_module(est).eval()
    meta, arrays = build_meta(est, ckpt, prior, module, "0" * 64)
    save_program(export_program(module, shape), tmp / "m.pt2", meta, arrays)
    art = load_artifact(tmp / "m.pt2")
    steps = art.default_steps
    ids = np.arange(batch, dtype=np.int64)
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), model {model}, "
          f"batch {batch}, {steps} steps", flush=True)

    class Eager(TorchBackend):  # the same backend without CUDA graphs: the base class's step loop
        def run_steps(self, x, noise_block, eta, nu, y=None):
            return Backend.run_steps(self, x, noise_block, eta, nu, y)

    rows = {"torch fp32 eager": Eager(art, device=device),
            "torch fp32 + CUDA graphs": TorchBackend(art, device=device)}
    if device == "cuda":
        rows["torch bf16 + CUDA graphs"] = TorchBackend(art, device=device, precision="bf16")
    samples, times = {}, {k: [] for k in rows}
    net = m.to(device).train()
    x0 = torch.rand((batch,) + shape, device=device) * 2 - 1

    def ref():
        return reference_flow(net, x0, steps, cfg["eta"], cfg["noise"], cfg["divergence"])

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    runs = {name: (lambda be=be: sample_batch(be, art, ids, 0, steps)) for name, be in rows.items()}
    runs["reference-style eager fp32"] = ref
    times["reference-style eager fp32"] = []
    for name, run in runs.items():  # warm-up (captures the graphs)
        out = run()
        if name in rows:
            samples[name] = out
    for _ in range(args.repeats):
        for name, run in runs.items():
            sync()
            t0 = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - t0)
    base = samples["torch fp32 eager"].reshape(batch, -1).astype(np.float64)
    print("\nsamples against fp32 eager (same seed), per-sample relative L2:")
    for name, x in samples.items():
        e = np.linalg.norm(x.reshape(batch, -1) - base, axis=1) / np.linalg.norm(base, axis=1)
        print(f"  {name:28s} median {np.median(e):.2e}  max {e.max():.2e}")
    ref_s = np.median(times["reference-style eager fp32"])
    eager_s = np.median(times["torch fp32 eager"])
    print(f"\n| row | batch | s per {steps} steps (median) | samples/s | vs reference eager | vs torch fp32 eager |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, ts in times.items():
        s = float(np.median(ts))
        print(f"| {name} | {batch} | {s:.3f} | {batch / s:,.1f} | {ref_s / s:.2f}× | {eager_s / s:.2f}× |")


if __name__ == "__main__":
    main()
