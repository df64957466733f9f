"""ONNX Runtime: the CPU provider everywhere, the CUDA provider where installed."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fdrl_core.errors import one_line

from .base import Backend, BackendError


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("the onnxruntime backend needs onnxruntime: pip install 'fdrl[onnx]'") from None
    return onnxruntime


def check_graph_io(session, artifact) -> None:
    """The graph's inputs and outputs are what the metadata says (x of sample_shape; drift)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if "x" not in inputs or "drift" not in outputs:
        raise BackendError(f"{artifact.path}: the graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                           "not x -> drift: not an fdrl step graph; export it again")
    dims = list(inputs["x"].shape)[1:]
    want = list(artifact.sample_shape)
    if len(dims) != len(want) or any(isinstance(g, int) and g != w for g, w in zip(dims, want)):
        raise BackendError(f"{artifact.path}: the graph does not take samples of shape {tuple(want)} as its "
                           f"metadata says (its x is [batch, {', '.join(map(str, dims))}]); export it again")


class OnnxRuntimeBackend(Backend):
    """On the CPU the batch is split across `workers` single-threaded sessions run side by
    side: at these sizes one session's intra-op threads cost more than they give
    (toy MLP, batch 1024: 0.83 ms per step on 2 threads, 0.48 ms on 2 x 1; NOTES.md)."""
    name = "onnxruntime"

    def __init__(self, artifact, device="cpu", precision="fp32", threads=0, trust_pickle=False):
        super().__init__(artifact, device, precision, threads, trust_pickle)
        ort = _import_ort()
        if artifact.payload is None:
            raise BackendError("internal: the ONNX artifact was loaded without its graph")
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("--device cuda needs onnxruntime-gpu (CUDAExecutionProvider is not available); "
                                   "use --device cpu or the torch backend")
            raise BackendError("the onnxruntime CUDA path is not built yet; use --backend torch on a GPU")
        self.workers = threads or min(2, os.cpu_count() or 1)
        try:
            self.sessions = [self._session(ort, 1) for _ in range(self.workers)]
        except Exception as e:  # ORT raises its own Fail/InvalidGraph kinds for a graph it cannot load
            raise BackendError(f"{artifact.path}: ONNX Runtime cannot load the graph ({one_line(e, 120)}); "
                               "export it again") from None
        check_graph_io(self.sessions[0], artifact)
        self.pool = ThreadPoolExecutor(self.workers - 1) if self.workers > 1 else None

    def _session(self, ort, threads: int):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # Spinning threads slow everything else on the machine (shared/DESIGN.md §5).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(self.artifact.payload, so, providers=["CPUExecutionProvider"])

    def drift(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        feeds = [{"x": x} if y is None else {"x": x, "y": y}]
        if self.pool is not None and x.shape[0] >= 2 * self.workers:
            xs = np.array_split(x, self.workers)
            ys = [None] * self.workers if y is None else np.array_split(y, self.workers)
            feeds = [{"x": a} if b is None else {"x": a, "y": b} for a, b in zip(xs, ys)]
        futures = [self.pool.submit(s.run, ["drift"], f) for s, f in zip(self.sessions[1:], feeds[1:])]
        first = self.sessions[0].run(["drift"], feeds[0])[0]
        return first if not futures else np.concatenate([first] + [f.result()[0] for f in futures])

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.sessions = []


BACKEND = OnnxRuntimeBackend
