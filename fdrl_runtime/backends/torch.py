"""PyTorch: the .pt2 program from fdrl-export; on a GPU, CUDA graphs and autocast.

The only backend that imports torch, and only when chosen.
"""
from __future__ import annotations

import numpy as np

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
    precisions = ("fp32", "bf16", "fp16")

    def __init__(self, artifact, device="cpu", precision="fp32", threads=0, trust_pickle=False):
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
        try:
            program = torch.export.load(str(artifact.path))
        except Exception as e:  # a damaged archive raises many kinds of error
            raise BackendError(f"{artifact.path} cannot be loaded by torch.export: {str(e).splitlines()[0][:160]}") from None
        self.module = program.module().to(self.dev)
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.graphs: dict[tuple, tuple] = {}  # (batch, steps) -> (graph, x buffer, noise buffer)

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

    def run_steps(self, x, noise_block, eta, nu, y=None):
        if self.dev.type != "cuda" or len(noise_block) != NOISE_BLOCK or y is not None:
            return euler_steps(lambda x_: self.drift(x_, y), x, noise_block, eta, nu)
        return self._replay(x, noise_block, eta, nu)

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


BACKEND = TorchBackend
