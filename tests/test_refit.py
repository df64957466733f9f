"""fdrl-export --refit: another checkpoint's weights in an exported graph, equal to a fresh export."""
import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli
from helpers import random_checkpoint

import fdrl_runtime
from fdrl_export.export import ExportOptions, export, refit
from fdrl_export.graph import ExportError
from fdrl_runtime.artifact import load_artifact


def _save(path, ckpt):
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("model, sn, attn", [("mlp", False, False), ("resnet8", True, True)])
def test_a_refit_artifact_equals_a_fresh_export_bit_for_bit(tmp_path, model, sn, attn):
    a = _save(tmp_path / "a.pt", random_checkpoint(model, "LR", "KL", sn=sn, attn=attn, seed=1))
    b = _save(tmp_path / "b.pt", random_checkpoint(model, "LR", "KL", sn=sn, attn=attn, seed=2, eta=0.25))
    export(a, tmp_path / "a.onnx", ExportOptions(check=False))
    result = refit(tmp_path / "a.onnx", b, tmp_path / "b_refit.onnx", ExportOptions())
    assert result.passed and result.n == 65  # the export's own float64 check, on the new weights
    export(b, tmp_path / "b.onnx", ExportOptions(check=False))
    fresh, refitted = load_artifact(tmp_path / "b.onnx"), load_artifact(tmp_path / "b_refit.onnx")
    assert refitted.meta == fresh.meta and refitted.meta.eta == 0.25  # the new checkpoint's flow settings
    assert refitted.meta.payload_sha256 == fresh.meta.payload_sha256  # graph, weights and prior: the same bytes
    with fdrl_runtime.load(tmp_path / "b.onnx") as s1, fdrl_runtime.load(tmp_path / "b_refit.onnx") as s2, \
            fdrl_runtime.load(tmp_path / "a.onnx") as s0:
        x1, x2, x0 = (s.sample(64, seed=3, steps=4) for s in (s1, s2, s0))
    assert np.array_equal(x1, x2)
    assert not np.allclose(x0, x1)  # the weights did change


def test_refit_is_refused_for_another_architecture_and_writes_nothing(tmp_path):
    export(_save(tmp_path / "a.pt", random_checkpoint("mlp")), tmp_path / "a.onnx", ExportOptions(check=False))
    cases = {"wide.pt": random_checkpoint("mlp", hidden_dim=32), "img.pt": random_checkpoint("resnet8"),
             "kl.pt": random_checkpoint("mlp", "LR", "KL")}
    for name, ck in cases.items():
        with pytest.raises(ExportError, match="another architecture"):
            refit(tmp_path / "a.onnx", _save(tmp_path / name, ck), tmp_path / "out.onnx", ExportOptions())
    assert not (tmp_path / "out.onnx").exists()


def test_refit_on_the_command_line(tmp_path):
    export(_save(tmp_path / "a.pt", random_checkpoint("mlp", seed=1)), tmp_path / "a.onnx", ExportOptions(check=False))
    _save(tmp_path / "b.pt", random_checkpoint("mlp", seed=2))
    p = run_cli("fdrl_export.cli", "--refit", str(tmp_path / "a.onnx"), str(tmp_path / "b.pt"), str(tmp_path / "b.onnx"))
    assert p.returncode == 0, p.stderr
    assert "refit from" in p.stderr and "median relative error" in p.stderr
    assert load_artifact(tmp_path / "b.onnx").meta.graph["weights"]
    # the v1 fixture predates the record: refused with how to get one
    old = tmp_path.parent / "old.onnx"
    from conftest import ROOT
    old.write_bytes((ROOT / "tests/fixtures/artifact_v1/toy_ddp.onnx").read_bytes())
    p = run_cli("fdrl_export.cli", "--refit", str(old), str(tmp_path / "b.pt"), str(tmp_path / "c.onnx"))
    assert_user_error(p, "records no weight mapping", "export it once")
    assert not (tmp_path / "c.onnx").exists()
