"""fdrl-infer: torch-free, backends agree, invariant to batching and sharding, resumable."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_user_error, run_cli
from helpers import random_checkpoint

from fdrl_core.samples import read_run_folder
from fdrl_export.export import ExportOptions, export


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("art")
    out = {}
    for name, ck in [("toy", random_checkpoint("mlp", flow_steps=40, refine_steps=10, eta=0.2)),
                     ("mnist", random_checkpoint("resnet28", "LR", "KL", sn=True, flow_steps=12, refine_steps=3, eta=2.0))]:
        torch.save(ck, d / f"{name}.pt")
        for ext in ("onnx", "pt2"):
            export(d / f"{name}.pt", d / f"{name}.{ext}", ExportOptions(check=False))
            out[f"{name}.{ext}"] = str(d / f"{name}.{ext}")
    return out


def infer(engine, out, *args):
    return run_cli("fdrl_runtime.cli", "--engine", engine, "--out", str(out), "--quiet", *args)


def rel_l2(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def test_runtime_runs_where_torch_cannot_be_imported(artifacts, tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
            "from fdrl_runtime.cli import main\n"
            f"main(['--engine', {artifacts['toy.onnx']!r}, '-n', '300', '--out', {str(tmp_path / 'o')!r}, '--quiet'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr
    ids, x = read_run_folder(tmp_path / "o")
    assert x.shape == (300, 2) and np.isfinite(x).all()
    probe = subprocess.run([sys.executable, "-c", "import fdrl_runtime.cli, fdrl_runtime.backends.onnxruntime, sys; "
                            "print('torch' in sys.modules)"], capture_output=True, text=True, cwd=str(ROOT))
    assert probe.stdout.strip() == "False"


@pytest.mark.parametrize("model, fmt", [("toy", "npz"), ("mnist", "npz")])
def test_onnxruntime_and_torch_backends_agree(artifacts, tmp_path, model, fmt):
    a = infer(artifacts[f"{model}.onnx"], tmp_path / "a", "-n", "64", "--format", fmt, "--seed", "5")
    b = infer(artifacts[f"{model}.pt2"], tmp_path / "b", "-n", "64", "--format", fmt, "--seed", "5")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    (_, xa), (_, xb) = read_run_folder(tmp_path / "a"), read_run_folder(tmp_path / "b")
    if model == "mnist":  # uint8 images: compare in pixel units
        assert np.median(np.abs(xa.astype(int) - xb.astype(int)).reshape(64, -1).max(1)) <= 1
    else:
        assert np.median(rel_l2(xa, xb)) <= 1e-4
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["backend"] == "torch" and summary["count"] == 64 and summary["samples_per_second"] > 0


def test_same_seed_same_samples_at_any_batch_size_and_shard_count(artifacts, tmp_path):
    e = artifacts["toy.onnx"]
    assert infer(e, tmp_path / "one", "-n", "500", "--batch", "512", "--shard-size", "100").returncode == 0
    assert infer(e, tmp_path / "small", "-n", "500", "--batch", "7", "--shard-size", "100").returncode == 0
    for i in range(3):
        assert infer(e, tmp_path / "sharded", "-n", "500", "--batch", "64", "--shard-size", "100",
                     "--shard", f"{i}/3").returncode == 0
    assert infer(e, tmp_path / "other", "-n", "500", "--seed", "1", "--shard-size", "100").returncode == 0
    ids1, x1 = read_run_folder(tmp_path / "one")
    for other in ("small", "sharded"):
        ids, x = read_run_folder(tmp_path / other)
        assert (ids == ids1).all() and np.median(rel_l2(x, x1)) <= 1e-5
    _, xo = read_run_folder(tmp_path / "other")
    assert np.median(rel_l2(xo, x1)) > 1e-2  # a different seed, different samples
    assert sorted(p.name for p in (tmp_path / "sharded").glob("summary*")) == [f"summary_{i}of3.json" for i in range(3)]


def test_interrupted_run_is_completed_by_the_same_command(artifacts, tmp_path):
    e, out = artifacts["mnist.onnx"], tmp_path / "run"
    args = ["-n", "96", "--batch", "8", "--shard-size", "16", "--format", "both", "--steps", "30"]
    assert infer(e, tmp_path / "ref", *args).returncode == 0
    cmd = [sys.executable, "-m", "fdrl_runtime.cli", "--engine", e, "--out", str(out), "--quiet", *args]
    # SIGINT as a terminal would deliver it: a child inherits an ignored SIGINT from its parent
    # (some test runners ignore it), and then Python raises no KeyboardInterrupt at all.
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "shards" / "00000.npz").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=60)
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    done = sorted(p.name for p in (out / "shards").glob("*.npz"))
    assert 1 <= len(done) < 6, done  # of 6: interrupted part-way (slack for a loaded machine)
    first_mtime = (out / "shards" / "00000.npz").stat().st_mtime_ns
    again = infer(e, out, *args)
    assert again.returncode == 0, again.stderr
    assert (out / "shards" / "00000.npz").stat().st_mtime_ns == first_mtime  # kept, not redone
    (ia, xa), (ib, xb) = read_run_folder(out), read_run_folder(tmp_path / "ref")
    assert (ia == ib).all() and (xa == xb).all()
    assert len(list((out / "png").glob("*.png"))) == 96
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_kept"] == len(done)
    again = infer(e, out, *args, "--overwrite")
    assert again.returncode == 0 and json.loads((out / "summary.json").read_text())["shards_kept"] == 0


def test_init_starts_from_given_samples(artifacts, tmp_path):
    x0 = np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32) + 3
    np.savez(tmp_path / "init.npz", x=x0)
    assert infer(artifacts["toy.onnx"], tmp_path / "o", "--init", str(tmp_path / "init.npz"), "--steps", "1").returncode == 0
    ids, x = read_run_folder(tmp_path / "o")
    assert len(ids) == 50 and np.abs(x - x0).max() < 0.5  # one small step from where they started
    bad = np.zeros((5, 3), np.float32)
    np.savez(tmp_path / "bad.npz", x=bad)
    assert_user_error(infer(artifacts["toy.onnx"], tmp_path / "o2", "--init", str(tmp_path / "bad.npz")), "shape")
    assert not (tmp_path / "o2").exists()


def test_memory_does_not_grow_with_n(artifacts, tmp_path):
    code = ("import resource, sys\nfrom fdrl_runtime.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    rss = {}
    for n in (1000, 10000):
        p = subprocess.run([sys.executable, "-c", code, "--engine", artifacts["toy.onnx"], "-n", str(n), "--out",
                            str(tmp_path / str(n)), "--quiet", "--steps", "5"], capture_output=True, text=True, cwd=str(ROOT))
        rss[n] = int(p.stdout.strip().splitlines()[-1])
    assert rss[10000] <= 1.1 * rss[1000], rss


@pytest.mark.parametrize("args, fragment", [
    (["-n", "0"], "-n 0"),
    (["-n", "5", "--batch", "-1"], "--batch -1"),
    (["-n", "5", "--shard", "3/2"], "--shard"),
    (["-n", "5", "--format", "gif"], "--format"),
    (["-n", "5", "--device", "cuda"], "cuda"),
    (["-n", "5", "--backend", "tensorrt"], "tensorrt"),
    (["-n", "5", "--backend", "tpu"], "'tpu' is not one of"),
    (["-n", "abc"], "'abc' is not a valid integer"),
    (["-n", "5", "--precision", "int4"], "--precision"),
])
def test_bad_options(artifacts, tmp_path, args, fragment):
    assert_user_error(infer(artifacts["toy.onnx"], tmp_path / "o", *args), fragment)
    assert not (tmp_path / "o").exists()


def test_bad_artifacts(artifacts, tmp_path):
    missing = infer(str(tmp_path / "nope.onnx"), tmp_path / "o", "-n", "3")
    assert_user_error(missing, "does not exist")
    data = open(artifacts["toy.onnx"], "rb").read()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    assert_user_error(infer(str(tmp_path / "cut.onnx"), tmp_path / "o", "-n", "3"), "not a readable ONNX")
    import onnx
    m = onnx.load(artifacts["toy.onnx"])
    meta = json.loads(m.metadata_props[0].value)
    meta["format_version"] = 99
    m.metadata_props[0].value = json.dumps(meta)
    onnx.save(m, str(tmp_path / "new.onnx"))
    assert_user_error(infer(str(tmp_path / "new.onnx"), tmp_path / "o", "-n", "3"), "upgrade")
    del m.metadata_props[:]
    m.graph.doc_string = ""  # and its copy in the graph (what polygraphy keeps): a plain ONNX model
    onnx.save(m, str(tmp_path / "plain.onnx"))
    assert_user_error(infer(str(tmp_path / "plain.onnx"), tmp_path / "o", "-n", "3"), "not an fdrl artifact")
    (tmp_path / "e.plan").write_bytes(b"engine")
    assert_user_error(infer(str(tmp_path / "e.plan"), tmp_path / "o", "-n", "3"), "metadata file")
    assert not (tmp_path / "o").exists()


def test_unwritable_out(artifacts, tmp_path):
    (tmp_path / "a_file").write_text("")
    assert_user_error(infer(artifacts["toy.onnx"], tmp_path / "a_file" / "o", "-n", "3"), "cannot write")


def test_non_finite_samples_are_refused_not_written(artifacts, tmp_path):
    x0 = np.zeros((20, 2), np.float32)
    x0[7] = np.nan
    np.savez(tmp_path / "init.npz", x=x0)
    p = infer(artifacts["toy.onnx"], tmp_path / "o", "--init", str(tmp_path / "init.npz"), "--steps", "2")
    assert_user_error(p, "1 of 20 samples", "not finite", "--init")
    assert not list((tmp_path / "o" / "shards").glob("*.npz"))  # nothing that looks like samples


def test_init_folder_of_any_size_is_prepared_as_training_does(artifacts, tmp_path):
    from PIL import Image

    from fdrl_core.images import load_image
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(d / "a.png")  # RGB, not square
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(d / "b.png")     # the model's size
    (d / "notes.txt").write_text("not an image")                                           # ignored by suffix
    p = infer(artifacts["mnist.onnx"], tmp_path / "o", "--init", str(d), "--steps", "1", "--format", "npz")
    assert p.returncode == 0, p.stderr
    ids, x = read_run_folder(tmp_path / "o")
    assert x.shape == (2, 28, 28, 1)
    # The crop: the centred 40 x 40 square of a.png, resized to 28 x 28, as a grey image.
    a = np.asarray(Image.open(d / "a.png").convert("L").crop((8, 0, 48, 40)).resize((28, 28), Image.BICUBIC))
    assert np.array_equal(load_image(d / "a.png", 28, None, 1)[..., 0], a)
    (d / "c.png").write_bytes(b"\x89PNG broken")
    assert_user_error(infer(artifacts["mnist.onnx"], tmp_path / "o2", "--init", str(d)), "c.png", "not a readable image")
    assert not (tmp_path / "o2").exists()


class _WritesAFile:
    """A pickle that creates a file when loaded: proof that loading ran its code."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_pt2(src, dst, what, marker):
    import pickle
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if what == "weight" and item.filename.endswith("model_weights_config.json"):
                cfg = json.loads(data)
                cfg["config"][next(iter(cfg["config"]))]["use_pickle"] = True
                data = json.dumps(cfg).encode()
            elif what == "weight" and item.filename.endswith("data/weights/weight_0"):
                data = pickle.dumps(_WritesAFile(str(marker)))
            elif what == "sample_inputs" and "data/sample_inputs/" in item.filename:
                data = pickle.dumps(_WritesAFile(str(marker)))
            if not item.filename.endswith("/fdrl_digest.txt"):
                zout.writestr(item, data)
    # An attacker recomputes the digest (it detects damage, it is no signature): the pickle
    # inspection is what must refuse the archive.
    from fdrl_runtime.artifact import seal_pt2
    seal_pt2(dst)


