"""The block of steps the ONNX Runtime backend runs (fdrl_core.step_graph.block_model: a
Scan of the drift graph plus the update) against the update written out step by step on the
drift graph alone, for unconditional, noiseless and class-conditional artifacts, on the CPU
path (workers) and on the I/O-binding path a GPU uses (run here on the CPU provider)."""
import numpy as np
import onnx
import pytest
from conftest import ROOT

from fdrl_core.step_graph import StepGraphError, block_model, step_model
from fdrl_runtime.artifact import load_artifact
from fdrl_runtime.backends.base import Backend
from fdrl_runtime.backends.onnxruntime import OnnxRuntimeBackend
from fdrl_runtime.loop import sample_batch

FIXTURES = ROOT / "tests" / "fixtures" / "artifact_v1"


class PerStepBackend(OnnxRuntimeBackend):
    """The drift graph once per step and the update in numpy: what the block replaces."""
    def run_steps(self, x, noise_block, eta, nu, y=None):
        return Backend.run_steps(self, x, noise_block, eta, nu, y)


@pytest.mark.parametrize("name", ["toy_ddp", "digits"])
@pytest.mark.parametrize("variant", [{}, {"threads": 1}, {"threads": 2}, {"io_binding": True}])
def test_block_of_steps_matches_the_step_by_step_update(name, variant):
    art = load_artifact(FIXTURES / f"{name}.onnx")
    ids = np.arange(37)  # odd: the two workers get unequal halves
    want = sample_batch(PerStepBackend(art), art, ids, seed=5, steps=23)  # 2 full blocks and a short one
    got = sample_batch(OnnxRuntimeBackend(art, **variant), art, ids, seed=5, steps=23)
    assert np.isfinite(want).all() and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_noiseless_blocks_and_the_one_step_graph():
    art = load_artifact(FIXTURES / "toy_ddp.onnx")
    model = onnx.load_from_string(art.payload)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 2)).astype(np.float32)
    noise = rng.standard_normal((4, 9, 2)).astype(np.float32)
    be = OnnxRuntimeBackend(art, threads=1)
    for nu in (0.0, 0.3):
        want = x
        for k in range(4):
            want = want - np.float32(0.7) * be.drift(want) + (np.float32(nu) * noise[k] if nu else 0)
        got = be.run_steps(x, noise if nu else [None] * 4, 0.7, nu)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    onnx.checker.check_model(block_model(model, 0.5, 0.1))
    step = step_model(model, 0.5, 0.1)
    onnx.checker.check_model(step)
    assert [i.name for i in step.graph.input] == ["x", "noise"] and [o.name for o in step.graph.output] == ["x_next", "drift"]


def test_a_graph_that_is_not_a_drift_graph_is_refused():
    art = load_artifact(FIXTURES / "toy_ddp.onnx")
    model = onnx.load_from_string(art.payload)
    model.graph.output[0].name = "grad"
    with pytest.raises(StepGraphError, match="output drift"):
        block_model(model, 0.5, 0.1)
