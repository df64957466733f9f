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


def test_two_sets_of_points_and_of_digits(tmp_path):
    """fdrl-eval A B: points by MMD (as mmd2_rbf computes it directly); digits by FID/KID in the
    digit classifier's features, where real digits against held-out ones score far below noise;
    --save-stats from one folder gives the same FID as the second set itself."""
    from fdrl_eval.metrics import mmd2_rbf
    a = toy_sample("swissroll", 600, torch.Generator().manual_seed(1)).numpy()
    b = toy_sample("swissroll", 700, torch.Generator().manual_seed(2)).numpy()
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", x=b)
    p = run_cli("fdrl_eval.cli", str(tmp_path / "a.npy"), str(tmp_path / "b.npz"), "--width", "0.2")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["n_a"] == 600 and r["n_b"] == 700
    assert r["mmd2"] == pytest.approx(mmd2_rbf(torch.as_tensor(a), torch.as_tensor(b), 0.2), rel=1e-9)

    data = load_mnist_dataset(0.1)
    np.savez(tmp_path / "real.npz", x=data.train_images[:400].numpy())
    np.savez(tmp_path / "held.npz", x=data.test_images[:400].numpy())
    np.savez(tmp_path / "noise.npz", x=np.random.default_rng(0).uniform(-1, 1, (400, 1, 28, 28)).astype(np.float32))
    runs = {}
    for name in ("real", "noise"):
        p = run_cli("fdrl_eval.cli", str(tmp_path / f"{name}.npz"), str(tmp_path / "held.npz"), "--features", "digits",
                    "--batch-size", "64")
        assert p.returncode == 0, p.stderr
        runs[name] = json.loads(p.stdout)
    assert runs["real"]["fid"] < 0.05 * runs["noise"]["fid"]
    assert abs(runs["real"]["kid"]) < 0.05 and runs["noise"]["kid"] > 1.0  # KID on its usual scale, not ~1e3
    p = run_cli("fdrl_eval.cli", str(tmp_path / "held.npz"), "--features", "digits", "--save-stats", str(tmp_path / "st.npz"))
    assert p.returncode == 0, p.stderr
    with np.load(tmp_path / "st.npz") as z:  # pytorch-fid's reader: np.load, then f['mu'][:], f['sigma'][:]
        assert z["mu"][:].shape == (128,) and z["sigma"][:].shape == (128, 128)
    p = run_cli("fdrl_eval.cli", str(tmp_path / "real.npz"), str(tmp_path / "st.npz"), "--features", "digits")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["fid"] == pytest.approx(runs["real"]["fid"], rel=1e-9)


def test_stats_written_as_pytorch_fid_writes_them_are_read(tmp_path):
    """pytorch-fid --save-stats writes np.savez_compressed(path, mu=, sigma=); pytorch-fid
    itself cannot import here (its torchvision is a CUDA build that fails beside the CPU
    torch), so its writer's one call stands in for it."""
    from fdrl_eval.inception import read_stats, write_stats
    mu, sigma = np.arange(3.0), np.diag([1.0, 2.0, 3.0])
    np.savez_compressed(tmp_path / "theirs.npz", mu=mu, sigma=sigma)
    got = read_stats(tmp_path / "theirs.npz")
    np.testing.assert_array_equal(got[0], mu), np.testing.assert_array_equal(got[1], sigma)
    write_stats(tmp_path / "ours.npz", mu, sigma)
    with np.load(tmp_path / "ours.npz") as f:
        np.testing.assert_array_equal(f["mu"][:], mu), np.testing.assert_array_equal(f["sigma"][:], sigma)


def test_inception_paths_fail_in_one_line_where_pytorch_fid_cannot_run(tmp_path):
    np.savez(tmp_path / "imgs.npz", x=np.zeros((4, 3, 32, 32), np.float32))
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"not really")
    p = run_cli("fdrl_eval.cli", str(tmp_path / "imgs.npz"), str(tmp_path / "imgs.npz"),
                "--inception-weights", str(weights))
    try:
        import pytorch_fid.inception  # noqa: F401
        pytest.skip("pytorch-fid imports here: the real path runs instead")
    except Exception:
        assert_user_error(p, "pytorch-fid")


def test_preset_quality_script_runs_its_judge(tmp_path):
    """scripts/preset_quality.py, dry run: a 2-step digits variant judged beside the floor and the
    DDP Gaussian by fdrl_eval/digits.py's judge (fitted on the preset's split)."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT
    run = ROOT / "runs" / "quality_digits_suite_dry_run"
    try:
        p = subprocess.run([sys.executable, str(ROOT / "scripts" / "preset_quality.py"), "--preset", "digits",
                            "--run", "suite dry run=steps=2 eval_every=0", "--n", "60", "--doc", str(tmp_path / "t.md")],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        rows = (tmp_path / "t.md").read_text().splitlines()
        assert len(rows) == 5 and "training split (floor)" in rows[2] and "suite dry run" in rows[4]
        assert "1.00× / 1.00× / 1.00×" in rows[3]  # the Gaussian against itself
    finally:
        shutil.rmtree(run, ignore_errors=True)
