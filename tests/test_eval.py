"""fdrl-eval: the digit numbers separate real digits from noise; FID needs its weights."""
import json

import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli

from fdrl_eval.cli import digit_report
from fdrl_train.datasets import load_mnist_dataset, toy_sample


def test_digit_report_real_images_against_noise():
    data = load_mnist_dataset(0.1)
    real = data.train_images[:500].numpy()
    noise = np.random.default_rng(0).uniform(-1, 1, real.shape).astype(np.float32)
    good, bad = digit_report(real), digit_report(noise)
    assert good["classifier_heldout_accuracy"] > 0.95
    assert good["digit_fd"] < 0.1 * bad["digit_fd"]
    assert good["mean_confidence"] > 0.9 and good["label_entropy"] > 2.2  # confident and all ten digits


def test_cli_on_points_and_files(tmp_path):
    x = toy_sample("25gaussians", 1000, torch.Generator().manual_seed(5)).numpy()
    np.savez(tmp_path / "s.npz", x=x)
    p = run_cli("fdrl_eval.cli", str(tmp_path / "s.npz"), "--against", "25gaussians", "--json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["modes_covered"] == 25 and abs(r["mmd2"]) < 0.1 * r["mmd2_standard_normal"]


def test_fid_without_weights_is_one_clear_line(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 3, 32, 32), np.float32))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    p = run_cli("fdrl_eval.cli", str(tmp_path / "s.npz"), "--against", str(tmp_path / "stats.npz"),
                env={"TORCH_HOME": str(tmp_path / "empty"), "FDRL_INCEPTION_WEIGHTS": ""})
    assert_user_error(p, "pt_inception-2015-12-05-6726825d.pth")


@pytest.mark.parametrize("args, fragment", [
    (["nope.npz", "--against", "mnist"], "does not exist"),
    (["{pts}", "--against", "mnist"], "28x28"),
    (["{pts}", "--against", "imagenet"], "--against"),
    (["{pts}", "--against", "{bad_stats}"], "statistics file"),
    (["{nan}", "--against", "25gaussians"], "1 of 10 samples are not finite"),
])
def test_bad_input(tmp_path, args, fragment):
    np.savez(tmp_path / "pts.npz", x=np.zeros((10, 2), np.float32))
    nan = np.zeros((10, 2), np.float32)
    nan[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=nan)
    np.savez(tmp_path / "bad.npz", foo=np.zeros(2))
    args = [a.format(pts=tmp_path / "pts.npz", bad_stats=tmp_path / "bad.npz", nan=tmp_path / "nan.npz") for a in args]
    assert_user_error(run_cli("fdrl_eval.cli", *args), fragment)
