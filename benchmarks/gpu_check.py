"""The GPU check: one run on a lent GPU that measures the headline (see gpu_check.sh).

Rows, most important first, each printed (and appended to gpu_check.md under $OUT, else
benchmarks/out/) the moment it is measured, each guarded: a row that fails is one line
saying why and the rest go on; SIGTERM / SIGINT print the table of what was measured. A
row starts only if its estimate (from the rows already measured) fits the budget.

On the CIFAR-10 ResNet (the `cifar10` preset's architecture, random weights, spectral norm
folded; 8.15 GFLOP per sample-step), same weights, x and noise in every row:
- the reference-style loop (autograd.grad each step, model in train mode) with PyTorch's
  defaults (cuDNN TF32 on): the row every "× reference" divides by; with one line of
  autocast bf16; with autocast and channels_last (the best a user gets by hand);
- fp32 without TF32, the runtime's torch backend op by op: the accuracy yardstick every
  "block error" and "FD" compares with;
- the runtime's torch backend (what fdrl-infer runs): bf16 with and without CUDA graphs,
  channels_last on and off, fp32 / tf32 / fp16 with graphs;
- one whole `fdrl-infer -n 10000 --precision bf16` command (process start, load, prior,
  noise, flow, copies, PNG writing), timed from outside;
- MNIST's ResNet (0.119 GFLOP per sample-step): the reference with autocast against the
  runtime's bf16;
- torch.compile of the exported step (one batch shape: one compile);
- training steps/s (benchmarks/gpu_train_check.py);
- ONNX Runtime and TensorRT where they can run on this GPU, else one line saying why.

Columns: ms per flow step and the flow's samples/s (K + kappa steps of the flow alone:
no prior draw, noise, copies or writing; the end-to-end row has those), × the reference
row at the same batch, TFLOP/s, the fraction of a bf16 GEMM peak measured in this run,
the per-sample relative error of one 10-step block's displacement against the yardstick,
and the Fréchet distance of samples after K + kappa steps to the yardstick's (a fixed
random 64-d projection; the yardstick's own other-seed distance is the noise floor).

--small: tiny models on the CPU, the same rows (those needing CUDA say so): a dry run
anywhere; the test suite runs it, with a row made to fail and with a SIGTERM half-way.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fdrl_eval.metrics import feature_stats, frechet_distance  # noqa: E402
from fdrl_export.graph import drift_module, estimator_from_checkpoint  # noqa: E402
from fdrl_export.meta import build_meta  # noqa: E402
from fdrl_export.to_torch import export_program, save_program  # noqa: E402
from fdrl_runtime.artifact import load_artifact  # noqa: E402
from fdrl_runtime.backends.base import Backend  # noqa: E402
from fdrl_runtime.backends.torch import TorchBackend, _tf32_flags  # noqa: E402
from fdrl_runtime.loop import NOISE_BLOCK, euler_steps, sample_batch  # noqa: E402
from fdrl_train.checkpoint import checkpoint_dict  # noqa: E402
from fdrl_train.config import validate  # noqa: E402
from fdrl_train.losses import DIVERGENCES  # noqa: E402
from fdrl_train.models import build_model  # noqa: E402

OPTIONAL = ("onnx", "onnxruntime", "tensorrt", "cuda.bindings", "cupy", "triton")
COLUMNS = ("row", "batch", "ms / step", "flow samples/s", "× reference", "TFLOP/s", "of the peak",
           "block error median / p99", "FD vs fp32")


class Interrupted(BaseException):
    """SIGTERM or SIGINT: not an Exception, so no row's guard swallows it."""


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
          f"missing {', '.join(missing) or 'nothing'} (their rows say so)", flush=True)
    return found


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def gemm_peak(device: str, small: bool) -> float:
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


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*feature_stats(a), *feature_stats(b))


# --- the rows' runners: run_steps(x, noise_block, eta, nu) on torch tensors ----------------------

