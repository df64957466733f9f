"""Class-conditional flows (a classifier composed in) and unpaired translation."""
import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli
from helpers import random_checkpoint

from fdrl_core.samples import read_run_folder
from fdrl_export.export import ExportOptions, export
from fdrl_runtime.artifact import load_artifact
from fdrl_train.classifier import build_classifier, classifier_checkpoint

PAIRINGS = [("LSIF", "Pearson"), ("LR", "KL"), ("LR", "JS"), ("KL", "logD")]


@pytest.fixture
def classifier_file(tmp_path):
    torch.manual_seed(1)
    model = build_classifier("resnet8", (1, 8, 8), 10)
    path = tmp_path / "cls.pt"
    torch.save(classifier_checkpoint(model, "resnet8", (1, 8, 8), 10), path)
    return path


@pytest.mark.parametrize("loss, divergence", PAIRINGS)
def test_composed_drift_passes_the_float64_check(tmp_path, classifier_file, loss, divergence):
    torch.save(random_checkpoint("resnet8", loss, divergence, sn=True), tmp_path / "ck.pt")
    result = export(tmp_path / "ck.pt", tmp_path / "c.onnx", ExportOptions(classifier=str(classifier_file), phi=0.5))
    assert result.passed and result.n >= 64
    meta = load_artifact(tmp_path / "c.onnx").meta
    assert meta.conditional["n_classes"] == 10 and meta.conditional["phi"] == 0.5
    assert meta.graph["input"] == ["x", "y"]


def test_the_label_changes_the_drift_and_backends_agree(tmp_path, classifier_file):
    torch.save(random_checkpoint("resnet8", "LR", "KL"), tmp_path / "ck.pt")
    for ext in ("onnx", "pt2"):
        export(tmp_path / "ck.pt", tmp_path / f"c.{ext}", ExportOptions(classifier=str(classifier_file), phi=2.0))
    outs = {}
    for ext in ("onnx", "pt2"):
        for c in ("3", "7"):
            # the .pt2 op by op: inductor's compiled path is compared with ORT in test_runtime.py
            p = run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / f"c.{ext}"), "-n", "16", "--class", c,
                        "--out", str(tmp_path / f"{ext}{c}"), "--format", "npz", "--quiet",
                        *(["--no-compile"] if ext == "pt2" else []))
            assert p.returncode == 0, p.stderr
            outs[ext, c] = read_run_folder(tmp_path / f"{ext}{c}")[1].astype(int)
    assert np.abs(outs["onnx", "3"] - outs["pt2", "3"]).max() <= 1  # uint8 pixels
    assert np.abs(outs["onnx", "3"] - outs["onnx", "7"]).max() > 1  # another class, another flow
    p = run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "c.onnx"), "-n", "20", "--classes", "0-4",
                "--out", str(tmp_path / "bal"), "--quiet")
    assert p.returncode == 0, p.stderr


def test_bad_classifier_and_labels(tmp_path, classifier_file):
    torch.save(random_checkpoint("resnet28"), tmp_path / "big.pt")
    p = run_cli("fdrl_export.cli", str(tmp_path / "big.pt"), str(tmp_path / "o.onnx"), "--classifier", str(classifier_file))
    assert_user_error(p, "shape")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "junk.pt")
    torch.save(random_checkpoint("resnet8"), tmp_path / "ck.pt")
    assert_user_error(run_cli("fdrl_export.cli", str(tmp_path / "ck.pt"), str(tmp_path / "o.onnx"), "--classifier",
                              str(tmp_path / "junk.pt")), "not an fdrl classifier")
    export(tmp_path / "ck.pt", tmp_path / "c.onnx", ExportOptions(classifier=str(classifier_file), check=False))
    export(tmp_path / "ck.pt", tmp_path / "u.onnx", ExportOptions(check=False))
    for args, fragment in [((str(tmp_path / "c.onnx"), "--class", "10"), "out of range"),
                           ((str(tmp_path / "c.onnx"), "--classes", "0-x"), "--classes"),
                           ((str(tmp_path / "u.onnx"), "--class", "1"), "not class-conditional")]:
        p = run_cli("fdrl_runtime.cli", "--engine", args[0], *args[1:], "-n", "4", "--out", str(tmp_path / "o"))
        assert_user_error(p, fragment)
    assert not (tmp_path / "o").exists()


