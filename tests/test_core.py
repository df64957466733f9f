"""fdrl_core: the torch-free pieces every package shares, against direct statements of them."""
import subprocess
import sys

import numpy as np
from conftest import ROOT
from PIL import Image

from fdrl_core.pictures import image_grid, picture_of, save_png, scatter_plot


def _painted(img: Image.Image) -> np.ndarray:
    """Pixels of the plotting area that are not white (the frame and labels excluded)."""
    a = np.asarray(img.convert("RGB")).astype(int)
    inner = a[37:-37, 37:-37]
    return (inner.sum(2) < 3 * 250)


def test_scatter_draws_every_point_where_it_belongs():
    rng = np.random.default_rng(0)
    few, many = rng.uniform(-1, 1, (64, 2)), rng.uniform(-1, 1, (5000, 2))
    assert _painted(scatter_plot(many, lim=1.0)).sum() > 20 * _painted(scatter_plot(few, lim=1.0)).sum()
    # One point at (0.5, -0.5) with lim 1: three quarters across, three quarters down the plot.
    img = np.asarray(scatter_plot(np.array([[0.5, -0.5]]), lim=1.0, alpha=1.0))
    plot = 512 - 2 * 36
    row, col = 36 + int(0.75 * plot), 36 + int(0.75 * plot)
    assert tuple(img[row, col]) == (30, 80, 200)
    # Density: a pixel hit 10 times is darker than one hit once; NaN points are left out.
    pts = np.array([[0.0, 0.0]] * 10 + [[0.5, 0.5], [np.nan, 0.0]])
    a = np.asarray(scatter_plot(pts, lim=1.0)).astype(int)
    c0, c1 = 36 + int(0.5 * plot), 36 + int(0.75 * plot)
    assert a[c0, c0].sum() < a[36 + int(0.25 * plot), c1].sum() < 3 * 255


def test_picture_of_images_is_a_grid_in_the_value_range(tmp_path):
    x = np.full((5, 1, 4, 4), 0.5, np.float32)  # values in [0, 1]: mid-grey is 0.5
    img = picture_of(x, value_range=(0.0, 1.0))
    a = np.asarray(img)
    assert a.shape == (14 * 64, 20 * 64)  # 5 tiles of 4 x 4 in 2 rows of 3, 2-pixel gaps, scaled 64x
    assert abs(int(np.median(a[a < 255])) - 128) <= 1
    np.testing.assert_array_equal(np.asarray(image_grid(x * 2 - 1)), a)
    save_png(img, tmp_path / "new" / "folder" / "g.png")  # the folder is made, the write atomic
    assert Image.open(tmp_path / "new" / "folder" / "g.png").size == img.size
    assert not list((tmp_path / "new" / "folder").glob(".*tmp*"))


