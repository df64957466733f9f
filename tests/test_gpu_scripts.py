"""The scripts meant for a lent GPU, run here as their CPU dry run (--small), so that
they cannot rot unseen between the rare sessions that have a GPU."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("script,last_row", [("gpu_check.sh", "| torch fp32 + CUDA graphs |"),
                                             ("gpu_train_check.sh", "|")])
def test_gpu_script_dry_run(script, last_row):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONWARNINGS": "ignore"}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / script), "--small"], capture_output=True, text=True,
                       env=env, cwd=str(ROOT), timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    table = [l for l in p.stdout.splitlines() if l.startswith("|")]
    assert len(table) >= 3, p.stdout  # header, rule, at least one row: the table is printed last
    assert p.stdout.strip().splitlines()[-1].startswith("|"), p.stdout
    assert any(l.startswith(last_row) for l in table), p.stdout