def test_translation_trains_exports_and_needs_init(tmp_path):
    out = tmp_path / "tr"
    p = run_cli("fdrl_train.cli", "--config", "mnist_thick", "--out", str(out), "--quiet", "--set", "steps=2",
                "flow_steps=2", "batch_size=8", "sample_every=0")
    assert p.returncode == 0, p.stderr
    assert torch.load(out / "last.pt", weights_only=True)["prior"]["kind"] == "input"
    export(out / "last.pt", tmp_path / "t.onnx", ExportOptions(check=False))
    assert load_artifact(tmp_path / "t.onnx").meta.prior["kind"] == "input"
    assert_user_error(run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "t.onnx"), "-n", "4", "--out",
                              str(tmp_path / "o")), "--init")
    from fdrl_train.datasets import load_mnist_dataset
    src = ((load_mnist_dataset(0.1).test_images[:6].numpy() + 1) * 127.5).round().astype(np.uint8)
    np.savez(tmp_path / "src.npz", x=src.transpose(0, 2, 3, 1))
    p = run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "t.onnx"), "--init", str(tmp_path / "src.npz"),
                "--out", str(tmp_path / "o"), "--format", "npz", "--quiet")
    assert p.returncode == 0, p.stderr
    assert read_run_folder(tmp_path / "o")[1].shape == (6, 28, 28, 1)
    # Resume rebuilds the source domain from the config.
    p = run_cli("fdrl_train.cli", "--resume", str(out), "--quiet", "--set", "steps=3")
    assert p.returncode == 0, p.stderr


def test_translation_config_errors():
    from fdrl_train.config import ConfigError, validate
    with pytest.raises(ConfigError, match="source"):
        validate({"prior": "domain"})
    with pytest.raises(ConfigError, match="source"):
        validate({"prior": "ddp", "source": "mnist"})


def test_refinement_prior_is_a_folder_of_another_generators_images(tmp_path):
    # DGflow: FDRL whose prior is a generator's samples; fdrl-infer --init refines them.
    from PIL import Image

    from fdrl_train.datasets import load_mnist_dataset
    from fdrl_train.train import make_prior
    gen = tmp_path / "generator"
    gen.mkdir()
    imgs = ((load_mnist_dataset(0.1).test_images[:12, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(gen / f"{i:03d}.png")
    out = tmp_path / "refine"
    sets = ["prior=domain", "source=folder", f"source_dir={gen}"]
    p = run_cli("fdrl_train.cli", "--config", "mnist", "--out", str(out), "--quiet", "--set", "steps=2",
                "flow_steps=2", "refine_steps=0", "batch_size=8", "sample_every=0", *sets)
    assert p.returncode == 0, p.stderr
    # The prior draws exactly the folder's images, grey at the data's shape.
    from fdrl_train.config import load_config
    cfg = load_config("mnist", sets)
    prior = make_prior(cfg, load_mnist_dataset(cfg["test_fraction"]))
    draws = ((prior.sample(64, torch.Generator().manual_seed(0)).reshape(64, 28, 28) + 1) * 127.5).round()
    known = {im.tobytes() for im in imgs}
    assert all(d.numpy().astype(np.uint8).tobytes() in known for d in draws)
    export(out / "last.pt", tmp_path / "r.onnx", ExportOptions(check=False))
    p = run_cli("fdrl_runtime.cli", "--engine", str(tmp_path / "r.onnx"), "--init", str(gen), "--out",
                str(tmp_path / "o"), "--format", "npz", "--quiet")
    assert p.returncode == 0, p.stderr
    assert read_run_folder(tmp_path / "o")[1].shape == (12, 28, 28, 1)


def test_refinement_config_errors(tmp_path):
    from fdrl_train.config import ConfigError, validate
    with pytest.raises(ConfigError, match="source_dir"):
        validate({"prior": "domain", "source": "folder"})
    with pytest.raises(ConfigError, match="source_dir"):
        validate({"prior": "domain", "source": "mnist", "source_dir": "x"})
    p = run_cli("fdrl_train.cli", "--config", "mnist", "--out", str(tmp_path / "r"), "--quiet", "--set",
                "prior=domain", "source=folder", f"source_dir={tmp_path / 'missing'}")
    assert_user_error(p, "source_dir")
    assert not (tmp_path / "r" / "last.pt").exists()


def test_classifier_class_count_that_does_not_fit(tmp_path, classifier_file):
    torch.save(random_checkpoint("resnet8"), tmp_path / "ck.pt")
    ck = torch.load(classifier_file, weights_only=True)
    for n, fragment in [(5, "do not fit"), (1, "need at least 2")]:
        bad = dict(ck, n_classes=n)
        if n == 1:  # consistent weights, but one class composes nothing
            bad = classifier_checkpoint(build_classifier("resnet8", (1, 8, 8), 1), "resnet8", (1, 8, 8), 1)
        torch.save(bad, tmp_path / "cls_bad.pt")
        p = run_cli("fdrl_export.cli", str(tmp_path / "ck.pt"), str(tmp_path / "o.onnx"), "--classifier",
                    str(tmp_path / "cls_bad.pt"))
        assert_user_error(p, fragment)
        assert not (tmp_path / "o.onnx").exists()
