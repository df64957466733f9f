"""TensorRT 10 against 11, and the CuPy noise copy, checked with stand-ins for the
libraries (none of this project's machines can install TensorRT or CuPy): the code paths
that decide which API to call, and in what order, are ours and run here."""
import sys
import types

import numpy as np
import pytest

from fdrl_export.graph import ExportError
from fdrl_export.to_tensorrt import _build_engine, build_engine, engine_settings, weak_typing
from fdrl_runtime.backends.base import BackendError
from fdrl_runtime.backends.tensorrt import DeviceArray, TensorRTBackend


def fake_trt(version, flags):
    return types.SimpleNamespace(__version__=version, BuilderFlag=types.SimpleNamespace(**{f: f for f in flags}))


TRT10 = fake_trt("10.13.0", ["FP16", "BF16", "OBEY_PRECISION_CONSTRAINTS", "TF32"])
TRT11 = fake_trt("11.3.0", ["TF32"])


def test_weak_typing_flags_are_those_of_the_installed_tensorrt():
    assert weak_typing(TRT10) and not weak_typing(TRT11)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_tensorrt_11_refuses_reduced_precision_in_one_line(precision):
    with pytest.raises(ExportError, match=r"strongly typed.*tensorrt>=10,<11.*fp32 builds"):
        _build_engine(TRT11, b"", engine_settings("1:4:8", precision, 64, None), print)


def test_tensorrt_library_errors_become_one_line_export_errors(monkeypatch):
    import fdrl_export.to_tensorrt as tt

    def broken(*a, **kw):
        raise AttributeError("type object 'BuilderFlag' has no attribute 'FP16'\nmore")
    monkeypatch.setattr(tt, "require_tensorrt", lambda: TRT11)
    monkeypatch.setattr(tt, "_build_engine", broken)
    with pytest.raises(ExportError, match=r"^TensorRT 11.3.0 failed to build the engine: AttributeError: type object") as e:
        build_engine(b"", (2,), engine_settings("4", "fp32", 64, None))
    assert "\n" not in str(e.value)


class Recorder:
    def __init__(self):
        self.calls = []


def test_cupy_noise_is_finished_before_the_engine_stream_copies_it(monkeypatch):
    rec = Recorder()

    class Stream:
        def synchronize(self):
            rec.calls.append("cupy stream synchronize")

    class CupyArray:
        nbytes = 16
        data = types.SimpleNamespace(ptr=1234)

        def astype(self, *a, **kw):
            return self

        def ravel(self):
            return self

    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: Stream()),
                                 ascontiguousarray=lambda a: a)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    cudart = types.SimpleNamespace(
        cudaMalloc=lambda n: (0, 99),
        cudaMemcpyAsync=lambda *a: rec.calls.append("memcpy on the engine stream") or (0,),
        cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToDevice=3))
    DeviceArray(cudart, (2, 2)).upload(CupyArray(), stream=7)
    assert rec.calls == ["cupy stream synchronize", "memcpy on the engine stream"]
    rec.calls.clear()
    DeviceArray(cudart, (2, 2)).upload(np.zeros((2, 2), np.float32), stream=7)  # host arrays need no sync
    assert rec.calls == ["memcpy on the engine stream"]


def test_engine_run_errors_are_backend_errors():
    be = TensorRTBackend.__new__(TensorRTBackend)

    def boom(*a):
        raise RuntimeError("[TRT] enqueue: illegal memory access\nstack")
    be._run_steps = boom
    with pytest.raises(BackendError, match=r"^TensorRT failed while running the engine: RuntimeError: \[TRT\] enqueue"):
        be.run_steps(np.zeros((1, 2), np.float32), [None], 0.1, 0.0)