@pytest.mark.parametrize("what", ["weight", "sample_inputs"])
def test_a_pt2_with_a_pickle_is_refused_unless_trusted(artifacts, tmp_path, what):
    marker = tmp_path / "owned"
    evil = tmp_path / "evil.pt2"
    _evil_pt2(artifacts["toy.pt2"], evil, what, marker)
    assert_user_error(infer(str(evil), tmp_path / "o", "-n", "4"), "pickled", "--trust-pickle")
    assert not marker.exists() and not (tmp_path / "o").exists()
    # The attack is real: with the flag, loading runs the payload.
    infer(str(evil), tmp_path / "o2", "-n", "4", "--trust-pickle", "--no-compile")
    assert marker.exists()
    # An archive as fdrl-export writes it holds no pickle and loads without the flag.
    assert infer(artifacts["toy.pt2"], tmp_path / "o3", "-n", "4", "--no-compile").returncode == 0


def test_the_compiled_torch_backend_equals_the_program_and_onnxruntime(artifacts):
    """The torch backend's CPU path: inductor-compiled blocks of steps, a padded last batch
    (37 = 16 + 16 + 5) and a short last block (23 = 10 + 10 + 3, run uncompiled), against the
    same .pt2 run op by op and against the .onnx on ONNX Runtime (another backend)."""
    from fdrl_runtime.api import load
    kw = dict(n=37, seed=3, steps=23, batch=16)
    plain = load(artifacts["toy.pt2"], compile=False)
    assert plain.backend.numerics == "torch"
    compiled = load(artifacts["toy.pt2"])
    got = compiled.sample(**kw)
    assert not compiled.backend.compiled.untried and compiled.backend.numerics == "torch+inductor"
    want = plain.sample(**kw)
    assert np.isfinite(want).all() and np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, load(artifacts["toy.onnx"]).sample(**kw), rtol=0, atol=1e-5)
    # Without a working compiler: one warning, then the program op by op, the same numbers.
    broken = load(artifacts["toy.pt2"])

    def no_compiler(*a):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
    broken.backend.compiled.compiled = no_compiler
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        np.testing.assert_array_equal(broken.sample(**kw), want)
    assert broken.backend.numerics == "torch"


