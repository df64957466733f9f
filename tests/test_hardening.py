"""Bad input and damaged files, as a user (or a disk) would hand them over: each a one-line
error with exit 2, nothing written, nothing half-written left behind."""
import json
import os

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_user_error, run_cli
from helpers import random_checkpoint
from onnx import numpy_helper

from fdrl_export.export import ExportOptions, export


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    out = run_cli("fdrl_train.cli", "--config", "8gaussians", "--out", str(d / "run"), "--quiet",
                  "--set", "steps=3", "flow_steps=2", "sample_every=0")
    assert out.returncode == 0, out.stderr
    export(d / "run" / "last.pt", d / "toy.onnx", ExportOptions(check=False))
    return d


def _flip_weight_bit(src, dst):
    m = onnx.load(str(src))
    init = next(i for i in m.graph.initializer if not i.name.startswith("fdrl.prior"))
    a = numpy_helper.to_array(init).copy()
    a.reshape(-1).view(np.uint32)[0] ^= 1 << 3  # one bit of one weight
    init.CopyFrom(numpy_helper.from_array(a, init.name))
    onnx.save(m, str(dst))


def test_a_flipped_bit_is_caught_in_an_artifact_and_in_a_checkpoint(toy, tmp_path):
    _flip_weight_bit(toy / "toy.onnx", tmp_path / "flip.onnx")
    assert_user_error(run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "flip.onnx"), "-n", "4",
                              "--out", str(tmp_path / "o")), "does not match the digest", "damaged")
    assert not (tmp_path / "o").exists()
    ck = torch.load(toy / "run" / "last.pt", weights_only=True)
    first = next(iter(ck["model"]))
    ck["model"][first].view(-1)[0] += 1e-3  # a changed number in a saved tensor
    torch.save(ck, tmp_path / "flip.pt")
    assert_user_error(run_cli("fdrl_export.cli", str(tmp_path / "flip.pt"), str(tmp_path / "x.onnx")), "corrupt")
    assert_user_error(run_cli("fdrl_train.cli", "--resume", str(tmp_path / "flip.pt")), "corrupt")
    assert not (tmp_path / "x.onnx").exists()
    # The intact files still load: the digest is of what was written, not of some re-encoding.
    assert run_cli("fdrl_runtime.cli", "--engine", str(toy / "toy.onnx"), "-n", "4", "--out", str(tmp_path / "ok"),
                   "--quiet").returncode == 0


@pytest.mark.parametrize("change, fragment", [({"flow_steps": -5}, "flow_steps"), ({"noise": float("nan")}, "noise"),
                                              ({"eta": -1}, "eta"), ({"extra_key": 1}, "unknown keys")])
def test_artifact_metadata_that_would_sample_nonsense_is_refused(toy, tmp_path, change, fragment):
    m = onnx.load(str(toy / "toy.onnx"))
    meta = json.loads(m.metadata_props[0].value)
    meta.update(change)
    m.metadata_props[0].value = json.dumps(meta)
    onnx.save(m, str(tmp_path / "bad.onnx"))
    assert_user_error(run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "bad.onnx"), "-n", "4",
                              "--out", str(tmp_path / "o")), fragment)


def test_a_checkpoint_config_that_would_export_nonsense_is_refused(tmp_path):
    ck = random_checkpoint("mlp")
    ck["config"]["eta"] = -1.0
    torch.save(ck, tmp_path / "c.pt")
    assert_user_error(run_cli("fdrl_export.cli", str(tmp_path / "c.pt"), str(tmp_path / "c.onnx")), "eta")
    ck = random_checkpoint("mlp")
    del ck["config"]
    torch.save(ck, tmp_path / "noconfig.pt")
    assert_user_error(run_cli("fdrl_train.cli", "--resume", str(tmp_path / "noconfig.pt")), "lacks config")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "noconfig.pt"]


