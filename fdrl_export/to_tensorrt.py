"""ONNX -> TensorRT engine (written to the TensorRT 10 and 11 Python APIs; built where it imports).

TensorRT 11 removed the weak-typing builder flags (BuilderFlag.FP16 / BF16 /
OBEY_PRECISION_CONSTRAINTS): its networks are strongly typed, their precision is the ONNX
graph's. fp32 engines build on both; fp16 / bf16 engines use TensorRT 10's flags with the
fp32 layers named below, and on 11 are refused in one line (this project writes no
mixed-precision ONNX graph yet). Nothing here has run: no machine of this project has
TensorRT (shared/DESIGN.md §4).

The engine is built from the fused step graph (inputs x and noise, output x_next, see
fdrl_core.step_graph.step_model) so the runtime can capture the whole K + kappa loop as one CUDA
graph; TensorRT's RandomNormal ignores its seed, so the noise comes in as an input.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .graph import ExportError

PRECISIONS = ("fp32", "fp16", "bf16")
FP16_MAX = 65504.0


@dataclass(frozen=True)
class EngineSettings:
    min_batch: int
    opt_batch: int
    max_batch: int
    precision: str = "fp32"
    workspace_mb: int = 4096
    timing_cache: Path | None = None


def parse_batch_profile(text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' (or one number for all three) -> three positive, ordered integers."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ExportError(f"--batch {text!r}: expected MIN:OPT:MAX, e.g. 1:64:256") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(v > 0 for v in values) or not values[0] <= values[1] <= values[2]:
        raise ExportError(f"--batch {text!r}: expected MIN:OPT:MAX, three positive integers with MIN <= OPT <= MAX, e.g. 1:64:256")
    return values[0], values[1], values[2]


def engine_settings(batch: str, precision: str, workspace_mb: int, timing_cache: str | None) -> EngineSettings:
    if precision not in PRECISIONS:
        raise ExportError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if workspace_mb <= 0:
        raise ExportError(f"--workspace {workspace_mb}: must be a positive number of MiB")
    lo, opt, hi = parse_batch_profile(batch)
    return EngineSettings(lo, opt, hi, precision, workspace_mb, Path(timing_cache) if timing_cache else None)


def require_tensorrt():
    """tensorrt and a CUDA GPU, or an ExportError that says what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError("TensorRT is not installed (pip install 'fdrl[trt]' on a machine with an NVIDIA GPU); "
                          "export to .onnx instead and run it with the onnxruntime backend") from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise ExportError("TensorRT builds need cuda-python: pip install 'fdrl[trt]'") from None
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise ExportError("no CUDA GPU found: TensorRT engines are built on the GPU that runs them; "
                          "export to .onnx instead")
    return trt


def fp32_layer_names(network, trt) -> list[str]:
    """Layers that must stay fp32 in an fp16/bf16 engine: the LeakyReLU-mask products
    with a constant beyond fp16's range (and the clamp after them), and the reduction and
    dense head that produce the score."""
    constants = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONSTANT:
            layer.__class__ = trt.IConstantLayer  # the Python API's way to reach a layer's subtype
            w = layer.weights
            w = w.numpy() if hasattr(w, "numpy") else np.asarray(w)
            if w.size and float(np.abs(w).max()) > FP16_MAX:
                constants[layer.get_output(0).name] = True
    keep, wide_outputs = [], set()
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        inputs = [layer.get_input(j).name for j in range(layer.num_inputs) if layer.get_input(j) is not None]
        if any(n in constants or n in wide_outputs for n in inputs) and layer.type != trt.LayerType.CONVOLUTION:
            keep.append(layer.name)
            wide_outputs.update(layer.get_output(j).name for j in range(layer.num_outputs))
        elif layer.type in (trt.LayerType.REDUCE, trt.LayerType.MATRIX_MULTIPLY) and layer.num_inputs and \
                len(layer.get_input(0).shape) == 2:
            keep.append(layer.name)  # the dense head on pooled features: tiny and score-critical
    return keep


def weak_typing(trt) -> bool:
    """Whether this TensorRT has the precision builder flags (10.x; removed in 11)."""
    return all(hasattr(trt.BuilderFlag, f) for f in ("FP16", "BF16", "OBEY_PRECISION_CONSTRAINTS"))


def build_engine(onnx_bytes: bytes, sample_shape, settings: EngineSettings, log=print) -> bytes:
    trt = require_tensorrt()
    try:
        return _build_engine(trt, onnx_bytes, settings, log)
    except ExportError:
        raise
    except Exception as e:  # TensorRT's Python API raises plain RuntimeError/TypeError/AttributeError
        raise ExportError(f"TensorRT {getattr(trt, '__version__', '?')} failed to build the engine: "
                          f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from None


def _build_engine(trt, onnx_bytes: bytes, settings: EngineSettings, log) -> bytes:
    weak = weak_typing(trt)
    if settings.precision != "fp32" and not weak:
        raise ExportError(f"TensorRT {trt.__version__} builds strongly typed networks only, and this export's "
                          f"graph is fp32: --precision {settings.precision} needs TensorRT 10 "
                          "(pip install 'tensorrt>=10,<11'); --precision fp32 builds here")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since 10; 11 types it strongly
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse the ONNX graph: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        shape = tuple(network.get_input(i).shape)[1:]
        profile.set_shape(name, (settings.min_batch, *shape), (settings.opt_batch, *shape), (settings.max_batch, *shape))
    config.add_optimization_profile(profile)
    # fp32 means fp32: TensorRT would otherwise run convolutions in TF32 on Ampere and later
    # (10-bit mantissa), far outside the export check's 1e-5.
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if settings.precision in ("fp16", "bf16"):
        config.set_flag(trt.BuilderFlag.FP16 if settings.precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        kept = set(fp32_layer_names(network, trt))
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in kept:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
        log(f"fdrl-export: {len(kept)} layers kept in fp32 (LeakyReLU masks, score head): "
            + ", ".join(sorted(kept)[:8]) + (" ..." if len(kept) > 8 else ""))
    cache = None
    if settings.timing_cache is not None:
        blob = settings.timing_cache.read_bytes() if settings.timing_cache.exists() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    if cache is not None:
        settings.timing_cache.write_bytes(bytes(cache.serialize()))
    return bytes(engine)


def engine_runner(engine_bytes: bytes):
    """(x, noise) -> (x_next, drift) on a serialized engine, host arrays in and out: for the
    comparison with ONNX Runtime after a build (check.compare_engine), not for speed."""
    trt = require_tensorrt()
    from fdrl_runtime.backends.tensorrt import DeviceArray, _check, _cudart
    cudart = _cudart()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise ExportError("TensorRT could not load the engine it just built")
    context = engine.create_execution_context()
    stream = _check(cudart.cudaStreamCreate())

    def run(x: np.ndarray, noise: np.ndarray):
        bufs = {name: DeviceArray(cudart, x.shape) for name in ("x", "noise", "x_next", "drift")}
        try:
            for name in ("x", "noise"):
                context.set_input_shape(name, x.shape)
            bufs["x"].upload(np.ascontiguousarray(x, np.float32), stream)
            bufs["noise"].upload(np.ascontiguousarray(noise, np.float32), stream)
            for name, buf in bufs.items():
                context.set_tensor_address(name, buf.ptr)
            if not context.execute_async_v3(stream):
                raise ExportError("TensorRT enqueue failed while comparing the engine with ONNX Runtime")
            return bufs["x_next"].download(stream), bufs["drift"].download(stream)
        finally:
            for buf in bufs.values():
                buf.free()
    return run