def test_a_rerun_into_the_same_folder_completes_extends_or_is_refused(artifacts, tmp_path):
    out = tmp_path / "run"
    toy = artifacts["toy.onnx"]
    assert infer(toy, out, "-n", "150", "--seed", "3", "--shard-size", "100").returncode == 0
    # Another seed, other steps, another artifact: refused, the folder as it was.
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "shards").iterdir())
    for args, key in ((["--seed", "4"], "seed"), (["--seed", "3", "--steps", "5"], "steps")):
        assert_user_error(infer(toy, out, "-n", "150", "--shard-size", "100", *args), key, "--overwrite")
    assert_user_error(infer(artifacts["toy.pt2"], out, "-n", "150", "--seed", "3", "--shard-size", "100"),
                      "artifact_sha256", "--overwrite")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "shards").iterdir()) == before
    # A larger n extends: the old last shard (cut at 150) is made again, to 200, then more.
    assert infer(toy, out, "-n", "250", "--seed", "3", "--shard-size", "100").returncode == 0
    ids, x = read_run_folder(out)
    assert list(ids) == list(range(250))
    assert infer(toy, tmp_path / "one", "-n", "250", "--seed", "3", "--shard-size", "100").returncode == 0
    np.testing.assert_array_equal(x, read_run_folder(tmp_path / "one")[1])
    assert json.loads((out / "run.json").read_text())["n"] == 250
    # --overwrite starts over with the new settings.
    assert infer(toy, out, "-n", "50", "--seed", "4", "--overwrite").returncode == 0
    assert json.loads((out / "run.json").read_text())["seed"] == 4 and len(read_run_folder(out)[0]) == 50


