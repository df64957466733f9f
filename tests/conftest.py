import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fdrl_core.launch import available_cores

ROOT = Path(__file__).resolve().parents[1]
# pytest-xdist runs WORKERS processes side by side (scripts/test.sh): each gets its share of
# the cores, and so do the commands it starts (OMP_NUM_THREADS, read by their torch), so
# threads are not multiplied by workers on a small machine.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, available_cores() // WORKERS)
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)


def ort_session(model_bytes):
    """An ONNX Runtime CPU session with this worker's share of the cores, not spinning."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def per_sample_rel_err(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """||out - ref|| / ||ref|| for each sample (first dimension)."""
    out, ref = out.double().reshape(out.shape[0], -1), ref.double().reshape(ref.shape[0], -1)
    return (out - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-30)


def run_cli(*args, env=None, timeout=600):
    """Run one of the project's commands as a user would; returns CompletedProcess."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=str(ROOT))


def assert_user_error(proc, *fragments):
    """Exit code 2, a one-line message naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"
