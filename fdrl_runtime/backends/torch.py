"""PyTorch: the .pt2 program from fdrl-export; on a CPU, inductor-compiled blocks of steps;
on a GPU, CUDA graphs, autocast and (images) channels_last.

On a GPU, fp32 is exact fp32 (cuDNN's and cuBLAS's TF32 off: the accuracy yardstick); tf32
allows TF32, PyTorch's own default for convolutions; bf16 / fp16 run under autocast with
the update in fp32. Image models run in channels_last there (weights converted once at
load, x at the start of each block): cuDNN's bf16 convolutions are NHWC kernels, and an
NCHW graph pays a layout transform around each (H200, the CIFAR-10 ResNet: 392 against
252-261 samples/s, shared/DESIGN.md §4).

The only backend that imports torch, and only when chosen. On the CPU the program run op
by op is slower than the reference autograd loop (the exported graph's backward ops go
through Python one by one); torch.compile of a whole block of steps fuses them: 1.9-3.0x
the uncompiled program on the toy MLP; on the MNIST ResNet 2.5x, 3.8x with the batch split
over one worker per core (measured under load; benchmarks/NOTES.md, session 6). Compiling costs tens of
seconds once per process and batch shape; compile=False (fdrl-infer --no-compile) skips it.
"""
from __future__ import annotations

import contextlib

import numpy as np

from fdrl_core.calls import CompiledOrPlain, side_by_side
from fdrl_core.launch import available_cores

from ..loop import NOISE_BLOCK, euler_steps
from ..noise import Draws, sample_keys
from .base import Backend, BackendError


def refuse_pickles(torch, path) -> None:
    """torch.export.load unpickles parts of an archive (and retries its sample inputs with
    weights_only=False when the safe load fails): refuse any archive where it would."""
    import io
    import zipfile
    import zlib

    from ..artifact import pt2_pickled_members
    try:
        bad = pt2_pickled_members(path)
        with zipfile.ZipFile(path) as z:
            for full in z.namelist():
                if "/data/sample_inputs/" in "/" + full:
                    data = z.read(full)
                    try:
                        torch.load(io.BytesIO(data), weights_only=True)
                    except Exception:  # the restricted unpickler refuses whatever is not plain tensors
                        bad.append(full.split("/", 1)[-1])
    except (zipfile.BadZipFile, OSError, zlib.error, EOFError):
        raise BackendError(f"{path} is not a readable .pt2 archive (truncated or corrupt)") from None
    if bad:
        raise BackendError(f"{path} holds pickled data that loading would execute ({bad[0]}): refused; "
                           "pass --trust-pickle only if you trust where the file came from")


