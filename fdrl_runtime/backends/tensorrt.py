"""TensorRT: the fused step engine (x, noise -> x_next, drift) from fdrl-export, on one stream,
blocks of steps captured as CUDA graphs and replayed.

Written to the TensorRT 10 and 11 Python APIs (execution is the same in both) and NVIDIA's cuda-python (cudart) for memory,
streams and graphs; it runs only where both import and a GPU is present (none of this
project's machines has TensorRT: shared/DESIGN.md §4). The noise is drawn outside the
engine (TensorRT's RandomNormal ignores its seed): on the GPU with CuPy when it is
installed, otherwise on the host and copied in.
"""
from __future__ import annotations

import numpy as np

from ..noise import Draws, numpy_draws, sample_keys
from .base import Backend, BackendError


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendError("the tensorrt backend needs cuda-python: pip install 'fdrl[trt]'") from None
    return cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA call failed with error {int(err)}")
    return rest[0] if len(rest) == 1 else rest


class DeviceArray:
    """A device buffer owned by the backend (freed in close); shape and dtype float32."""

    def __init__(self, cudart, shape):
        self.cudart, self.shape = cudart, tuple(shape)
        self.nbytes = int(np.prod(shape)) * 4
        self.ptr = _check(cudart.cudaMalloc(self.nbytes))

    def upload(self, a, stream):
        """From a host numpy array, or device to device from a CuPy array. CuPy computes on
        its own current stream, which our non-blocking stream does not wait for: that
        stream is synchronised first, or the copy could read the noise before it is drawn."""
        kinds = self.cudart.cudaMemcpyKind
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a, dtype=np.float32)
            src, kind = a.ctypes.data, kinds.cudaMemcpyHostToDevice
        else:
            import cupy
            a = cupy.ascontiguousarray(a.astype("float32", copy=False)).ravel()
            cupy.cuda.get_current_stream().synchronize()
            src, kind = a.data.ptr, kinds.cudaMemcpyDeviceToDevice
        _check(self.cudart.cudaMemcpyAsync(self.ptr, src, a.nbytes, kind, stream))

    def download(self, stream) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        _check(self.cudart.cudaMemcpyAsync(out.ctypes.data, self.ptr, self.nbytes,
                                           self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        _check(self.cudart.cudaStreamSynchronize(stream))
        return out

    def free(self):
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr = 0


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "bf16")

    def __init__(self, artifact, device="cuda", precision="fp32", threads=0, trust_pickle=False):
        super().__init__(artifact, "cuda" if device == "cpu" else device, precision, threads)
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError("the tensorrt backend needs TensorRT (pip install 'fdrl[trt]' on an NVIDIA GPU "
                               "machine); use an .onnx artifact with --backend onnxruntime") from None
        built = artifact.meta.graph.get("dtype", "fp32")
        if precision != built:
            raise BackendError(f"this engine was built for {built}; --precision {precision} needs another "
                               f"export (fdrl-export --precision {precision})")
        self.cudart, self.trt = _cudart(), trt
        if _check(self.cudart.cudaGetDeviceCount()) == 0:
            raise BackendError("no CUDA GPU found for the tensorrt backend")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(artifact.path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{artifact.path} is not a TensorRT engine for this GPU and TensorRT version: export again here")
        self.context = self.engine.create_execution_context()
        # Engines export the drift too (checked at export); the loop needs only x_next, so
        # the drift goes to a scratch buffer. Engines from before that have no such output.
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.has_drift = "drift" in names
        self.stream = _check(self.cudart.cudaStreamCreateWithFlags(self.cudart.cudaStreamNonBlocking))
        self.lo, _, self.hi = artifact.meta.graph["batch"]
        self.state: dict[tuple, dict] = {}   # per (batch, block length): buffers and graph
        try:
            import cupy
            self.cupy = cupy
        except ImportError:
            self.cupy = None

    def draws(self, seed: int, ids: np.ndarray) -> Draws:
        if self.cupy is None:
            return numpy_draws(seed, ids)
        cp = self.cupy
        keys = sample_keys(int(seed), cp.asarray(np.asarray(ids, dtype=np.int64)))
        return Draws(cp, keys, lambda a: a.astype(cp.float32), lambda n: cp.arange(n, dtype=cp.int64))

    def from_numpy(self, a):
        return a if self.cupy is None else self.cupy.asarray(a)

    def to_numpy(self, x):
        return np.asarray(x) if self.cupy is None else self.cupy.asnumpy(x)

    def _buffers(self, batch: int, steps: int) -> dict:
        key = (batch, steps)
        if key not in self.state:
            if not self.lo <= batch <= self.hi:
                raise BackendError(f"batch {batch} is outside the engine's profile {self.lo}..{self.hi}: "
                                   "use --batch within it or export with --batch MIN:OPT:MAX")
            shape = (batch,) + self.artifact.sample_shape
            st = {"x": [DeviceArray(self.cudart, shape), DeviceArray(self.cudart, shape)],
                  "noise": DeviceArray(self.cudart, (steps,) + shape), "graph": None,
                  "drift": DeviceArray(self.cudart, shape) if self.has_drift else None}
            self.context.set_input_shape("x", shape)
            self.context.set_input_shape("noise", shape)
            self.state[key] = st
        return self.state[key]

    def _enqueue_block(self, st: dict, steps: int, batch: int) -> None:
        """steps engine runs, ping-ponging x between two buffers; even steps end in x[0]."""
        step_bytes = st["noise"].nbytes // steps
        for k in range(steps):
            src, dst = st["x"][k % 2], st["x"][(k + 1) % 2]
            self.context.set_tensor_address("x", src.ptr)
            self.context.set_tensor_address("noise", st["noise"].ptr + k * step_bytes)
            self.context.set_tensor_address("x_next", dst.ptr)
            if st["drift"] is not None:
                self.context.set_tensor_address("drift", st["drift"].ptr)
            if not self.context.execute_async_v3(self.stream):
                raise BackendError("TensorRT enqueue failed")

    def run_steps(self, x, noise_block, eta, nu, y=None):
        try:
            return self._run_steps(x, noise_block, eta, nu, y)
        except BackendError:
            raise
        except Exception as e:  # TensorRT and cuda-python raise plain RuntimeError/TypeError
            raise BackendError(f"TensorRT failed while running the engine: {type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from None

    def _run_steps(self, x, noise_block, eta, nu, y=None):
        if y is not None:
            raise BackendError("class-conditional TensorRT engines are not supported; use the .onnx or .pt2 artifact")
        cudart = self.cudart
        steps = len(noise_block)
        batch = x.shape[0]
        st = self._buffers(batch, steps)
        st["x"][0].upload(x, self.stream)
        st["noise"].upload(noise_block if nu else np.zeros((steps,) + tuple(x.shape), np.float32), self.stream)
        if st["graph"] is None:
            # Run once before capture (TensorRT allocates lazily), then capture on our stream.
            self._enqueue_block(st, steps, batch)
            _check(cudart.cudaStreamSynchronize(self.stream))
            st["x"][0].upload(x, self.stream)
            _check(cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
            self._enqueue_block(st, steps, batch)
            graph = _check(cudart.cudaStreamEndCapture(self.stream))
            st["graph"] = _check(cudart.cudaGraphInstantiate(graph, 0))
        _check(cudart.cudaGraphLaunch(st["graph"], self.stream))
        out = st["x"][steps % 2].download(self.stream)
        return self.from_numpy(out)

    def close(self):
        for st in self.state.values():
            for buf in st["x"] + [st["noise"]] + ([st["drift"]] if st["drift"] is not None else []):
                buf.free()
        self.state = {}


BACKEND = TensorRTBackend
