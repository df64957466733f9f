"""The fused step graph TensorRT is built from (x, noise -> x_next, drift), checked on ONNX
Runtime like every artifact, and the engine-vs-ONNX-Runtime comparison that follows a
build. The TensorRT half runs only where TensorRT imports (never on these machines)."""
import numpy as np
import pytest
import torch
from helpers import random_checkpoint

from fdrl_export.check import (
    ENGINE_LIMITS,
    check_inputs,
    compare_engine,
    update_error_ulps,
)
from fdrl_export.export import checked_step_graph, ort_step_runner
from fdrl_core.step_graph import step_model
from fdrl_export.graph import ExportError, drift_module, estimator_from_checkpoint
from fdrl_export.to_onnx import drift_onnx


def _step(model="resnet28", eta=0.5, nu=0.05, scale_drift=1.0, eta_in_graph=None, **kw):
    ck = random_checkpoint(model, "LR", "KL", sn=True, eta=eta, noise=nu, **kw)
    est = estimator_from_checkpoint(ck)
    module = drift_module(est).eval()
    if scale_drift != 1.0:
        class Scaled(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            conditional = False

            def forward(self, x):
                d, s = self.inner(x)
                return d * scale_drift, s
        module = Scaled(module)
    # what fdrl-export builds an engine from: the drift graph plus the update (fdrl_core.step_graph)
    graph = step_model(drift_onnx(module, est.sample_shape), eta if eta_in_graph is None else eta_in_graph, nu)
    return est, ck["prior"], graph


@pytest.mark.parametrize("model", ["mlp", "resnet28"])
def test_step_graph_passes_the_float64_check_and_the_update_formula(model):
    est, prior, graph = _step(model)
    result = checked_step_graph(est, graph, prior, 0.5, 0.05)
    assert result.passed and result.drift.n == 65 and result.drift.median <= 1e-5
    assert result.update_ulps <= 4


def test_a_wrong_step_graph_is_refused():
    est, prior, graph = _step(eta_in_graph=0.505)  # the update uses another eta than the artifact says
    with pytest.raises(ExportError, match="update x - eta.drift"):
        checked_step_graph(est, graph, prior, 0.5, 0.05)
    est, prior, graph = _step(scale_drift=1.001)  # a drift 0.1% off
    with pytest.raises(ExportError, match="does not match float64"):
        checked_step_graph(est, graph, prior, 0.5, 0.05)


def test_update_error_is_measured_in_fp32_roundings():
    rng = np.random.default_rng(0)
    x, n, d = (rng.standard_normal((4, 10)).astype(np.float32) for _ in range(3))
    exact = (x - np.float32(0.5) * d + np.float32(0.05) * n).astype(np.float32)
    assert update_error_ulps(x, n, exact, d, 0.5, 0.05) <= 2
    assert update_error_ulps(x, n, exact + 1e-4, d, 0.5, 0.05) > 100


def test_engine_comparison_per_precision():
    """ORT itself stands in for the engine: identical passes fp32; the drift rounded to
    fp16 (as an fp16 engine's output would be, at best) passes the fp16 limits and not
    fp32's; a drift 10% off fails every precision."""
    est, prior, graph = _step()
    ref = ort_step_runner(graph)
    batches = [x.numpy() for x in check_inputs(est, prior, (16, 7))]
    same = lambda x, n: ref(x, n)[:2]  # noqa: E731

    def rounded(x, n):
        _, d, _ = ref(x, n)
        d = d.astype(np.float16).astype(np.float32)
        return (x - np.float32(0.5) * d + np.float32(0.05) * n).astype(np.float16).astype(np.float32), d

    def wrong(x, n):
        xn, d, _ = ref(x, n)
        return xn, d * 1.1

    assert compare_engine(same, same, batches, 0.5, 0.05, "fp32").passed
    fp16 = compare_engine(rounded, same, batches, 0.5, 0.05, "fp16")
    assert fp16.passed and fp16.median > ENGINE_LIMITS["fp32"][0], fp16.describe()
    assert not compare_engine(rounded, same, batches, 0.5, 0.05, "fp32").passed
    for precision in ("fp32", "fp16", "bf16"):
        assert not compare_engine(wrong, same, batches, 0.5, 0.05, precision).passed


def test_engine_is_compared_with_onnxruntime_where_tensorrt_runs(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it cannot be on these machines: DESIGN.md §4)")
    from fdrl_export.export import ExportOptions, export
    if not torch.cuda.is_available():
        pytest.skip("TensorRT builds need an NVIDIA GPU")
    ck = random_checkpoint("resnet28", "LR", "KL", sn=True)
    torch.save(ck, tmp_path / "ck.pt")
    logs = []
    export(tmp_path / "ck.pt", tmp_path / "e.plan", ExportOptions(batch="1:16:64"), log=logs.append)
    assert any("engine vs ONNX Runtime" in line for line in logs)