def test_grid_of_points_shows_all_of_them(artifacts, tmp_path):
    from PIL import Image
    assert infer(artifacts["toy.onnx"], tmp_path / "o", "-n", "3000", "--grid", str(tmp_path / "new" / "pic.png")).returncode == 0
    a = np.asarray(Image.open(tmp_path / "new" / "pic.png").convert("RGB")).astype(int)[37:-37, 37:-37]
    assert ((a.sum(2) < 750).sum()) > 1000  # far more than 64 one-pixel dots


@pytest.mark.parametrize("env, fragment", [({"RANK": "abc", "WORLD_SIZE": "2"}, "not integers"),
                                           ({"RANK": "0", "WORLD_SIZE": "0"}, "0 <= RANK < WORLD_SIZE"),
                                           ({"RANK": "5", "WORLD_SIZE": "2"}, "0 <= RANK < WORLD_SIZE"),
                                           ({"SLURM_PROCID": "-1", "SLURM_NTASKS": "4"}, "SLURM_PROCID")])
def test_launcher_ranks_are_checked_like_shard(artifacts, tmp_path, env, fragment):
    p = run_cli("fdrl_runtime.cli", "--engine", artifacts["toy.onnx"], "--out", str(tmp_path / "o"), "-n", "10",
                "--quiet", env=env)
    assert_user_error(p, fragment, "--shard")
    assert not (tmp_path / "o").exists()