class Eager(TorchBackend):
    """The torch backend without CUDA graphs: the base class's step loop (channels_last kept)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, compile=False, trust_pickle=True, **kw)

    def run_steps(self, x, noise_block, eta, nu, y=None):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._tf32():
            return Backend.run_steps(self, x, noise_block, eta, nu, y).contiguous()


class Compiled(TorchBackend):
    """The exported module under torch.compile (one call per step, one batch shape)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, compile=False, trust_pickle=True, **kw)
        self.step_fn = torch.compile(self.module, dynamic=False)

    def drift(self, x, y=None):
        with torch.no_grad(), torch.autocast(self.dev.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.step_fn(x)[0].float().clone()  # its outputs may be reused buffers

    def run_steps(self, x, noise_block, eta, nu, y=None):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._tf32():
            return euler_steps(self.drift, x, noise_block, eta, nu).contiguous()


class ReferenceRow(TorchBackend):
    """The reference-style loop (autograd.grad each step, model in train mode, as
    clear-nus/fdrl samples) on its own copy of the model, with the backend's prior and noise
    draws so its samples are comparable; optionally with autocast and channels_last, the
    two lines a user would add by hand."""

    def __init__(self, art, device, net, cfg, autocast=None, channels_last=False):
        super().__init__(art, device=device, channels_last=False, compile=False, trust_pickle=True)
        self.net, self.cfg, self.amp, self.cl = copy.deepcopy(net), cfg, autocast, channels_last
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def run_steps(self, x, noise_block, eta, nu, y=None):
        if self.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.clone().requires_grad_(True)
        f_prime = DIVERGENCES[self.cfg["divergence"]].f_prime  # as reference_loop.reference_flow
        for xi in noise_block:
            with torch.autocast(x.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                score = f_prime(self.net(x)).sum()
            grad = torch.autograd.grad(score, [x])[0]
            x = (x - eta * grad.float() + nu * xi).detach().requires_grad_(True)
        return x.detach().contiguous()


class NumpyRow:
    """A numpy-in, numpy-out backend (TensorRT, ONNX Runtime) behind the torch-tensor
    interface; its timing includes x's copy in and out per block."""

    def __init__(self, backend):
        self.backend = backend

    def run_steps(self, x, noise_block, eta, nu, y=None):
        out = self.backend.run_steps(x.cpu().numpy(), noise_block.cpu().numpy(), eta, nu)
        return torch.from_numpy(self.backend.to_numpy(out)).to(x.device)


# --- models, rows and the table ---------------------------------------------------------------------

@dataclass
class Suite:
    """One model: its artifact, inputs per batch, and what its rows are compared with."""
    label: str
    art: object
    ckpt: dict
    net: torch.nn.Module
    cfg: dict
    shape: tuple
    batches: list
    inputs: dict
    tmp: Path
    ref_time: dict = field(default_factory=dict)      # batch -> reference seconds per block
    base_out: dict = field(default_factory=dict)      # batch -> (x0, out) of the yardstick
    base_fd: np.ndarray | None = None
    floor: float = float("nan")
    proj: np.ndarray | None = None
    n_fd: int = 0                                     # samples for the Fréchet distance

    @property
    def flops(self) -> float:
        return float(self.art.meta.flops_per_sample or 0.0)

    @property
    def steps(self) -> int:
        return self.art.default_steps


@dataclass
class Row:
    name: str
    make: Callable[[], object] | None
    batches: list | None = None        # None: all the suite's batches
    tf32: bool | None = None           # None: PyTorch's defaults; False: exact fp32
    speed: float = 1.0                 # a guess of its block time over the reference's, for the estimate
    setup: float = 0.0                 # seconds before its first timed block (compiles, exports)
    fd: bool = True                    # also sample K + kappa steps for the Fréchet distance
    role: str = ""                     # "reference" or "yardstick"
    skip: str = ""                     # why it cannot run here (costs nothing)
    run: Callable[[], tuple] | None = None  # a row measured its own way: () -> (seconds, note)


@dataclass
class Result:
    suite: Suite
    name: str
    batch: int | None = None
    seconds: float | None = None       # per block of NOISE_BLOCK steps
    note: str = ""
    out: tuple | None = None
    fd: np.ndarray | None = None


class Table:
    """The rows as they come: printed and appended to a file at once; the whole table on demand."""

    def __init__(self, path: Path, peak: float, peak_kind: str):
        self.results: list[Result] = []
        self.path, self.peak, self.peak_kind = path, peak, peak_kind
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(f"\n<!-- gpu_check {time.strftime('%Y-%m-%d %H:%M:%S')} -->\n" + self.header() + "\n")
        print(self.header(), flush=True)

    def header(self) -> str:
        return "| " + " | ".join(COLUMNS) + " |\n|" + "|".join([" --- "] + [" ---: "] * (len(COLUMNS) - 1)) + "|"

    def _write(self, text: str):
        with open(self.path, "a") as f:
            f.write(text)

    def add(self, result: Result):
        self.results.append(result)
        line = self.line(result)
        print(line, flush=True)
        self._write(line + "\n")

    def line(self, r: Result) -> str:
        s = r.suite
        name = f"{s.label}: {r.name}"
        if r.seconds is None or r.batch is None:
            cells = [name, "" if r.batch is None else str(r.batch), r.note] + [""] * (len(COLUMNS) - 3)
            return "| " + " | ".join(cells) + " |"
        b, t = r.batch, r.seconds
        tflops = s.flops * b * NOISE_BLOCK / t / 1e12
        ref = s.ref_time.get(b)
        err = ""
        if r.out is not None and b in s.base_out:
            (x0, out), (bx0, bout) = r.out, s.base_out[b]
            d, bd = (out - x0).reshape(b, -1).double(), (bout - bx0).reshape(b, -1).double()
            e = ((d - bd).norm(dim=1) / bd.norm(dim=1).clamp_min(1e-30)).numpy()
            err = f"{np.median(e):.1e} / {np.quantile(e, 0.99):.1e}"
        fd = ""
        if r.fd is not None and s.base_fd is not None:
            fd = f"{frechet(r.fd @ s.proj, s.base_fd @ s.proj):.3g}"
        cells = [name + (f" ({r.note})" if r.note else ""), str(b), f"{t / NOISE_BLOCK * 1e3:.2f}",
                 f"{b * NOISE_BLOCK / t / s.steps:,.1f}" if s.steps else "", f"{ref / t:.2f}×" if ref else "",
                 f"{tflops:.2f}", f"{tflops / self.peak:.1%}" if self.peak else "", err, fd]
        return "| " + " | ".join(cells) + " |"

    def print_all(self, title: str):
        """The whole table, each row recomputed with what later rows measured (the yardstick's
        samples, the reference's time); the file already holds each row as it came."""
        print(f"\n{title}\n\n{self.header()}\n" + "\n".join(self.line(r) for r in self.results), flush=True)
        self._write(f"<!-- {title} -->\n")


def make_suite(label: str, model: str, shape: tuple, cfg_extra: dict, batches: list, device: str, n_fd_batches: int):
    cfg = validate({"model": model, "dataset": "cifar10" if shape[0] == 3 else "mnist", "spectral_norm": True,
                    "eta": 3.0, "noise": 0.01, **cfg_extra})
    torch.manual_seed(0)
    m = build_model(cfg, shape)
    prior = {"kind": "up", "shape": list(shape), "clamp": True}
    ckpt = checkpoint_dict(cfg, m.state_dict(), m.state_dict(), prior, shape, (-1.0, 1.0), 0)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    est = estimator_from_checkpoint(ckpt)
    module = drift_module(est).eval()
    meta, arrays = build_meta(est, ckpt, prior, module, "0" * 64)
    save_program(export_program(module, shape), tmp / "m.pt2", meta, arrays)
    art = load_artifact(tmp / "m.pt2")
    net = build_model(cfg, shape).to(device)
    net.load_state_dict(m.state_dict())
    net.train()  # as the reference samples: spectral norm's power iteration keeps running
    gen = torch.Generator(device="cpu").manual_seed(3)
    inputs = {b: ((torch.rand((b,) + shape, generator=gen) * 2 - 1).to(device),
                  torch.randn((NOISE_BLOCK, b) + shape, generator=gen).to(device)) for b in batches}
    d = int(np.prod(shape))
    proj = np.random.default_rng(0).standard_normal((d, 64)) / np.sqrt(d)
    return Suite(label, art, ckpt, net, cfg, shape, batches, inputs, tmp, proj=proj, n_fd=n_fd_batches * max(batches))


def cifar_rows(s: Suite, device: str, found: dict, small: bool, compile_batch: int) -> list[Row]:
    cuda, art = device == "cuda", s.art
    no_gpu = "" if cuda else "needs a CUDA GPU"
    tb = lambda **kw: (lambda: TorchBackend(art, device=device, trust_pickle=True, **kw))  # noqa: E731
    rows = [
        Row("reference loop fp32, PyTorch defaults", lambda: ReferenceRow(art, device, s.net, s.cfg),
            role="reference", fd=True),
        Row("fp32 without TF32, runtime op by op (accuracy yardstick)",
            lambda: Eager(art, device=device, channels_last=False), tf32=False, speed=2.0,
            role="yardstick"),
        Row("runtime bf16 + CUDA graphs + channels_last (fdrl-infer --precision bf16)", tb(precision="bf16"),
            speed=0.5, skip=no_gpu),
        Row("reference loop + autocast bf16 (one line)",
            lambda: ReferenceRow(art, device, s.net, s.cfg, autocast=torch.bfloat16), speed=0.6, skip=no_gpu),
        Row("reference loop + autocast bf16 + channels_last (two lines)",
            lambda: ReferenceRow(art, device, s.net, s.cfg, autocast=torch.bfloat16, channels_last=True),
            speed=0.5, skip=no_gpu),
        Row("end to end: fdrl-infer -n 10000 --precision bf16 (the whole command)" if cuda else
            "end to end: fdrl-infer -n 64 (the whole command)", None, batches=[], fd=False,
            speed=(10000 / max(s.batches) * 12 * 0.5) if cuda else 4 * 2,
            setup=15.0, run=lambda: end_to_end(s, device)),
        Row("runtime bf16 eager + channels_last (no CUDA graphs)",
            lambda: Eager(art, device=device, precision="bf16"), speed=0.5, skip=no_gpu),
        Row("runtime bf16 + CUDA graphs, NCHW (channels_last off)", tb(precision="bf16", channels_last=False),
            speed=0.7, skip=no_gpu),
        Row("runtime fp32 + CUDA graphs (no TF32: fdrl-infer's fp32)", tb(), tf32=False, speed=2.0,
            skip="" if cuda else "CUDA graphs need a CUDA GPU"),
        Row("runtime tf32 + CUDA graphs (--precision tf32)", tb(precision="tf32"), speed=1.0, skip=no_gpu),
        Row("runtime fp16 + CUDA graphs + channels_last", tb(precision="fp16"), speed=0.5, skip=no_gpu),
        Row("torch.compile of the exported step, fp32 (PyTorch defaults)" if not cuda else
            "torch.compile of the exported step, autocast bf16 + channels_last",
            lambda: Compiled(art, device=device, precision="bf16" if cuda else "fp32"),
            batches=[compile_batch], speed=0.4 if cuda else 1.0, setup=150.0 if cuda else 40.0, fd=True),
    ]
    rows.append(onnxruntime_row(s, device, found))
    rows.append(tensorrt_row(s, device, found))
    return rows


def mnist_rows(s: Suite, device: str) -> list[Row]:
    art, cuda = s.art, device == "cuda"
    amp = torch.bfloat16 if cuda else None
    return [
        Row("reference loop + autocast bf16" if cuda else "reference loop fp32",
            lambda: ReferenceRow(art, device, s.net, s.cfg, autocast=amp), role="reference", fd=False),
        Row("fp32 without TF32, runtime op by op (accuracy yardstick)",
            lambda: Eager(art, device=device, channels_last=False), tf32=False, speed=2.0,
            role="yardstick", fd=False),
        Row("runtime bf16 + CUDA graphs + channels_last", lambda: TorchBackend(art, device=device, precision="bf16",
                                                                              trust_pickle=True),
            speed=0.6, fd=False, skip="" if cuda else "needs a CUDA GPU"),
        Row("runtime bf16 + CUDA graphs, NCHW", lambda: TorchBackend(art, device=device, precision="bf16",
                                                                    trust_pickle=True, channels_last=False),
            speed=0.6, fd=False, skip="" if cuda else "needs a CUDA GPU"),
    ]


def onnxruntime_row(s: Suite, device: str, found: dict) -> Row:
    """The runtime's ONNX Runtime backend (blocks of steps as one Scan); on a GPU only with
    onnxruntime-gpu's CUDA provider, else one line and no export."""
    name = "ONNX Runtime fp32 (" + ("CUDA provider, I/O binding)" if device == "cuda" else "CPU provider)")
    if "onnxruntime" not in found:
        return Row(name, None, skip="onnxruntime does not import")
    if device == "cuda":
        import onnxruntime
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return Row(name, None, skip="this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); "
                                        "its CPU rows are in the CPU tables")

    def make():
        from fdrl_export.export import ExportOptions, export
        from fdrl_runtime.backends.onnxruntime import OnnxRuntimeBackend
        torch.save(s.ckpt, s.tmp / "ck.pt")
        export(s.tmp / "ck.pt", s.tmp / "m.onnx", ExportOptions(check=False), log=lambda line: None)
        return NumpyRow(OnnxRuntimeBackend(load_artifact(s.tmp / "m.onnx"), device=device))
    return Row(name, make, tf32=False, speed=2.0, setup=20.0, fd=False)


def tensorrt_row(s: Suite, device: str, found: dict) -> Row:
    name = "TensorRT fp16 engine"
    if device != "cuda" or "tensorrt" not in found:
        return Row(name, None, skip="tensorrt does not import here" if device == "cuda" else "needs a CUDA GPU")

    def make():
        from fdrl_export.export import ExportOptions, export
        from fdrl_runtime.backends.tensorrt import TensorRTBackend
        torch.save(s.ckpt, s.tmp / "ck.pt")
        export(s.tmp / "ck.pt", s.tmp / "e.plan",
               ExportOptions(precision="fp16", batch=f"1:{s.batches[-1]}:{max(s.batches)}"), log=lambda line: None)
        return NumpyRow(TensorRTBackend(load_artifact(s.tmp / "e.plan"), device="cuda", precision="fp16"))
    return Row(name, make, speed=0.5, setup=120.0, fd=False)


def end_to_end(s: Suite, device: str) -> tuple[float, str]:
    """fdrl-infer as a user runs it, timed from outside: (seconds, note)."""
    cuda = device == "cuda"
    n = 10000 if cuda else 64
    out = s.tmp / "e2e"
    cmd = [sys.executable, "-m", "fdrl_runtime.cli", "--engine", str(s.art.path), "-n", str(n), "--out", str(out),
           "--device", device, "--precision", "bf16" if cuda else "fp32", "--trust-pickle", "--quiet", "--overwrite"]
    if not cuda:
        cmd.append("--no-compile")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"fdrl-infer exited {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1][:160]}")
    summary = json.loads((out / "summary.json").read_text())
    note = (f"{n} samples in {wall:.1f} s whole = {n / wall:,.1f} samples/s; generation alone "
            f"{summary['seconds']:.1f} s at batch {summary['batch']}")
    return wall, note


def fd_samples(runner, s: Suite, seed: int) -> np.ndarray:
    """s.n_fd samples after K + kappa steps, in batches of the largest measured batch (no new shape)."""
    b = max(s.batches)
    parts = [sample_batch(runner, s.art, np.arange(i, min(i + b, s.n_fd), dtype=np.int64), seed, s.steps)
             for i in range(0, s.n_fd, b)]
    return np.concatenate(parts).reshape(s.n_fd, -1)


class Clock:
    def __init__(self, budget: float):
        self.t0, self.budget = time.perf_counter(), budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()


def estimate(row: Row, s: Suite, repeats: int) -> float | None:
    """Seconds the row should take, from the suite's reference row; None before that is measured."""
    if not s.ref_time:
        return None
    per_block = {b: s.ref_time.get(b, max(s.ref_time.values())) * row.speed for b in (row.batches or s.batches)}
    t = row.setup + sum((1 + repeats) * v for v in per_block.values())
    if row.fd:
        t += (s.n_fd / max(s.batches)) * -(-s.steps // NOISE_BLOCK) * s.ref_time[max(s.batches)] * row.speed
    if row.run is not None:
        t = row.setup + row.speed * s.ref_time[max(s.batches)]
    return t


def measure(row: Row, s: Suite, table: Table, device: str, repeats: int, fail_row: str):
    if fail_row and fail_row in row.name:
        raise RuntimeError("injected fault (GPU_CHECK_FAIL_ROW)")
    eta, nu = s.art.meta.eta, s.art.meta.noise
    if row.run is not None:
        seconds, note = row.run()
        table.add(Result(s, row.name, None, None, note))
        return
    be = row.make()
    for b in row.batches or s.batches:
        x, xi = s.inputs[b]
        out = be.run_steps(x, xi, eta, nu)  # warm-up: captures graphs, compiles
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            out = be.run_steps(x, xi, eta, nu)
            sync(device)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        tf32 = f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}"  # as the row ran
        pair = (x.float().cpu(), out.float().cpu())
        if row.role == "reference":
            s.ref_time[b] = t
        if row.role == "yardstick":
            s.base_out[b] = pair
        fd = None
        if row.fd and b == max(row.batches or s.batches):
            runner = be.backend if isinstance(be, NumpyRow) else be
            fd = fd_samples(runner, s, 0)
            if row.role == "yardstick":
                s.base_fd = fd
                s.floor = frechet(fd_samples(runner, s, 1) @ s.proj, fd @ s.proj)
        table.add(Result(s, row.name, b, t, tf32, pair, fd))
    close = getattr(be, "close", None)
    if close:
        close()


def tf32_context(flag: bool | None):
    """The row's TF32 setting (None: PyTorch's defaults, untouched); set on a CPU too, where
    it changes nothing but the table still says what each row asked for."""
    return contextlib.nullcontext() if flag is None else _tf32_flags(torch, flag)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="tiny models and batches: a dry run on a CPU")
    ap.add_argument("--batches", default=None, help="comma-separated (default 256,1024; --small 8,16)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=330.0, help="seconds; a row that would end past it is skipped")
    ap.add_argument("--train-steps", type=int, default=8)
    args = ap.parse_args()
    clock = Clock(args.budget)
    fail_row = os.environ.get("GPU_CHECK_FAIL_ROW", "")
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "out"

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from fdrl_export.to_onnx import quiet_exporter_logs
    quiet_exporter_logs()  # process-wide: set at this script's entry
    device = "cuda" if torch.cuda.is_available() else "cpu"
    found = probe(device)
    small = args.small or device == "cpu"
    batches = [int(b) for b in (args.batches or ("8,16" if small else "256,1024")).split(",")]
    peak = gemm_peak(device, small)
    peak_kind = "bf16" if device == "cuda" else "fp32"
    print(f"device {device}; {peak_kind} GEMM peak {peak:.1f} TFLOP/s; budget {args.budget:.0f} s; "
          f"rows also in {out_dir / 'gpu_check.md'}", flush=True)
    table = Table(out_dir / "gpu_check.md", peak, peak_kind)
    status = "complete"
    try:
        suites = [
            (lambda: make_suite("cifar10", "resnet8" if small else "resnet32", (1, 8, 8) if small else (3, 32, 32),
                                {"flow_steps": 10 if small else 100, "refine_steps": 0 if small else 20},
                                batches, device, 4 if small else 1),
             lambda s: cifar_rows(s, device, found, small, max(batches))),
            (lambda: make_suite("mnist", "resnet8" if small else "resnet28", (1, 8, 8) if small else (1, 28, 28),
                                {"flow_steps": 10 if small else 80, "refine_steps": 0 if small else 20},
                                [max(batches)], device, 1),
             lambda s: mnist_rows(s, device)),
        ]
        for make_s, make_rows in suites:
            try:
                s = make_s()
            except Exception as e:
                print(f"gpu_check: a model could not be built: {type(e).__name__}: {e}", flush=True)
                continue
            print(f"{s.label}: {s.cfg['model']} {s.shape}, {s.flops / 1e9:.3f} GFLOP per sample-step, "
                  f"{s.steps} steps, batches {s.batches}", flush=True)
            for row in make_rows(s):
                run_row(row, s, table, device, args.repeats, clock, fail_row)
            if s.label == "cifar10":
                train_rows(s, table, small, args.train_steps, clock, fail_row)
    except Interrupted as e:
        status = f"interrupted by {e} after {clock.elapsed():.0f} s"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the table short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"\nagreement: per-sample relative error of one {NOISE_BLOCK}-step block's displacement against the "
              "fp32-without-TF32 yardstick; FD of samples after K + kappa steps (64-d random projection) against "
              "it. × reference: the reference loop with PyTorch's defaults, same model and batch (MNIST: with "
              "autocast). Flow samples/s: the flow alone (a block's time × its share of K + kappa).", flush=True)
        floors = [f"{r.suite.label} {r.suite.floor:.3g}" for r in table.results if r.suite.floor == r.suite.floor]
        if floors:
            print(f"FD noise floor (the yardstick against itself with another seed): {', '.join(sorted(set(floors)))}")
        table.print_all(f"gpu_check ({status}; {clock.elapsed():.0f} s; {device}; peak {peak:.1f} TFLOP/s {peak_kind}):")
        print(f"\ngpu_check: {status}, {clock.elapsed():.0f} s in all", file=sys.stderr, flush=True)
    return 0 if status == "complete" else 3


