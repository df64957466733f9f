"""The scripts meant for a lent GPU, run here as their CPU dry run (--small), so that
they cannot rot unseen between the rare sessions that have a GPU."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("script,rows", [
    ("gpu_check.sh", ["| reference-style eager fp32 | 8 |", "| torch backend fp32 + CUDA graphs | 16 |",
                      "| torch.compile fp32 (same step) | 16 |", "| ONNX Runtime fp32 (CPU) | 16 |",
                      "| training: fdrl-train fp32"]),
    ("gpu_train_check.sh", ["| reference-style fp32 eager", "| fdrl-train fp32"])])
def test_gpu_script_dry_run(script, rows):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONWARNINGS": "ignore"}
    fewer = ["--repeats", "1", "--train-steps", "3"] if script == "gpu_check.sh" else []  # CI time; same rows
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / script), "--small", *fewer], capture_output=True, text=True,
                       env=env, cwd=str(ROOT), timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    table = [l for l in p.stdout.splitlines() if l.startswith("|")]
    assert len(table) >= 3, p.stdout  # header, rule, at least one row: the table is printed last
    assert p.stdout.strip().splitlines()[-1].startswith("|"), p.stdout
    for row in rows:
        assert any(l.startswith(row) for l in table), (row, p.stdout)
    if script == "gpu_check.sh":  # every row agrees with fp32 eager on the same inputs (CPU: fp32 throughout)
        for line in table[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[1]:  # a sampling row: block error median / p99
                median, p99 = (float(v) for v in cells[5].split("/"))
                assert p99 < 1e-4, line