def test_channels_last_torch_backend_equals_nchw(artifacts):
    """The GPU's layout path (weights converted once, x per block), run on the CPU: the same
    samples as the NCHW program within fp32 rounding."""
    from fdrl_runtime.artifact import load_artifact
    from fdrl_runtime.backends.torch import TorchBackend
    from fdrl_runtime.loop import sample_batch
    art = load_artifact(artifacts["mnist.pt2"])
    nchw = TorchBackend(art, compile=False)
    nhwc = TorchBackend(art, compile=False, channels_last=True)
    assert not nchw.channels_last and nhwc.channels_last  # on a CPU NCHW unless asked
    ids = np.arange(12, dtype=np.int64)
    want, got = (sample_batch(be, art, ids, 4, art.default_steps) for be in (nchw, nhwc))
    assert np.abs(want).max() > 0.1
    assert np.median(rel_l2(got, want)) < 1e-5 and rel_l2(got, want).max() < 1e-3


def test_a_failed_first_run_does_not_block_the_next_and_damaged_shards_are_remade(artifacts, tmp_path):
    out = tmp_path / "o"
    x0 = np.zeros((20, 2), np.float32)
    x0[3] = np.nan
    np.savez(tmp_path / "init.npz", x=x0)
    assert infer(artifacts["toy.onnx"], out, "--init", str(tmp_path / "init.npz"), "--steps", "2").returncode == 2
    args = ["-n", "64", "--shard-size", "16", "--steps", "12"]
    first = infer(artifacts["toy.onnx"], out, *args)  # the correct command, same folder: nothing was claimed
    assert first.returncode == 0, first.stderr
    ids, want = read_run_folder(out)
    (out / "shards" / "00001.npz").write_bytes(b"junk" * 40)  # a cut or foreign file
    (out / "shards" / "00002.npz").write_bytes((out / "shards" / "00000.npz").read_bytes())  # another shard's samples
    kept = (out / "shards" / "00003.npz").stat().st_mtime_ns
    again = infer(artifacts["toy.onnx"], out, *args)
    assert again.returncode == 0, again.stderr
    assert "shard 1 in the run folder is damaged (00001.npz is not readable" in again.stderr
    assert "shard 2 in the run folder is damaged (00002.npz holds other samples" in again.stderr
    assert (out / "shards" / "00003.npz").stat().st_mtime_ns == kept  # whole shards are kept
    ids2, got = read_run_folder(out)
    assert (ids2 == ids).all() and (got == want).all()
    assert json.loads((out / "summary.json").read_text())["shards_kept"] == 2
