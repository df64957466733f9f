"""The GPU check: one run on a lent GPU that measures the headline (see gpu_check.sh).

On the CIFAR-10 ResNet (the `cifar10` preset's architecture, random weights, spectral
norm folded; 8.15 GFLOP per sample-step) at each batch: the reference-style fp32 eager
loop; the torch backend eager and with CUDA graphs in fp32, bf16 and fp16; torch.compile of
the same step; TensorRT when it imports. For each row: samples/s for K + kappa steps,
achieved TFLOP/s, the fraction of a bf16 GEMM peak measured in the same run, the
per-sample error of one block of steps against fp32 eager, and the Fréchet distance of
1,000 samples after K + kappa steps to fp32 eager's (in a fixed random 64-d projection;
beside fp32 eager with another seed, the noise floor). Then training steps/s: the
reference-style fp32 step against fdrl-train's (bf16 + CUDA-graph flow). The table is
printed last, for benchmarks/RESULTS.md.

fp32 rows run without TF32 (cuDNN and cuBLAS would otherwise use it for convolutions),
so they are the accuracy reference. Needs torch and numpy only; installs nothing; says
in its first line what it found. A time guard skips what would run past the budget.
--small: a tiny model on the CPU, to try the script anywhere (the test suite runs it).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fdrl_eval.metrics import feature_stats, frechet_distance  # noqa: E402
from fdrl_export.graph import drift_module, estimator_from_checkpoint  # noqa: E402
from fdrl_export.meta import build_meta  # noqa: E402
from fdrl_export.to_torch import export_program, save_program  # noqa: E402
from fdrl_runtime.artifact import load_artifact  # noqa: E402
from fdrl_runtime.backends.base import Backend  # noqa: E402
from fdrl_runtime.backends.torch import TorchBackend  # noqa: E402
from fdrl_runtime.loop import NOISE_BLOCK, euler_steps, sample_batch  # noqa: E402
from fdrl_train.checkpoint import checkpoint_dict  # noqa: E402
from fdrl_train.config import validate  # noqa: E402
from fdrl_train.losses import DIVERGENCES  # noqa: E402
from fdrl_train.models import build_model  # noqa: E402

OPTIONAL = ("onnx", "onnxruntime", "tensorrt", "cuda.bindings", "cupy", "triton")


def probe(device: str) -> dict:
    """What this machine has, in one line; nothing is installed."""
    found, missing = {}, []
    for name in OPTIONAL:
        try:
            mod = importlib.import_module(name)
            found[name] = getattr(mod, "__version__", "?")
        except Exception:  # an optional package may fail to import in many ways
            missing.append(name)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "no GPU"
    have = ", ".join(f"{k} {v}" for k, v in found.items())
    print(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda}, {gpu}); have {have or 'nothing optional'}; "
          f"missing {', '.join(missing) or 'nothing'} (their rows are skipped)", flush=True)
    return found


class Eager(TorchBackend):
    """The torch backend without CUDA graphs: the base class's step loop."""

    def run_steps(self, x, noise_block, eta, nu, y=None):
        return Backend.run_steps(self, x, noise_block, eta, nu, y)


