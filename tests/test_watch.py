"""fdrl-train's quality watch (eval_every): figures from the runtime's samples, equal to
fdrl-eval's on the same samples; the samples equal fdrl-infer's; best.pt, quality.png and
the rows survive a resume."""
import json

import numpy as np
import pytest
from conftest import assert_user_error, run_cli

from fdrl_core.samples import read_run_folder
from fdrl_train.checkpoint import load_checkpoint

SMALL = ["batch_size=128", "flow_steps=20", "ckpt_every=10", "sample_every=0", "log_every=5",
         "compile_flow=false", "eval_every=10", "eval_samples=300"]


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _fdrl_eval(samples, against):
    p = run_cli("fdrl_eval.cli", str(samples), "--against", against)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_swissroll_watch_rows_equal_fdrl_eval_and_fdrl_infer_and_survive_a_resume(tmp_path):
    run = tmp_path / "run"
    p = run_cli("fdrl_train.cli", "--config", "swissroll", "--out", str(run), "--quiet", "--set", "steps=20", *SMALL)
    assert p.returncode == 0, p.stderr
    rows = _rows(run)
    evals = [r for r in rows if "eval_mmd2" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert "eval_prior_mmd2" in evals[0] and "eval_prior_mmd2" not in evals[1]  # the prior's figure, once
    # the same samples through fdrl-eval: the same figure, to the last bit
    assert _fdrl_eval(run / "eval_samples.npz", "swissroll")["mmd2"] == evals[-1]["eval_mmd2"]
    # and those samples are fdrl-infer's from an export of the same weights (seed 12345, K + kappa)
    assert run_cli("fdrl_export.cli", str(run / "last.pt"), str(tmp_path / "m.onnx"), "--no-check").returncode == 0
    p = run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "m.onnx"), "-n", "300", "--seed", "12345",
                "--out", str(tmp_path / "s"), "--format", "npz", "--quiet")
    assert p.returncode == 0, p.stderr
    assert np.array_equal(read_run_folder(tmp_path / "s")[1], np.load(run / "eval_samples.npz")["x"])
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == min(r["eval_mmd2"] for r in evals) and best["measure"] == "eval_mmd2"
    assert load_checkpoint(run / "best.pt")["step"] == best["step"]
    assert (run / "quality.png").stat().st_size > 1000

    p = run_cli("fdrl_train.cli", "--resume", str(run), "--quiet", "--set", "steps=30")
    assert p.returncode == 0, p.stderr
    rows = _rows(run)
    assert [r["step"] for r in rows if "eval_mmd2" in r] == [10, 20, 30]
    assert sum("eval_prior_mmd2" in r for r in rows) == 1
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps))  # one row per step: an evaluation joins that step's row
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == min(r["eval_mmd2"] for r in rows if "eval_mmd2" in r)


def test_digits_watch_equals_fdrl_eval_against_digits(tmp_path):
    run = tmp_path / "run"
    p = run_cli("fdrl_train.cli", "--config", "digits", "--out", str(run), "--quiet", "--set", "steps=2",
                "batch_size=8", "flow_steps=2", "refine_steps=1", "sample_every=0", "eval_every=2", "eval_samples=64")
    assert p.returncode == 0, p.stderr
    rows = _rows(run)
    report = _fdrl_eval(run / "eval_samples.npz", "digits")
    assert rows[-1]["eval_digit_fd"] == report["digit_fd"] and rows[-1]["eval_mmd2"] == report["mmd2"]
    assert rows[-1]["eval_prior_digit_fd"] > 0


def test_a_dataset_without_a_measure_is_refused_before_training(tmp_path):
    p = run_cli("fdrl_train.cli", "--config", "mnist_thick", "--out", str(tmp_path / "r"), "--set", "steps=2",
                "eval_every=1")
    assert_user_error(p, "eval_every", "no quality measure", "eval_every=0")
    assert not (tmp_path / "r").exists()


def test_the_watch_is_off_with_a_note_where_its_packages_are_missing(tmp_path, monkeypatch, capsys):
    import fdrl_core.entry
    from fdrl_train.config import load_config
    from fdrl_train.train import Trainer
    monkeypatch.setattr(fdrl_core.entry, "QUALITY_WATCH", ("fdrl_eval.watch", ("no_such_package",), "pip install x"))
    t = Trainer(load_config("swissroll", ["steps=4", *SMALL, "eval_every=2"]), tmp_path / "r", quiet=True)
    t.run()
    assert "quality watch (eval_every) is off" in capsys.readouterr().err
    assert not any("eval_mmd2" in r for r in _rows(tmp_path / "r"))


@pytest.mark.parametrize("value", ["-1", "1.5", "1"])
def test_eval_samples_and_every_are_checked(tmp_path, value):
    key = "eval_samples" if value == "1" else "eval_every"
    p = run_cli("fdrl_train.cli", "--config", "swissroll", "--out", str(tmp_path / "r"), "--set", f"{key}={value}")
    assert_user_error(p, key)


def test_fid_against_a_statistics_file_equals_fdrl_eval(tmp_path):
    """eval_against: FID against `fdrl-eval --save-stats` statistics (digit features here: the
    Inception network cannot import on these machines, so only its refusal is tested)."""
    from fdrl_train.datasets import load_mnist_dataset
    real = tmp_path / "real.npz"
    np.savez(real, x=load_mnist_dataset(0.1).test_set(200).numpy())
    stats = tmp_path / "ref.npz"
    p = run_cli("fdrl_eval.cli", str(real), "--features", "digits", "--save-stats", str(stats))
    assert p.returncode == 0, p.stderr
    run = tmp_path / "run"
    sets = ["steps=2", "batch_size=8", "flow_steps=2", "refine_steps=1", "sample_every=0", "eval_every=2",
            "eval_samples=64", f"eval_against={stats}"]
    p = run_cli("fdrl_train.cli", "--config", "mnist", "--out", str(run), "--quiet", "--set", *sets, "eval_features=digits")
    assert p.returncode == 0, p.stderr
    row = _rows(run)[-1]
    p = run_cli("fdrl_eval.cli", str(run / "eval_samples.npz"), str(stats), "--features", "digits")
    assert p.returncode == 0, p.stderr
    assert row["eval_fid"] == json.loads(p.stdout)["fid"] and row["eval_prior_fid"] > 0
    # Inception features need weights on disk: refused before the first step, the folder not left behind
    p = run_cli("fdrl_train.cli", "--config", "mnist", "--out", str(tmp_path / "r2"), "--set", *sets,
                env={"FDRL_INCEPTION_WEIGHTS": "", "TORCH_HOME": str(tmp_path / "no_cache")})
    assert_user_error(p, "inception weights", "nothing is downloaded")
    assert not (tmp_path / "r2").exists()


def test_a_diverging_flow_is_logged_not_fatal():
    """Early weights can send the flow to inf: the watch says so and training goes on."""
    from helpers import random_checkpoint

    from fdrl_eval.watch import QualityWatch
    from fdrl_train.config import validate
    ck = random_checkpoint("mlp")
    watch = QualityWatch(validate({**ck["config"], "eval_every": 1}), 16, (2,))
    name = next(k for k in ck["ema"] if k.endswith("weight"))
    ck["ema"][name] = ck["ema"][name] * float("inf")  # a drift of inf and NaN, as a blown-up run's
    assert watch(ck) == ({"eval_nonfinite": 1}, None)
    ck = random_checkpoint("mlp")
    values, x = watch(ck)  # the same watch, refit with sane weights, judges again
    assert x.shape == (16, 2) and np.isfinite(values["eval_mmd2"])