class TorchBackend(Backend):
    name = "torch"
    precisions = ("fp32", "tf32", "bf16", "fp16")

    def __init__(self, artifact, device="cpu", precision="fp32", threads=0, trust_pickle=False, compile=True,
                 channels_last=None):
        super().__init__(artifact, device, precision, threads, trust_pickle)
        try:
            import torch
        except ImportError:
            raise BackendError("the torch backend needs PyTorch: pip install torch") from None
        self.torch = self.xp = torch
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"--device {device}: no CUDA GPU is visible to PyTorch; use --device cpu")
        if precision != "fp32" and not device.startswith("cuda"):
            raise BackendError(f"--precision {precision} needs --device cuda; the CPU runs fp32")
        self.dev = torch.device(device)
        if not trust_pickle:
            refuse_pickles(torch, artifact.path)
        import warnings
        try:
            with warnings.catch_warnings():
                # torch 2.11's loader wraps the archive's read-only bytes with frombuffer and warns
                # that they are not writable; the weights are copied to the device right after.
                warnings.filterwarnings("ignore", message="The given buffer is not writable")
                program = torch.export.load(str(artifact.path))
        except Exception as e:  # a damaged archive raises many kinds of error
            raise BackendError(f"{artifact.path} cannot be loaded by torch.export: {str(e).splitlines()[0][:160]}") from None
        self.module = program.module().to(self.dev)
        self.channels_last = (self.dev.type == "cuda" and len(artifact.sample_shape) == 3
                              if channels_last is None else bool(channels_last) and len(artifact.sample_shape) == 3)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.tf32 = precision != "fp32"  # TF32 only where fp32 is not asked for
        self.graphs: dict[tuple, tuple] = {}  # (batch, steps) -> (graph, x buffer, noise buffer)
        # CPU: full blocks of steps through inductor. Images split the batch over one
        # single-threaded worker per core (convolutions scale better that way on a few
        # cores, as in training's flow); vectors run one batch on every thread.
        self.compiled = None
        self.workers, self.pool, self.padded = 1, None, 0
        if compile and self.dev.type == "cpu":
            self.compiled = CompiledOrPlain(torch.compile(self._block, dynamic=False), self._block,
                                            f"{artifact.path}: the torch backend's block of steps")
            if len(artifact.sample_shape) == 3:
                self.workers = threads or available_cores()
            if self.workers > 1:
                from concurrent.futures import ThreadPoolExecutor
                self.pool = ThreadPoolExecutor(self.workers - 1)

    @property
    def numerics(self) -> str:
        """What decides the numbers: inductor's fused kernels round differently from the program run op by op."""
        return "torch+inductor" if self.compiled is not None and not self.compiled.fell_back else "torch"

    # arrays live on self.dev
    def from_numpy(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)

    def to_numpy(self, x) -> np.ndarray:
        return x.detach().float().cpu().numpy()

    def draws(self, seed: int, ids: np.ndarray) -> Draws:
        torch, dev = self.torch, self.dev
        keys = sample_keys(int(seed), torch.from_numpy(np.asarray(ids, dtype=np.int64)).to(dev))
        return Draws(torch, keys, lambda a: a.to(torch.float32), lambda n: torch.arange(n, dtype=torch.int64, device=dev))

    def drift(self, x, y=None):
        torch = self.torch
        with torch.no_grad(), torch.autocast(self.dev.type, dtype=self.autocast, enabled=self.autocast is not None):
            return (self.module(x) if y is None else self.module(x, y))[0].float()

    def _tf32(self):
        """cuDNN's and cuBLAS's TF32 as the precision says, for this call only (the flags are
        process-wide; a CUDA graph keeps the kernels chosen when it was captured)."""
        torch = self.torch
        if self.dev.type != "cuda":
            return contextlib.nullcontext()
        return _tf32_flags(torch, self.tf32)

    def run_steps(self, x, noise_block, eta, nu, y=None):
        # Once compiling has failed, the plain path: unpadded, so the same shapes as --no-compile.
        if self.compiled is not None and not self.compiled.fell_back and len(noise_block) == NOISE_BLOCK:
            return self._compiled_steps(x, noise_block, eta, nu, y)
        if self.channels_last:
            x = x.contiguous(memory_format=self.torch.channels_last)
        with self._tf32():
            if self.dev.type != "cuda" or len(noise_block) != NOISE_BLOCK or y is not None:
                out = euler_steps(lambda x_: self.drift(x_, y), x, noise_block, eta, nu)
            else:
                out = self._replay(x, noise_block, eta, nu)
        return out.contiguous() if self.channels_last else out

    def _block(self, x, noise, y, eta: float, nu: float):
        """NOISE_BLOCK steps of flow.py's update; what inductor compiles (noise None: nu = 0)."""
        return euler_steps(lambda x_: (self.module(x_) if y is None else self.module(x_, y))[0], x,
                           [None] * NOISE_BLOCK if noise is None else noise, eta, nu)

    def _compiled_steps(self, x, noise_block, eta, nu, y):
        """A full block through the compiled function. A smaller batch than the largest seen
        (the last one) is padded to it, so one compiled shape serves every batch of a run;
        rows are independent, so the padding rows change nothing and are dropped."""
        torch = self.torch
        noise = (noise_block if torch.is_tensor(noise_block) else torch.stack(list(noise_block))) if nu else None
        b = x.shape[0]
        self.padded = max(self.padded, -(-b // self.workers) * self.workers)
        pad = self.padded - b
        if pad:
            x = torch.cat([x, x.new_zeros((pad,) + tuple(x.shape[1:]))])
            noise = None if noise is None else torch.cat([noise, noise.new_zeros((noise.shape[0], pad) + tuple(noise.shape[2:]))], 1)
            y = None if y is None else torch.cat([y, y.new_zeros(pad)])
        parts = list(zip(x.tensor_split(self.workers),
                         [None] * self.workers if noise is None else noise.tensor_split(self.workers, dim=1),
                         [None] * self.workers if y is None else y.tensor_split(self.workers)))
        run = lambda _, p: self.compiled(p[0], p[1], p[2], float(eta), float(nu))  # noqa: E731
        threads = torch.get_num_threads()
        if self.workers > 1:  # process-wide; inductor's kernels take the count they were compiled under
            torch.set_num_threads(1)
        try:
            with torch.no_grad():
                if self.compiled.untried:  # the compiling call, alone
                    outs = [run(0, parts[0])] + (side_by_side(self.pool, run, parts[1:]) if len(parts) > 1 else [])
                else:
                    outs = side_by_side(self.pool, run, parts)
        finally:
            torch.set_num_threads(threads)
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out[:b] if pad else out

    def _replay(self, x, noise_block, eta, nu):
        """A block of steps captured once per batch size as a CUDA graph over static
        buffers, then replayed: one launch instead of hundreds of kernels per step."""
        torch = self.torch
        key = tuple(x.shape)
        if key not in self.graphs:
            x_buf, noise_buf = x.clone(), torch.as_tensor(noise_block).clone() if nu else None
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm up outside the capture
                euler_steps(self.drift, x_buf.clone(), noise_buf if nu else noise_block, eta, nu)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y = euler_steps(self.drift, x_buf, noise_buf if nu else noise_block, eta, nu)
                x_buf.copy_(y)  # the block's result lands where the next replay reads
            self.graphs[key] = (graph, x_buf, noise_buf)
        graph, x_buf, noise_buf = self.graphs[key]
        x_buf.copy_(x)
        if nu:
            noise_buf.copy_(noise_block)
        graph.replay()
        return x_buf.clone()  # the caller may keep x; the buffer is overwritten next replay


    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None


class _tf32_flags:
    """Set torch.backends.cudnn.allow_tf32 and cuda.matmul.allow_tf32; restore them on exit."""

    def __init__(self, torch, allow: bool):
        self.torch, self.allow = torch, allow

    def __enter__(self):
        b = self.torch.backends
        self.saved = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
        b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = self.allow

    def __exit__(self, *exc):
        b = self.torch.backends
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = self.saved


BACKEND = TorchBackend