class Compiled(TorchBackend):
    """The same step, the exported module under torch.compile (one call per step)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.compiled = torch.compile(self.module, dynamic=False)

    def drift(self, x, y=None):
        with torch.no_grad():
            return self.compiled(x)[0].clone()  # its outputs may be reused buffers

    def run_steps(self, x, noise_block, eta, nu, y=None):
        return euler_steps(self.drift, x, noise_block, eta, nu)


class ReferenceRow(TorchBackend):
    """The reference-style loop (autograd.grad each step, model in train mode) on the model;
    the backend's prior and noise draws, so its samples are comparable with the others'."""

    def __init__(self, art, device, net, cfg):
        super().__init__(art, device=device)
        self.net, self.cfg = net, cfg

    def run_steps(self, x, noise_block, eta, nu, y=None):
        x = x.clone().requires_grad_(True)
        f_prime = DIVERGENCES[self.cfg["divergence"]].f_prime  # as reference_loop.reference_flow
        for xi in noise_block:
            grad = torch.autograd.grad(f_prime(self.net(x)).sum(), [x])[0]
            x = (x - eta * grad + nu * xi).detach().requires_grad_(True)
        return x.detach()


def bf16_peak(device: str, small: bool) -> float:
    """TFLOP/s of a large bf16 GEMM (fp32 on a CPU), the best of a few runs."""
    n = 512 if small else 8192
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 10)
    return 2 * n ** 3 / best / 1e12


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="tiny model and batch: a dry run on a CPU")
    ap.add_argument("--batches", default=None, help="comma-separated (default 256,1024; --small 8,16)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; later rows are skipped past it")
    ap.add_argument("--train-steps", type=int, default=8)
    args = ap.parse_args()
    t_start = time.perf_counter()
    from fdrl_export.to_onnx import quiet_exporter_logs
    quiet_exporter_logs()  # process-wide: set at this script's entry
    device = "cuda" if torch.cuda.is_available() else "cpu"
    found = probe(device)
    if device == "cuda":  # fp32 means fp32 (the accuracy reference); bf16/fp16 rows say so
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    small = args.small or device == "cpu"
    model, shape = ("resnet8", (1, 8, 8)) if small else ("resnet32", (3, 32, 32))
    batches = [int(b) for b in (args.batches or ("8,16" if small else "256,1024")).split(",")]
    n_fd = 64 if small else 1000
    cfg = validate({"model": model, "dataset": "cifar10", "spectral_norm": True, "flow_steps": 10 if small else 100,
                    "refine_steps": 0 if small else 20, "eta": 3.0, "noise": 0.01})
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
    steps, eta, nu = art.default_steps, art.meta.eta, art.meta.noise
    flops = float(art.meta.flops_per_sample or 0.0)
    peak = bf16_peak(device, small)
    print(f"device {device}, model {model} ({flops / 1e9:.2f} GFLOP per sample-step), batches {batches}, "
          f"{steps} steps; {'bf16' if device == 'cuda' else 'fp32'} GEMM peak {peak:.1f} TFLOP/s", flush=True)

    net = build_model(cfg, shape).to(device)
    net.load_state_dict(m.state_dict())
    net.train()  # as the reference samples: spectral norm's power iteration keeps running
    rows = {"reference-style eager fp32": lambda: ReferenceRow(art, device, net, cfg),
            "torch backend fp32 eager": lambda: Eager(art, device=device),
            "torch backend fp32 + CUDA graphs": lambda: TorchBackend(art, device=device)}
    if device == "cuda":
        rows["torch backend bf16 + CUDA graphs"] = lambda: TorchBackend(art, device=device, precision="bf16")
        rows["torch backend fp16 + CUDA graphs"] = lambda: TorchBackend(art, device=device, precision="fp16")
    rows["torch.compile fp32 (same step)"] = lambda: Compiled(art, device=device)
    if "tensorrt" in found and device == "cuda":
        rows["TensorRT fp16 engine"] = lambda: tensorrt_row(ckpt, tmp, "fp16", batches)
    if "onnxruntime" in found:  # the CUDA provider where onnxruntime-gpu is installed, else the CPU one
        rows[f"ONNX Runtime fp32 ({'CUDA, I/O binding' if device == 'cuda' else 'CPU'})"] = \
            lambda: onnxruntime_row(ckpt, tmp, device)
    base_name = "torch backend fp32 eager"
    results, samples = [], {}
    gen = torch.Generator(device="cpu").manual_seed(3)
    inputs = {b: ((torch.rand((b,) + shape, generator=gen) * 2 - 1).to(device),  # the same x and noise for every row
                  torch.randn((NOISE_BLOCK, b) + shape, generator=gen).to(device)) for b in batches}
    for name, make in rows.items():
        if time.perf_counter() - t_start > args.budget - 90:  # keep time for the training rows
            results.append((name, None, "skipped: past the time budget"))
            continue
        try:
            be = make()
        except Exception as e:  # a row that cannot run here says why and the rest go on
            results.append((name, None, f"skipped: {type(e).__name__}: {str(e).splitlines()[0][:80]}"))
            continue
        for b in batches:
            x, xi = inputs[b]
            out = be.run_steps(x, xi, eta, nu)  # warm-up (captures graphs, compiles)
            times = []
            for _ in range(args.repeats):
                sync(device)
                t0 = time.perf_counter()
                out = be.run_steps(x, xi, eta, nu)
                sync(device)
                times.append(time.perf_counter() - t0)
            samples[(name, b)] = (x.float().cpu(), out.float().cpu())
            results.append((name, b, float(np.median(times))))
        if not isinstance(be, NumpyRow) or be.fd:  # 1,000 samples after K + kappa steps, for the sample-level FD
            ids = np.arange(n_fd, dtype=np.int64)
            runner = be.backend if isinstance(be, NumpyRow) else be
            samples[(name, "fd")] = sample_batch(runner, art, ids, 0, steps).reshape(n_fd, -1)
            if name == base_name:
                samples[(name, "fd_seed1")] = sample_batch(be, art, ids, 1, steps).reshape(n_fd, -1)
    proj = np.random.default_rng(0).standard_normal((int(np.prod(shape)), 64)) / np.sqrt(np.prod(shape))
    fd_base = samples.get((base_name, "fd"))
    floor = frechet(samples[(base_name, "fd_seed1")] @ proj, fd_base @ proj) if fd_base is not None else float("nan")

    train_rows = []
    if time.perf_counter() - t_start < args.budget:
        from benchmarks.gpu_train_check import measure_training
        train_rows = measure_training(small, args.train_steps)
    else:
        train_rows = [("training", None, "skipped: past the time budget")]

    print(f"\nagreement: per-sample relative error of one {NOISE_BLOCK}-step block's displacement against "
          f"{base_name}; FD of {n_fd} samples after {steps} steps (64-d random projection) against it, "
          f"noise floor (another seed) {floor:.3g}. fp32 rows without TF32.")
    print(f"\n| row | batch | samples/s ({steps} steps) | TFLOP/s | of the bf16 peak | block error median / p99 "
          f"| FD vs fp32 eager |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, b, s in results:
        if b is None:
            print(f"| {name} | | {s} | | | | |")
            continue
        x0, out = samples[(name, b)]
        bx0, bout = samples[(base_name, b)]
        d, bd = (out - x0).reshape(b, -1).double(), (bout - bx0).reshape(b, -1).double()
        e = ((d - bd).norm(dim=1) / bd.norm(dim=1).clamp_min(1e-30)).numpy()
        tflops = flops * b * NOISE_BLOCK / s / 1e12
        fd = samples.get((name, "fd"))
        fd_text = f"{frechet(fd @ proj, fd_base @ proj):.3g}" if fd is not None and fd_base is not None else "–"
        print(f"| {name} | {b} | {b * NOISE_BLOCK / s / steps:,.1f} | {tflops:.2f} | {tflops / peak:.1%} | "
              f"{np.median(e):.1e} / {np.quantile(e, 0.99):.1e} | {fd_text} |")
    for name, steps_s, note in train_rows:
        print(f"| training: {name} | | {note if steps_s is None else f'{steps_s:.3f} steps/s ({note})'} | | | | |")
    print(f"\ngpu_check: {time.perf_counter() - t_start:.0f} s in all", file=sys.stderr)


class NumpyRow:
    """A numpy-in, numpy-out backend (TensorRT, ONNX Runtime) behind the torch-tensor
    interface the rows above share; its timing includes x's copy in and out per block."""

    def __init__(self, backend, fd: bool):
        self.backend, self.fd = backend, fd

    def run_steps(self, x, noise_block, eta, nu, y=None):
        out = self.backend.run_steps(x.cpu().numpy(), noise_block.cpu().numpy(), eta, nu)
        return torch.from_numpy(self.backend.to_numpy(out)).to(x.device)


