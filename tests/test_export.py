"""fdrl-export: every architecture x pairing passes the float64 check; bad input; metadata."""
import numpy as np
import onnx
import pytest
import torch
from conftest import assert_user_error, ort_session, run_cli
from helpers import random_checkpoint

from fdrl_export.check import check_drift
from fdrl_export.export import ExportOptions, export
from fdrl_export.graph import ExportError, estimator_from_checkpoint
from fdrl_export.to_tensorrt import engine_settings, parse_batch_profile
from fdrl_runtime.artifact import load_artifact

PAIRINGS = [("LSIF", "Pearson"), ("LR", "KL"), ("LR", "JS"), ("LR", "logD"), ("KL", "KL"), ("KL", "JS"), ("KL", "logD")]


def _export(tmp_path, ckpt, name="model.onnx", **opts):
    src = tmp_path / "ck.pt"
    torch.save(ckpt, src)
    out = tmp_path / name
    return export(src, out, ExportOptions(**opts)), out


@pytest.mark.parametrize("loss, divergence", PAIRINGS)
@pytest.mark.parametrize("model, sn, attn", [("mlp", True, False), ("resnet8", True, True)])
def test_small_models_every_pairing(tmp_path, model, sn, attn, loss, divergence):
    result, out = _export(tmp_path, random_checkpoint(model, loss, divergence, sn=sn, attn=attn))
    assert result.passed and result.n >= 64
    art = load_artifact(out)
    assert art.meta.divergence == divergence and art.meta.loss == loss
    assert art.meta.output == ("r" if loss == "LSIF" else "log_r")


def test_metadata_and_prior_travel_with_the_onnx(tmp_path):
    ck = random_checkpoint("resnet8")
    d = 64
    ck["prior"] = {"kind": "ddp", "shape": [1, 8, 8], "clamp": True, "mean": torch.linspace(-0.5, 0.5, d),
                   "factor": 0.1 * torch.eye(d)}
    _, out = _export(tmp_path, ck)
    art = load_artifact(out)
    m = art.meta
    assert (m.eta, m.noise, m.flow_steps, m.refine_steps) == (0.5, 0.05, 20, 5)
    assert m.value_range == (-1.0, 1.0) and m.source["weights"] == "ema" and len(m.source["checkpoint_sha256"]) == 64
    assert np.allclose(art.prior_arrays["mean"], np.linspace(-0.5, 0.5, d), atol=1e-6)
    assert m.flops_per_sample > 0
    # The graph a backend sees has no prior initializers left in it.
    names = {i.name for i in onnx.load_from_string(art.payload).graph.initializer}
    assert not any(n.startswith("fdrl.prior") for n in names)


def test_raw_and_ema_weights_differ(tmp_path):
    ck = random_checkpoint("mlp")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _export(tmp_path / "a", ck, weights="ema")
    _export(tmp_path / "b", ck, weights="raw")
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    outs = [ort_session(load_artifact(p / "model.onnx").payload).run(["drift"], {"x": x})[0]
            for p in (tmp_path / "a", tmp_path / "b")]
    assert not np.allclose(*outs)


def test_the_check_catches_a_wrong_graph():
    est = estimator_from_checkpoint(random_checkpoint("resnet8"))
    from fdrl_export.check import reference_drift
    scaled = check_drift(est, lambda x: (reference_drift(est, torch.from_numpy(x)) * 1.001, {}), None)
    assert not scaled.passed and scaled.median > 1e-5
    def few_broken(x):  # 5 samples garbage, masks cannot explain them
        d = reference_drift(est, torch.from_numpy(x)).copy()
        d[:5] *= -1
        return d, {}
    assert not check_drift(est, few_broken, None).passed
    assert check_drift(est, lambda x: (reference_drift(est, torch.from_numpy(x)), {}), None).passed


def test_pt2_export_matches_onnx(tmp_path):
    ck = random_checkpoint("resnet8", "LR", "KL", sn=True)
    _, onnx_path = _export(tmp_path, ck, "m.onnx")
    _, pt2_path = _export(tmp_path, ck, "m.pt2")
    x = np.random.default_rng(1).uniform(-1, 1, (7, 1, 8, 8)).astype(np.float32)
    a = ort_session(load_artifact(onnx_path).payload).run(["drift"], {"x": x})[0]
    b = torch.export.load(str(pt2_path)).module()(torch.from_numpy(x))[0].detach().numpy()
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    # The same contract; only the .onnx carries its digest in the metadata (a .pt2 in a member of its
    # own) and the record of which initializer holds which weights (fdrl-export --refit).
    m = load_artifact(onnx_path).meta
    graph = dict(m.graph)
    assert graph.pop("weights")["bound.c0"] == ["conv1.weight"]
    assert load_artifact(pt2_path).meta == m.replace(payload_sha256=None, graph=graph)


