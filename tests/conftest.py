import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(2)


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
