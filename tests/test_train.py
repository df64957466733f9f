"""Training: the density chasm, resume after SIGKILL, bad input and divergence."""
import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, assert_user_error, run_cli

from fdrl_train.checkpoint import load_checkpoint
from fdrl_train.config import load_config
from fdrl_train.datasets import CHASM_MEAN
from fdrl_train.train import Trainer

SMALL = ["steps=40", "batch_size=128", "flow_steps=20", "ckpt_every=10", "sample_every=0", "log_every=5",
         "compile_flow=false"]


def test_density_chasm_is_crossed_by_fdrl_and_not_by_a_stale_estimator(tmp_path):
    """Paper Fig. 2b/4: the K-step samples of the chasm preset, as shipped, reach p = N(6 * 1, 0.1 I).

    The preset's 1000 steps, not fewer: at 600 the mean's error was 0.08-0.14 over six seeds
    here and 0.40 on a CI machine (a cloud short of p); at 1000, 0.01-0.05 over four seeds."""
    cfg = load_config("chasm", ["sample_every=0"])
    t = Trainer(cfg, tmp_path / "fdrl", quiet=True)
    t.run()
    # 2048 samples in batches of the training batch, whose compiled flow exists (a batch of
    # 2000 at once would compile another: 14 s of the test's 60)
    b = cfg["batch_size"]
    x = torch.cat([t.sample(b, steps=cfg["flow_steps"], weights="ema", seed=s) for s in range(2048 // b)])
    mean_err = (x.mean(0) - torch.tensor(CHASM_MEAN)).abs().max().item()
    std = x.std(0) / math.sqrt(0.1)
    assert mean_err < 0.3, x.mean(0)
    assert ((std > 0.3) & (std < 2.0)).all(), std
    # A stale estimator trained on q' against p (no flow in training) does not get there.
    stale = Trainer(load_config("chasm", ["steps=300", "sample_every=0", "flow_steps=0", "compile_flow=false"]),
                    tmp_path / "stale", quiet=True)
    stale.run()
    y = stale.sample(2000, steps=400, weights="ema")
    dist = (y.mean(0) - torch.tensor(CHASM_MEAN)).norm()
    assert not torch.isfinite(dist) or dist > 1.0


def _train(out, *extra):
    return run_cli("fdrl_train.cli", "--config", "swissroll", "--out", str(out), "--quiet", "--set", *SMALL, *extra)


def test_sigkill_and_resume_gives_the_same_weights(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _train(ref).returncode == 0
    cmd = [sys.executable, "-m", "fdrl_train.cli", "--config", "swissroll", "--out", str(cut), "--quiet",
           "--set", *SMALL]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (cut / "last.pt").exists() and load_checkpoint(cut / "last.pt")["step"] >= 20:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(cut / "last.pt")["step"]
    assert 20 <= killed_at < 40, killed_at
    resumed = run_cli("fdrl_train.cli", "--resume", str(cut), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(ref / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["step"] == b["step"] == 40
    for k in a["model"]:
        assert (a["model"][k] - b["model"][k]).abs().max() <= 1e-6, k
        assert (a["ema"][k] - b["ema"][k]).abs().max() <= 1e-6, k
    steps = [json.loads(l)["step"] for l in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 40  # no duplicated metric rows


def test_checkpoint_is_plain_tensors(tmp_path):
    assert _train(tmp_path / "r", "steps=10").returncode == 0
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ck["format"] == "fdrl-checkpoint" and ck["step"] == 10
    assert {"config", "model", "ema", "optim", "scheduler", "prior", "rng", "format_version"} <= set(ck)
    assert ck["prior"]["kind"] == "normal"
    rows = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "term_data", "term_flowed", "r_data", "r_flowed", "steps_per_s"} <= set(rows[-1])


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "nan"
    p = run_cli("fdrl_train.cli", "--config", "chasm", "--out", str(out), "--quiet", "--set", "loss=KL",
                "divergence=KL", "lr=1", "ckpt_every=1", "steps=50", "sample_every=0", "flow_steps=5")
    assert_user_error(p, "step 3", "loss is")
    assert load_checkpoint(out / "last.pt")["step"] == 2


@pytest.mark.parametrize("args, fragment", [
    (["--config", "nope"], "not found"),
    (["--config", "swissroll", "--set", "dataset=imagenet"], "'dataset'"),
    (["--config", "swissroll", "--set", "steps=-3"], "'steps'"),
    (["--config", "swissroll", "--set", "loss=LSIF", "divergence=JS"], "valid pairing"),
    (["--config", "cifar10", "--set", "steps=1"], "data_dir"),
    (["--config", "swissroll", "--set", "model=resnet32"], "takes images"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, fragment):
    p = run_cli("fdrl_train.cli", *args, "--out", str(tmp_path / "o"), "--quiet")
    assert_user_error(p, fragment)


def test_resume_refuses_foreign_and_truncated_files(tmp_path):
    assert _train(tmp_path / "r", "steps=10").returncode == 0
    data = (tmp_path / "r" / "last.pt").read_bytes()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "last.pt").write_bytes(data[: len(data) // 2])
    assert_user_error(run_cli("fdrl_train.cli", "--resume", str(tmp_path / "t")), "cannot be read")
    (tmp_path / "f").mkdir()
    torch.save({"hello": torch.zeros(2)}, tmp_path / "f" / "last.pt")
    assert_user_error(run_cli("fdrl_train.cli", "--resume", str(tmp_path / "f")), "not an FDRL checkpoint")
    assert_user_error(run_cli("fdrl_train.cli", "--resume", str(tmp_path / "missing")), "does not exist")


def test_existing_run_is_not_overwritten(tmp_path):
    assert _train(tmp_path / "r", "steps=10").returncode == 0
    before = (tmp_path / "r" / "last.pt").read_bytes()
    assert_user_error(_train(tmp_path / "r", "steps=10"), "already holds a run")
    assert (tmp_path / "r" / "last.pt").read_bytes() == before


@pytest.mark.slow
def test_five_random_sigkills_then_resume_give_the_same_weights_and_no_debris(tmp_path):
    import random
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _train(ref).returncode == 0
    rng = random.Random(11)
    for _ in range(5):
        first = not (cut / "last.pt").exists()
        cmd = [sys.executable, "-m", "fdrl_train.cli", "--quiet"] + (
            ["--config", "swissroll", "--out", str(cut), "--overwrite", "--set", *SMALL] if first else ["--resume", str(cut)])
        proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = run_cli("fdrl_train.cli", "--resume", str(cut), "--quiet") if (cut / "last.pt").exists() else _train(cut)
    assert done.returncode == 0, done.stderr
    a, b = load_checkpoint(ref / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["step"] == b["step"] == 40
    for k in a["model"]:
        assert (a["model"][k] - b["model"][k]).abs().max() <= 1e-6, k
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 40
    assert not [p.name for p in cut.rglob("*") if ".tmp-" in p.name or p.name.startswith(".fdrl.lock")]