def test_the_core_imports_nothing_of_torch_or_the_other_packages():
    code = ("import sys; import fdrl_core.images, fdrl_core.pictures; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'fdrl_train', 'fdrl_export', 'fdrl_runtime', 'fdrl_eval')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr


# --- the update step ----------------------------------------------------------------------

def test_update_step_is_the_papers_formula_on_numpy_and_torch():
    import torch

    from fdrl_core.flow import euler_maruyama, euler_maruyama_step
    rng = np.random.default_rng(1)
    x, d, xi = rng.normal(size=(3, 5, 4))
    eta, nu = 0.3, 0.05
    expected = x - eta * d + nu * xi  # x_{k+1} = x_k - eta grad f'(r(x_k)) + nu xi_k (eq. 9)
    np.testing.assert_allclose(euler_maruyama_step(x, d, eta, nu, xi), expected, rtol=0, atol=1e-15)
    got = euler_maruyama_step(torch.from_numpy(x), torch.from_numpy(d), eta, nu, torch.from_numpy(xi))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(euler_maruyama_step(x, d, eta, 0.0, None), x - eta * d)
    # Three steps of a linear drift A x with given noise, against the recursion written out.
    a = rng.normal(size=(4, 4)) * 0.1
    noise = rng.normal(size=(3, 5, 4))
    want = x
    for k in range(3):
        want = want - eta * want @ a.T + nu * noise[k]
    np.testing.assert_allclose(euler_maruyama(lambda v: v @ a.T, x, 3, eta, nu, noise.__getitem__), want, atol=1e-14)


# --- counter-based noise --------------------------------------------------------------------

def _lowbias32(x: int) -> int:
    """Wellons' lowbias32 on a Python int, written out independently of fdrl_runtime.noise."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) % 2**32
    x ^= x >> 15
    x = (x * 0x846CA68B) % 2**32
    return x ^ (x >> 16)


def test_counter_noise_has_fixed_values():
    import torch

    from fdrl_runtime.noise import hash32, numpy_draws
    assert [_lowbias32(v) for v in (0, 1, 2, 0xDEADBEEF)] == [0, 1753845952, 3507691905, 3861431939]
    vals = np.array([0, 1, 2, 0xDEADBEEF, 2**32 - 1], dtype=np.int64)
    assert list(hash32(vals)) == [_lowbias32(int(v)) for v in vals]
    assert hash32(torch.from_numpy(vals)).tolist() == [_lowbias32(int(v)) for v in vals]
    d = numpy_draws(0, np.arange(3))
    # Pinned: a change to the generator changes every sample anyone made with a seed.
    np.testing.assert_allclose(d.uniform(5, 2), [[0.3113462, 0.16992512], [0.5268115, 0.12291929],
                                                 [0.52067006, 0.055771023]], rtol=0, atol=1e-7)
    np.testing.assert_allclose(d.normal(7, 2), [[-0.7216169, -0.2596586], [-0.025867868, -0.6481195],
                                                [-0.13963963, -0.613224]], rtol=0, atol=1e-6)
    # The uniforms are (bits >> 8 + 0.5) / 2^24 of the hash chain, recomputed here by hand.
    key = _lowbias32(_lowbias32((1 ^ _lowbias32(0)) % 2**32) ^ 0)
    bits = _lowbias32(_lowbias32(key ^ _lowbias32(5)) ^ _lowbias32(1))
    assert abs(float(d.uniform(5, 2)[1, 1]) - ((bits >> 8) + 0.5) / 2**24) < 1e-7


# --- the prior spec ---------------------------------------------------------------------------

def _ddp_spec(low_rank: bool):
    from fdrl_core.prior import PriorSpec
    rng = np.random.default_rng(2)
    d = 6
    mean = rng.normal(size=d).astype(np.float32) * 0.1
    if low_rank:
        return PriorSpec("ddp", (d,), clamp=False, mean=mean, factor=rng.normal(size=(d, 2)).astype(np.float32) * 0.3,
                         diag=np.full(d, 0.2, np.float32))
    l = np.tril(rng.normal(size=(d, d))) * 0.2 + np.eye(d) * 0.3
    return PriorSpec("ddp", (d,), clamp=False, mean=mean, factor=l.astype(np.float32))


def test_training_and_runtime_draws_of_one_prior_agree_in_moments():
    import torch

    from fdrl_core.prior import PriorSpec
    from fdrl_runtime.noise import PRIOR_STEP, numpy_draws
    from fdrl_train.priors import Prior
    n = 40_000
    for spec in (_ddp_spec(False), _ddp_spec(True)):
        cov = spec.factor.astype(np.float64) @ spec.factor.T.astype(np.float64)
        if spec.diag is not None:
            cov += np.diag(spec.diag.astype(np.float64) ** 2)
        torch_spec = PriorSpec.from_state({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                           for k, v in spec.to_state().items()})
        trained = Prior(torch_spec).sample(n, torch.Generator().manual_seed(0)).double().numpy()
        dist, width = spec.noise_width()
        runtime = spec.transform(numpy_draws(0, np.arange(n)).normal(PRIOR_STEP, width)).astype(np.float64)
        for x in (trained, runtime):  # each against the closed form N(mean, F F^T + diag^2)
            se = np.sqrt(np.diag(cov) / n)
            assert np.all(np.abs(x.mean(0) - spec.mean) < 5 * se)
            assert np.abs(np.cov(x.T) - cov).max() < 0.05 * np.abs(cov).max()
    up = PriorSpec("up", (3,), clamp=True)
    x = up.transform(numpy_draws(1, np.arange(n)).uniform(PRIOR_STEP, 3))
    assert x.min() >= -1 and x.max() <= 1 and abs(x.var() - 1 / 3) < 0.01  # U[-1, 1]: variance 1/3


def test_prior_spec_round_trips_and_refuses_inconsistent_forms():
    import pytest

    from fdrl_core.prior import PriorError, PriorSpec
    spec = _ddp_spec(True)
    meta, arrays = spec.to_artifact()
    assert meta == {"kind": "ddp", "clamp": False, "rank": 2, "covariance": "low rank + diagonal"}
    back = PriorSpec.from_artifact(meta, arrays, (6,))
    assert back.kind == "ddp" and np.array_equal(back.factor, spec.factor) and np.array_equal(back.diag, spec.diag)
    assert PriorSpec.from_state(spec.to_state()).noise_width() == ("normal", 8)
    assert PriorSpec("normal", (2,), False, std=2.0).to_artifact() == ({"kind": "normal", "clamp": False, "std": 2.0}, {})
    with pytest.raises(PriorError, match="mean or factor is missing"):
        PriorSpec.from_artifact({"kind": "ddp", "clamp": True}, {}, (6,))
    with pytest.raises(PriorError, match="do not fit"):
        PriorSpec.from_artifact(meta, arrays, (7,))
    with pytest.raises(PriorError, match="unknown prior kind"):
        PriorSpec("gauss", (2,), False)
    with pytest.raises(PriorError, match="--init"):
        PriorSpec("input", (1, 8, 8), False).noise_width()


# --- the artifact contract -----------------------------------------------------------------------

FIXTURES = ROOT / "tests" / "fixtures" / "artifact_v1"


def test_version_1_artifacts_load_and_sample_as_they_did(tmp_path):
    from fdrl_runtime.artifact import load_artifact
    toy = load_artifact(FIXTURES / "toy_ddp.onnx")
    assert toy.meta.format_version == 1 and toy.prior.kind == "ddp" and toy.sample_shape == (2,)
    digits = load_artifact(FIXTURES / "digits.onnx")
    assert digits.meta.value_range == (-1.0, 1.0) and digits.meta.output == "log_r" and digits.default_steps == 3
    for name, n in (("toy_ddp", 16), ("digits", 8)):
        out = tmp_path / name
        subprocess.run([sys.executable, "-m", "fdrl_runtime.cli", "--engine", str(FIXTURES / f"{name}.onnx"), "-n", str(n),
                        "--seed", "3", "--format", "npz", "--out", str(out), "--quiet"], check=True, cwd=ROOT)
        with np.load(out / "shards" / "00000.npz") as z:
            got = z["x"]
        want = np.load(FIXTURES / f"{name}_seed3.npy")
        if want.dtype == np.uint8:
            assert np.abs(got.astype(int) - want).max() <= 1  # one grey level: fp rounding at a .5 boundary
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_contract_refuses_what_would_sample_nonsense():
    import pytest

    from fdrl_core.contract import FORMAT_VERSION, ArtifactError, ArtifactMeta
    from fdrl_runtime.artifact import load_artifact
    good = load_artifact(FIXTURES / "toy_ddp.onnx", with_payload=False).meta.to_dict()
    assert ArtifactMeta.from_dict(good, "x").to_dict() == good
    for change, message in (({"flow_steps": -5}, "flow_steps"), ({"eta": -1}, "eta"), ({"noise": float("nan")}, "noise"),
                            ({"eta": True}, "eta"), ({"sample_shape": [0]}, "sample_shape"),
                            ({"value_range": [1, -1]}, "value_range"), ({"flow_steps": 0, "refine_steps": 0}, "raw prior"),
                            ({"output": "p"}, "output"), ({"surprise": 1}, "unknown keys surprise"),
                            ({"format_version": FORMAT_VERSION + 1}, "upgrade"), ({"format": "other"}, "not an fdrl artifact"),
                            ({"conditional": {"n_classes": 1, "phi": 0.1}}, "conditional")):
        with pytest.raises(ArtifactError, match=message):
            ArtifactMeta.from_dict({**good, **change}, "a.onnx")
    del good["eta"]
    with pytest.raises(ArtifactError, match="lacks eta"):
        ArtifactMeta.from_dict(good, "a.onnx")


# --- atomic writes, errors, sample readers ---------------------------------------------------------

def test_atomic_writes_leave_nothing_half_written(tmp_path):
    import os

    import pytest

    from fdrl_core.atomic import atomic_path, atomic_write_bytes, remove_stale_temps
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    # A temporary of a process that is gone is removed; this process's own is kept.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.tmp-{dead.stdout.strip()}-0123abcd.pt"
    mine = tmp_path / f".x.tmp-{os.getpid()}-0123abcd.npz"
    stale.write_bytes(b""), mine.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == [stale] and mine.exists()


def test_cli_errors_are_one_line_and_exit_2():
    code = ("from fdrl_core.errors import FdrlError, cli_errors\n"
            "with cli_errors('prog'):\n    raise {}\n")
    for raised, message in (("FdrlError('bad thing: do this')", "prog: error: bad thing: do this"),
                            ("IsADirectoryError(21, 'Is a directory', '/tmp')", "prog: error: /tmp: Is a directory")):
        r = subprocess.run([sys.executable, "-c", code.format(raised)], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and r.stderr.strip() == message
    r = subprocess.run([sys.executable, "-c", code.format("KeyError('bug')")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" in r.stderr  # a bug keeps its traceback


def test_image_folders_read_as_one_array_whatever_the_mode(tmp_path):
    from fdrl_core.samples import read_image_folder
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((4, 5, 3), 7, np.uint8)).save(tmp_path / "b.png")
    x = read_image_folder(tmp_path)
    assert x.shape == (2, 4, 5, 3) and x[0, 0, 0].tolist() == [200, 0, 0] and x[1, 0, 0].tolist() == [7, 7, 7]
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.fromarray(np.full((3, 3), 9, np.uint8)).save(grey / "g.png")
    assert read_image_folder(grey).shape == (1, 3, 3, 1)