def run_row(row: Row, s: Suite, table: Table, device: str, repeats: int, clock: Clock, fail_row: str):
    if row.skip:
        table.add(Result(s, row.name, None, None, f"not run: {row.skip}"))
        return
    need = estimate(row, s, repeats)
    if need is not None and need > clock.left():
        table.add(Result(s, row.name, None, None, f"skipped: needs ~{need:.0f} s, {max(clock.left(), 0):.0f} s left"))
        return
    try:
        with tf32_context(row.tf32):
            measure(row, s, table, device, repeats, fail_row)
    except Exception as e:  # a row that fails is a line in the table; the rest go on
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        table.add(Result(s, row.name, None, None, f"failed: {type(e).__name__}: {msg}"))


def train_rows(s: Suite, table: Table, small: bool, steps: int, clock: Clock, fail_row: str):
    from benchmarks.gpu_train_check import measure_training
    need = 0 if small else 60.0
    if need > clock.left():
        table.add(Result(s, "training", None, None, f"skipped: needs ~{need:.0f} s, {clock.left():.0f} s left"))
        return

    def emit(row):
        name, steps_s, note = row
        text = note if steps_s is None else f"{steps_s:.3f} steps/s; {note}"
        table.add(Result(s, f"training: {name}", None, None, text))
    try:
        measure_training(small, steps, log=lambda line: print(line, flush=True), emit=emit, fail_row=fail_row)
    except Exception as e:
        table.add(Result(s, "training", None, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"))


if __name__ == "__main__":
    sys.exit(main())
