"""`fdrl-eval SAMPLES --against REF`: quality numbers of a sample set.

REF is `mnist` (the held-out MNIST-5k split; the digit classifier's Fréchet distance,
KID, confidence and label entropy), a toy dataset (`25gaussians`, `8gaussians`,
`swissroll`, `chasm`: MMD and mode coverage) or a statistics .npz (`mu`, `sigma`: FID on
Inception features, weights needed on disk). `--save-stats FILE` writes the samples'
statistics in that same format.
"""
from __future__ import annotations

import json
import os
import tempfile

import click
import numpy as np

from fdrl_core.atomic import atomic_write_text
from fdrl_core.cli import command
from fdrl_core.errors import cli_errors

from .samples import EvalError, load_samples

TOYS = ("25gaussians", "8gaussians", "swissroll", "chasm")


def digit_report(x: np.ndarray) -> dict:
    import torch

    from fdrl_eval.metrics import (
        feature_stats,
        frechet_distance,
        kernel_inception_distance,
    )
    from fdrl_train.classifier import load_digit_classifier, predict
    from fdrl_train.datasets import load_mnist_dataset
    if tuple(x.shape[1:]) != (1, 28, 28):
        raise EvalError(f"--against mnist takes 28x28 grey images; the samples have shape {tuple(x.shape[1:])}")
    clf = load_digit_classifier()
    data = load_mnist_dataset(0.1)

    def feats(imgs):
        with torch.no_grad():
            t = torch.as_tensor(imgs)
            return torch.cat([clf.features(t[i:i + 500]) for i in range(0, len(t), 500)]).numpy()

    fs, fr = feats(x), feats(data.test_images)
    probs = predict(clf, torch.as_tensor(x))
    marginal = probs.mean(0)
    kid, kid_std = kernel_inception_distance(fs, fr, subset_size=min(500, len(fs), len(fr)))
    return {"reference": "MNIST-5k held-out split", "n": len(x),
            "digit_fd": frechet_distance(*feature_stats(fs), *feature_stats(fr)),
            "digit_kid": kid, "digit_kid_std": kid_std,
            "mean_confidence": float(probs.max(1).values.mean()),
            "label_entropy": float(-(marginal * marginal.clamp_min(1e-12).log()).sum()),
            "classifier_heldout_accuracy": float((predict(clf, data.test_images).argmax(1) == data.test_labels).float().mean())}


def toy_report(x: np.ndarray, name: str, width: float) -> dict:
    import torch

    from fdrl_eval.metrics import mmd2_rbf, mode_coverage
    from fdrl_train.datasets import TWENTY_FIVE_CENTRES, toy_sample
    if x.ndim != 2:
        raise EvalError(f"--against {name} takes points [N, 2]; the samples have shape {tuple(x.shape[1:])}")
    t = torch.as_tensor(x)
    data = toy_sample(name, len(x), torch.Generator().manual_seed(99))
    prior = torch.randn(len(x), x.shape[1], generator=torch.Generator().manual_seed(98))
    out = {"reference": f"{len(x)} fresh {name} points", "n": len(x), "mmd2": mmd2_rbf(t, data, width),
           "mmd2_standard_normal": mmd2_rbf(prior, data, width), "kernel_width": width}
    if name == "25gaussians":
        out["modes_covered"] = mode_coverage(t, TWENTY_FIVE_CENTRES, 0.1, 5)
    return out


def fid_report(x: np.ndarray, stats_path: str) -> dict:
    from fdrl_eval.metrics import feature_stats, frechet_distance

    from .inception import inception_features, read_stats
    mu_r, sigma_r = read_stats(stats_path)
    feats = inception_features(x)
    return {"reference": stats_path, "n": len(x), "fid": frechet_distance(*feature_stats(feats), mu_r, sigma_r)}


@command("fdrl-eval")
@click.argument("samples")
@click.option("--against", "against", required=True, help="mnist, a toy dataset name, or a stats .npz (mu, sigma).")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="RBF kernel width for toy MMD (> 0).")
@click.option("--inception-weights", help="Path to pt_inception-2015-12-05-6726825d.pth (FID).")
@click.option("--save-stats", type=click.Path(dir_okay=False), help="Write the samples' Inception mu/sigma here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the numbers as JSON.")
def main(samples, against, width, inception_weights, save_stats, json_path):
    """Quality numbers of SAMPLES (an fdrl-infer folder, an .npz or an image folder)."""
    with cli_errors("fdrl-eval"), tempfile.TemporaryDirectory() as home:
        if save_stats or against.endswith(".npz"):  # Inception: its weights from disk, through torch's hub
            from .inception import find_weights, read_stats, torch_home_for
            if against.endswith(".npz"):
                read_stats(against)  # a bad statistics file is named before anything else is needed
            os.environ["TORCH_HOME"] = str(torch_home_for(find_weights(inception_weights), home))
        x = load_samples(samples)
        if against == "mnist":
            report = digit_report(x)
        elif against in TOYS:
            report = toy_report(x, against, width)
        elif against.endswith(".npz"):
            report = fid_report(x, against)
        else:
            raise EvalError(f"--against {against!r}: use mnist, {', '.join(TOYS)} or a statistics .npz")
        if save_stats:
            from fdrl_eval.metrics import feature_stats

            from .inception import inception_features, write_stats
            write_stats(save_stats, *feature_stats(inception_features(x)))
        click.echo(json.dumps(report, indent=2))
        if json_path:
            atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