def test_reference_checkpoint_exports_and_matches_autograd(tmp_path):
    """A checkpoint in the reference's layout (shared/DESIGN.md §2): MLP outputs [B, 1],
    names mlp.{0,2,4,6,8}, config keys of the reference code."""
    torch.manual_seed(3)
    mlp = torch.nn.Sequential(*[m for i in range(4) for m in (torch.nn.Linear(2 if i == 0 else 64, 64), torch.nn.LeakyReLU(0.2))],
                              torch.nn.Linear(64, 1))
    state = {f"mlp.{k}": v for k, v in mlp.state_dict().items()}
    ref_cfg = {"dataset": "swissroll", "loss_function": "LSIF", "f_divergence": "Pearson", "eta": 1.0,
               "noise_factor": 0.01, "n_flow_steps": 200, "in_dim": 2, "hidden_dim": 64, "n_hidden_layers": 3,
               "spectral_norm": False, "ema": True, "ema_rate": 0.998, "learning_rate": 5e-5}
    torch.save({"step": 999, "model": state, "ema": state, "optim": {}, "scheduler": {}, "config": ref_cfg},
               tmp_path / "ref.pt")
    result = export(tmp_path / "ref.pt", tmp_path / "ref.onnx", ExportOptions())
    assert result.passed
    art = load_artifact(tmp_path / "ref.onnx")
    assert art.meta.prior == {"kind": "normal", "clamp": False, "std": 1.0} and art.meta.flow_steps == 200
    x = torch.randn(9, 2, dtype=torch.float64, requires_grad=True)
    (want,) = torch.autograd.grad((2 * mlp.double()(x)).sum(), x)
    got = ort_session(art.payload).run(["drift"], {"x": x.detach().float().numpy()})[0]
    assert np.abs(got - want.numpy()).max() <= 1e-5 * np.abs(want.numpy()).max()


def test_reference_image_checkpoint_needs_its_prior(tmp_path):
    ck = random_checkpoint("resnet32")
    ref_cfg = {"dataset": "cifar10", "img_size": 32, "n_channels": 3, "model": "resnet", "loss_function": "LSIF",
               "f_divergence": "Pearson", "eta": 3.0, "noise_factor": 0.01, "n_flow_steps": 100,
               "spectral_norm": False, "self_attn": False, "ema": True, "ema_rate": 0.998}
    torch.save({"step": 1, "model": ck["model"], "ema": ck["model"], "config": ref_cfg}, tmp_path / "ref.pt")
    p = run_cli("fdrl_export.cli", str(tmp_path / "ref.pt"), str(tmp_path / "o.onnx"))
    assert_user_error(p, "--prior")
    # A pickled DDP prior needs explicit trust.
    dist = torch.distributions.MultivariateNormal(torch.zeros(3072), scale_tril=torch.eye(3072) * 0.1)
    torch.save(dist, tmp_path / "cifar10_ddp.pt")
    p = run_cli("fdrl_export.cli", str(tmp_path / "ref.pt"), str(tmp_path / "o.onnx"), "--prior",
                str(tmp_path / "cifar10_ddp.pt"), "--no-check")
    assert_user_error(p, "--trust-pickle")
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "missing.pt", "does not exist"),
    (lambda d: (d / "t.pt").write_bytes(b"PK\x03\x04garbage") and d / "t.pt", "cannot be read"),
    (lambda d: torch.save({"a": 1}, d / "f.pt") or d / "f.pt", "not an FDRL checkpoint"),
])
def test_bad_checkpoints(tmp_path, make, fragment):
    p = run_cli("fdrl_export.cli", str(make(tmp_path)), str(tmp_path / "o.onnx"))
    assert_user_error(p, fragment)
    assert not (tmp_path / "o.onnx").exists()


def test_bad_outputs_and_options(tmp_path):
    torch.save(random_checkpoint("mlp"), tmp_path / "c.pt")
    c = str(tmp_path / "c.pt")
    assert_user_error(run_cli("fdrl_export.cli", c, str(tmp_path / "o.tflite")), "unknown artifact type")
    assert_user_error(run_cli("fdrl_export.cli", c, str(tmp_path / "no" / "dir" / "o.onnx")), "cannot write")
    assert_user_error(run_cli("fdrl_export.cli", c, str(tmp_path / "o.onnx"), "--precision", "fp16"), "TensorRT")
    ck = random_checkpoint("mlp")
    ck["config"]["model"] = "resnet32"
    torch.save(ck, tmp_path / "wrong.pt")
    assert_user_error(run_cli("fdrl_export.cli", str(tmp_path / "wrong.pt"), str(tmp_path / "o.onnx")), "model")


def test_info_prints_metadata(tmp_path):
    _, out = _export(tmp_path, random_checkpoint("mlp"))
    p = run_cli("fdrl_export.cli", "--info", str(out))
    assert p.returncode == 0 and '"flow_steps": 20' in p.stdout


def test_tensorrt_settings_and_missing_tensorrt(tmp_path):
    assert parse_batch_profile("1:64:256") == (1, 64, 256) and parse_batch_profile("8") == (8, 8, 8)
    for bad in ("64:1:256", "0:1:2", "a:b:c", "1:2"):
        with pytest.raises(ExportError, match="MIN:OPT:MAX"):
            parse_batch_profile(bad)
    with pytest.raises(ExportError, match="precision"):
        engine_settings("1:2:3", "int4", 1024, None)
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the missing-TensorRT path cannot be shown")
    except ImportError:
        pass
    torch.save(random_checkpoint("mlp"), tmp_path / "c.pt")
    p = run_cli("fdrl_export.cli", str(tmp_path / "c.pt"), str(tmp_path / "e.plan"))
    assert_user_error(p, "TensorRT is not installed", ".onnx")
    assert not (tmp_path / "e.plan").exists()


def test_tensorrt_engine_builds_where_available(tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (it cannot be on these machines)")
    torch.save(random_checkpoint("resnet8"), tmp_path / "c.pt")
    export(tmp_path / "c.pt", tmp_path / "e.plan", ExportOptions(batch="1:8:16"))
    assert load_artifact(tmp_path / "e.plan").kind == "tensorrt" and trt is not None