def tensorrt_row(ckpt, tmp: Path, precision: str, batches):
    """Export the engine in-process (checked against ONNX Runtime), then its backend."""
    from fdrl_export.export import ExportOptions, export
    from fdrl_runtime.backends.tensorrt import TensorRTBackend
    torch.save(ckpt, tmp / "ck.pt")
    export(tmp / "ck.pt", tmp / "e.plan", ExportOptions(precision=precision, batch=f"1:{batches[0]}:{batches[-1]}"))
    return NumpyRow(TensorRTBackend(load_artifact(tmp / "e.plan"), device="cuda", precision=precision), fd=False)


def onnxruntime_row(ckpt, tmp: Path, device: str):
    """Export the .onnx artifact in-process (the float64 check is the test suite's), then the
    runtime's ONNX Runtime backend: blocks of steps as one Scan; on a GPU with I/O binding."""
    from fdrl_export.export import ExportOptions, export
    from fdrl_runtime.backends.onnxruntime import OnnxRuntimeBackend
    torch.save(ckpt, tmp / "ck.pt")
    export(tmp / "ck.pt", tmp / "m.onnx", ExportOptions(check=False), log=lambda line: None)
    return NumpyRow(OnnxRuntimeBackend(load_artifact(tmp / "m.onnx"), device=device), fd=True)


if __name__ == "__main__":
    main()