def test_config_and_environment_mistakes_are_one_line(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("dataset: swissroll\n# caf\xe9\n".encode("latin-1"))
    assert_user_error(run_cli("fdrl_train.cli", "--config", str(tmp_path / "latin1.yaml"), "--out", str(tmp_path / "r")),
                      "not UTF-8")
    for env, fragment in (({"RANK": "abc", "WORLD_SIZE": "2"}, "not integers"), ({"RANK": "0", "WORLD_SIZE": "0"}, "need 0 <=")):
        proc = run_cli("fdrl_train.cli", "--config", "swissroll", "--out", str(tmp_path / "r"), "--quiet",
                       "--set", "steps=1", env={**os.environ, **env})
        assert_user_error(proc, fragment)
    (tmp_path / "file").write_text("")
    assert_user_error(run_cli("fdrl_train.cli", "--config", "swissroll", "--out", str(tmp_path / "file" / "r")), "file")


def test_threads_beyond_the_cores_are_refused(toy, tmp_path):
    assert_user_error(run_cli("fdrl_runtime.cli", "--engine", str(toy / "toy.onnx"), "-n", "4", "--threads", "100000",
                              "--out", str(tmp_path / "o")), "--threads 100000", "cores")


def test_resume_survives_a_half_written_metrics_line_and_a_killed_writers_temporary(tmp_path):
    run = tmp_path / "run"
    assert run_cli("fdrl_train.cli", "--config", "swissroll", "--out", str(run), "--quiet",
                   "--set", "steps=4", "flow_steps=2", "log_every=1", "ckpt_every=2", "sample_every=0").returncode == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # the line a kill -9 cut short
    (run / ".last.tmp-999999999-0123abcd.pt").write_bytes(b"partial")  # a dead writer's temporary
    proc = run_cli("fdrl_train.cli", "--resume", str(run), "--quiet", "--set", "steps=6")
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not list(run.glob(".*tmp-*"))


def _ddp_toy(tmp_path):
    ck = random_checkpoint("mlp", prior=None)
    d = 2
    ck["prior"] = {"kind": "ddp", "shape": [d], "clamp": False, "mean": torch.tensor([0.3, -0.2]),
                   "factor": torch.tensor([[0.5, 0.0], [0.1, 0.4]])}
    torch.save(ck, tmp_path / "c.pt")
    export(tmp_path / "c.pt", tmp_path / "a.onnx", ExportOptions(check=False))
    return tmp_path / "a.onnx"


@pytest.mark.parametrize("tool", ["onnxsim", "onnxslim", "polygraphy"])
def test_an_artifact_rewritten_by_a_simplifier_is_refused_until_resealed_then_samples_the_same(tmp_path, tool):
    mod = pytest.importorskip(tool, reason=f"{tool} is not installed (pip install {tool})")
    import fdrl_runtime
    art = _ddp_toy(tmp_path)
    with fdrl_runtime.load(art) as s:
        ref = s.sample(64, seed=1)
    if tool == "polygraphy":  # its CLI, as a user runs it
        pytest.importorskip("onnx_graphsurgeon", reason="polygraphy surgeon needs onnx-graphsurgeon")
        import shutil
        import subprocess
        import sys
        exe = shutil.which("polygraphy", path=os.path.dirname(sys.executable))
        proc = subprocess.run([exe, "surgeon", "sanitize", str(art), "--fold-constants", "-o", str(tmp_path / "s.onnx")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:
        model = onnx.load(str(art))
        slim = mod.simplify(model)[0] if tool == "onnxsim" else mod.slim(model)
        onnx.save(slim, str(tmp_path / "s.onnx"))
    assert_user_error(run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "s.onnx"), "-n", "4",
                              "--out", str(tmp_path / "o")), "rewritten by a tool", "--reseal")
    proc = run_cli("fdrl_export.cli", "--reseal", str(tmp_path / "s.onnx"))
    assert proc.returncode == 0, proc.stderr
    with fdrl_runtime.load(tmp_path / "s.onnx") as s:  # the DDP prior's arrays survived the rewrite
        assert s.artifact.prior.kind == "ddp"
        np.testing.assert_allclose(s.sample(64, seed=1), ref, rtol=0, atol=1e-5)


def test_the_onnx_prior_lives_in_metadata_so_no_unused_initializer_is_left(tmp_path):
    art = _ddp_toy(tmp_path)
    m = onnx.load(str(art))
    assert not [i.name for i in m.graph.initializer if i.name.startswith("fdrl")]
    assert {p.key for p in m.metadata_props} == {"fdrl", "fdrl.prior"}
    assert json.loads(m.metadata_props[0].value)["format_version"] == 2


def _kill_at_random_points(cmd, times, cwd):
    """Start `cmd`, SIGKILL it after each of `times` seconds (a fresh start each time)."""
    import signal
    import subprocess
    import time
    for t in times:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(t)
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_infer_killed_five_times_then_rerun_equals_one_uninterrupted_run(tmp_path):
    import random
    import sys

    from conftest import ROOT

    from fdrl_core.samples import read_run_folder
    art = str(ROOT / "tests" / "fixtures" / "artifact_v1" / "toy_ddp.onnx")
    args = ["--engine", art, "-n", "6000", "--shard-size", "250", "--batch", "250", "--steps", "400", "--quiet"]
    ref = run_cli("fdrl_runtime.cli", *args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    cut = tmp_path / "cut"
    rng = random.Random(7)
    _kill_at_random_points([sys.executable, "-m", "fdrl_runtime.cli", *args, "--out", str(cut)],
                           [rng.uniform(1.0, 3.0) for _ in range(5)], ROOT)
    again = run_cli("fdrl_runtime.cli", *args, "--out", str(cut))
    assert again.returncode == 0, again.stderr
    (ia, xa), (ib, xb) = read_run_folder(tmp_path / "ref"), read_run_folder(cut)
    assert np.array_equal(ia, ib) and np.array_equal(xa, xb)
    left = [p.name for p in cut.rglob("*") if ".tmp-" in p.name or p.name.startswith(".fdrl.lock")]
    assert not left, left


@pytest.mark.slow
def test_export_killed_five_times_leaves_no_debris_after_the_next_export(tmp_path):
    import random
    import sys

    from conftest import ROOT
    torch.save(random_checkpoint("resnet8"), tmp_path / "c.pt")
    rng = random.Random(3)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    _kill_at_random_points([sys.executable, "-m", "fdrl_export.cli", str(tmp_path / "c.pt"), str(out)],
                           [rng.uniform(2.0, 5.0) for _ in range(5)], ROOT)
    proc = run_cli("fdrl_export.cli", str(tmp_path / "c.pt"), str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (needs the right to mount; skipped with the reason where there is none)."""
    import subprocess
    where = tmp_path / "small"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'mount failed'}): no full-disk test")
    yield where
    subprocess.run(["umount", str(where)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("name, fmt", [("toy_ddp", "npz"), ("digits", "png")])
def test_a_full_disk_is_one_line_and_leaves_only_whole_files(small_fs, name, fmt):
    from conftest import ROOT

    from fdrl_core.samples import read_run_folder
    art = str(ROOT / "tests" / "fixtures" / "artifact_v1" / f"{name}.onnx")
    out = small_fs / "o"
    proc = run_cli("fdrl_runtime.cli", "--engine", art, "-n", "400000", "--shard-size", "2000", "--steps", "1",
                   "--format", fmt, "--out", str(out), "--quiet")
    assert_user_error(proc, "No space left on device")
    assert not [p.name for p in small_fs.rglob("*") if ".tmp-" in p.name or p.name.startswith(".fdrl.lock")]
    if fmt == "npz":
        ids, x = read_run_folder(out)  # every shard left is whole
        assert len(ids) % 2000 == 0 and len(ids) > 0 and np.isfinite(x).all()
    else:
        for png in (out / "png").iterdir():  # every picture left is whole
            from PIL import Image
            with Image.open(png) as img:
                img.load()


def test_a_flipped_bit_in_a_pt2_is_caught(toy, tmp_path):
    import struct
    import zipfile
    export(toy / "run" / "last.pt", tmp_path / "m.pt2", ExportOptions(check=False))
    data = bytearray((tmp_path / "m.pt2").read_bytes())
    with zipfile.ZipFile(tmp_path / "m.pt2") as z:
        assert any(n.endswith("/extra/fdrl_digest.txt") for n in z.namelist())
        info = next(i for i in z.infolist() if "/data/weights/" in i.filename and not i.filename.endswith(".json"))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + 1] ^= 0x08  # one bit of one stored weight
    (tmp_path / "flip.pt2").write_bytes(bytes(data))
    assert_user_error(run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "flip.pt2"), "-n", "4",
                              "--out", str(tmp_path / "o")), "corrupt")
    ok = run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "m.pt2"), "-n", "4", "--out", str(tmp_path / "ok"),
                 "--quiet")
    assert ok.returncode == 0, ok.stderr
