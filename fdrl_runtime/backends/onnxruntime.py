"""ONNX Runtime: the CPU provider everywhere, the CUDA provider where onnxruntime-gpu is installed.

The loop runs blocks of steps (fdrl_core.step_graph.block_model: a Scan of the drift graph
plus the update), so a call costs one dispatch per block of steps, not per step. On the
CPU the batch is split across `workers` single-threaded sessions run side by side (at these
sizes one session's intra-op threads cost more than they give: toy MLP, batch 1024, 0.83 ms
per step on 2 threads against 0.48 ms on 2 x 1; NOTES.md). On a GPU one session runs with
I/O binding: x stays on the device between blocks, and only each block's noise goes up.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fdrl_core.calls import side_by_side
from fdrl_core.errors import one_line
from fdrl_core.launch import available_cores

from .base import Backend, BackendError


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("the onnxruntime backend needs onnxruntime: pip install 'fdrl[onnx]'") from None
    return onnxruntime


def check_graph_io(graph, artifact) -> None:
    """The drift graph's inputs and outputs are what the metadata says (x of sample_shape; drift)."""
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name for o in graph.output}
    if "x" not in inputs or "drift" not in outputs:
        raise BackendError(f"{artifact.path}: the graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                           "not x -> drift: not an fdrl step graph; export it again")
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inputs["x"].type.tensor_type.shape.dim][1:]
    want = list(artifact.sample_shape)
    if len(dims) != len(want) or any(isinstance(g, int) and g != w for g, w in zip(dims, want)):
        raise BackendError(f"{artifact.path}: the graph does not take samples of shape {tuple(want)} as its "
                           f"metadata says (its x is [batch, {', '.join(map(str, dims))}]); export it again")


def cuda_device_id(device: str) -> int:
    """'cuda' -> 0, 'cuda:N' -> N (fdrl_runtime validated the form)."""
    return int(device.split(":", 1)[1]) if ":" in device else 0


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, artifact, device="cpu", precision="fp32", threads=0, trust_pickle=False,
                 io_binding: bool | None = None):
        super().__init__(artifact, device, precision, threads, trust_pickle)
        self.ort = ort = _import_ort()
        if artifact.payload is None:
            raise BackendError("internal: the ONNX artifact was loaded without its graph")
        self.on_gpu = device.startswith("cuda")
        if self.on_gpu:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("--device cuda with the onnxruntime backend needs onnxruntime-gpu "
                                   "(pip uninstall onnxruntime && pip install onnxruntime-gpu); "
                                   "or use --device cpu, or a .pt2 artifact with the torch backend")
            self.providers = [("CUDAExecutionProvider", {"device_id": cuda_device_id(device)}), "CPUExecutionProvider"]
            self.ort_device = ("cuda", cuda_device_id(device))
        else:
            self.providers = ["CPUExecutionProvider"]
            self.ort_device = ("cpu", 0)
        # I/O binding keeps x where the session runs; on the CPU it only adds bookkeeping, but
        # io_binding=True runs that same GPU code path here (the tests do, with no GPU).
        self.io_binding = self.on_gpu if io_binding is None else io_binding
        self.workers = 1 if self.io_binding else (threads or available_cores())
        import onnx
        try:
            self.model = onnx.load_from_string(artifact.payload)
        except Exception as e:
            raise BackendError(f"{artifact.path}: not a readable ONNX graph ({one_line(e, 120)}); export it again") from None
        check_graph_io(self.model.graph, artifact)
        self.sessions: list = []             # drift sessions, made on the first drift() call
        self.blocks: dict[tuple, list] = {}  # (eta, nu) -> block sessions, one per worker
        self.pool = ThreadPoolExecutor(self.workers - 1) if self.workers > 1 else None
        self._block_sessions(artifact.meta.eta, artifact.meta.nu)  # a graph ORT cannot run fails here, at load

    def _session(self, model_bytes: bytes):
        ort = self.ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1 if not self.on_gpu else 0
        so.inter_op_num_threads = 1
        # Spinning threads slow everything else on the machine (shared/DESIGN.md §5).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(model_bytes, so, providers=self.providers)

    def drift(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        x = self.to_numpy(x)
        if not self.sessions:
            self.sessions = [self._loaded(self.artifact.payload, "the drift graph") for _ in range(self.workers)]
        n = self.workers if self.pool is not None and x.shape[0] >= 2 * self.workers else 1
        xs = np.array_split(x, n)
        ys = [None] * n if y is None else np.array_split(np.asarray(y), n)
        feeds = [{"x": a} if b is None else {"x": a, "y": b} for a, b in zip(xs, ys)]
        outs = side_by_side(self.pool, lambda i, f: self.sessions[i].run(["drift"], f)[0], feeds)
        return outs[0] if n == 1 else np.concatenate(outs)

    def _loaded(self, model_bytes: bytes, what: str):
        try:
            return self._session(model_bytes)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph kinds for a graph it cannot load
            raise BackendError(f"{self.artifact.path}: ONNX Runtime cannot load {what} "
                               f"({one_line(e, 120)}); export it again") from None

    def _block_sessions(self, eta: float, nu: float) -> list:
        key = (float(eta), float(nu))
        if key not in self.blocks:
            from fdrl_core.step_graph import block_model
            model = block_model(self.model, eta, nu).SerializeToString()
            self.blocks[key] = [self._loaded(model, "the block of steps built from the graph")
                                for _ in range(self.workers)]
        return self.blocks[key]

    def run_steps(self, x, noise_block, eta: float, nu: float, y=None):
        steps = len(noise_block)
        sessions = self._block_sessions(eta, nu)
        if self.io_binding:
            return self._run_bound(sessions[0], x, noise_block, steps, nu, y)
        x = np.ascontiguousarray(x, dtype=np.float32)
        noise = np.asarray(noise_block, np.float32) if nu else None
        n = self.workers if self.pool is not None and x.shape[0] >= 2 * self.workers else 1
        bounds = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(x.shape[0]), n)])
        parts = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

        def run(i, ab):
            a, b = ab
            # nu = 0: zeros (the graph adds 0 * noise); the noise's length is the Scan's step count.
            feed = {"x_in": x[a:b], "noise_in": np.ascontiguousarray(noise[:, a:b]) if noise is not None else
                    np.zeros((steps, b - a) + x.shape[1:], np.float32)}
            if y is not None:
                feed["y"] = y[a:b]
            return sessions[i].run(["x_out"], feed)[0]

        outs = side_by_side(self.pool, run, parts)
        return outs[0] if n == 1 else np.concatenate(outs)

    def _run_bound(self, session, x, noise_block, steps, nu, y):
        """x as an OrtValue on the session's device in and out; the noise uploaded per block."""
        ort, (kind, index) = self.ort, self.ort_device
        if isinstance(x, np.ndarray):
            x = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x, dtype=np.float32), kind, index)
        shape = tuple(x.shape())
        noise = np.asarray(noise_block, np.float32) if nu else np.zeros((steps,) + shape, np.float32)
        binding = session.io_binding()
        binding.bind_ortvalue_input("x_in", x)
        binding.bind_ortvalue_input("noise_in", ort.OrtValue.ortvalue_from_numpy(noise, kind, index))
        if y is not None:
            binding.bind_ortvalue_input("y", ort.OrtValue.ortvalue_from_numpy(np.asarray(y, np.int64), kind, index))
        binding.bind_output("x_out", kind, index)
        session.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def to_numpy(self, x) -> np.ndarray:
        return x if isinstance(x, np.ndarray) else x.numpy()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.sessions, self.blocks = [], {}


BACKEND = OnnxRuntimeBackend
