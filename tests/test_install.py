"""`pip install fdrl` with no extras is the runtime alone: no torch, and fdrl-infer samples."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

HEAVY = ("torch", "pandas", "scikit-learn", "mlxtend", "matplotlib", "scipy")


@pytest.mark.slow
def test_the_plain_install_is_the_torch_free_runtime(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("fdrl_core", "fdrl_train", "fdrl_export", "fdrl_runtime", "fdrl_eval", "fdrl_bench"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    proc = subprocess.run(pip + ["install", str(src)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 and "No matching distribution" in proc.stderr:
        pytest.skip(f"no package registry reachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    listed = subprocess.run(pip + ["list"], capture_output=True, text=True, check=True).stdout.lower().split()
    assert not [p for p in HEAVY if p in listed], listed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    bin_dir = venv / "bin"
    run = subprocess.run([str(bin_dir / "fdrl-infer"), "--engine", str(ROOT / "tests/fixtures/artifact_v1/toy_ddp.onnx"),
                          "-n", "16", "--seed", "3", "--out", str(tmp_path / "o"), "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    with np.load(tmp_path / "o" / "shards" / "00000.npz") as z:
        np.testing.assert_allclose(z["x"], np.load(ROOT / "tests/fixtures/artifact_v1/toy_ddp_seed3.npy"), atol=1e-5)
    train = subprocess.run([str(bin_dir / "fdrl-train"), "--config", "swissroll", "--out", str(tmp_path / "t")],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert train.returncode == 2 and train.stderr.strip().splitlines() == [
        "fdrl-train: error: needs torch, yaml, sklearn, which this install lacks: pip install 'fdrl[train]'"]
    # The bundled artifacts ship in the plain install and sample by name, torch-free.
    bundled = subprocess.run([str(bin_dir / "fdrl-infer"), "--engine", "digits", "-n", "64", "--out",
                              str(tmp_path / "d"), "--grid", str(tmp_path / "digits.png"), "--quiet"],
                             capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bundled.returncode == 0, bundled.stderr
    assert len(list((tmp_path / "d" / "png").iterdir())) == 64 and (tmp_path / "digits.png").is_file()
    listed = subprocess.run([str(bin_dir / "fdrl-infer"), "--list"], capture_output=True, text=True, cwd=tmp_path,
                            env=env)
    assert listed.returncode == 0 and "digits" in listed.stdout and "swissroll" in listed.stdout, listed.stderr
