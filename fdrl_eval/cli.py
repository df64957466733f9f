"""`fdrl-eval`: quality numbers of a sample set, against a reference or a second set.

    fdrl-eval A --against REF     REF: `mnist` (the held-out MNIST-5k split: the digit classifier's
                                  Fréchet distance and KID, confidence, label entropy), `digits`
                                  (the 8x8 digits preset's held-out split: fdrl_eval/digits.py), a toy
                                  (`25gaussians`, ...: MMD and mode coverage) or a statistics .npz
    fdrl-eval A B                 two sample sets (run folders, shard sets, .npz/.npy, image
                                  folders): points by RBF MMD; images by FID and KID in the
                                  features of --features (Inception: pytorch-fid's network and
                                  weights, the `eval` extra; digits: the bundled digit classifier).
                                  B may be a statistics .npz (mu, sigma): FID only.
    fdrl-eval A --save-stats F    A's feature statistics, in pytorch-fid's format (mu, sigma)
"""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import click
import numpy as np

from fdrl_core.atomic import atomic_write_text, check_output_file
from fdrl_core.cli import command
from fdrl_core.errors import cli_errors
from fdrl_core.launch import check_device

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
    scale = kid_feature_scale(fr)
    kid, kid_std = kernel_inception_distance(fs / scale, fr / scale, subset_size=500)
    return {"reference": "MNIST-5k held-out split", "n": len(x),
            "digit_fd": frechet_distance(*feature_stats(fs), *feature_stats(fr)),
            "digit_kid": kid, "digit_kid_std": kid_std, "digit_kid_feature_scale": scale,
            "mean_confidence": float(probs.max(1).values.mean()),
            "label_entropy": float(-(marginal * marginal.clamp_min(1e-12).log()).sum()),
            "classifier_heldout_accuracy": float((predict(clf, data.test_images).argmax(1) == data.test_labels).float().mean())}


def kid_feature_scale(reference: np.ndarray) -> float:
    """KID's cubic kernel (x.y/d + 1)^3 depends on the features' scale. Inception's pool
    features are O(1) per coordinate, which puts KID on its usual scale (0.001 to 0.1); the
    digit classifier's ReLU features are not (KID came out as 1263.9), so they are divided by
    the reference set's RMS coordinate first."""
    return float(np.sqrt(np.mean(np.square(np.asarray(reference, np.float64))))) or 1.0


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


FEATURES = ("inception", "digits")


def image_features(x: np.ndarray, kind: str, device: str, batch_size: int) -> np.ndarray:
    """[N, D] features of images in [-1, 1]: Inception-v3 pool (2048) or the digit classifier's (128)."""
    if kind == "inception":
        from .inception import inception_features
        return inception_features(x, batch=batch_size, device=device)
    import torch

    from fdrl_train.classifier import load_digit_classifier
    if tuple(x.shape[1:]) != (1, 28, 28):
        raise EvalError(f"--features digits takes 28x28 grey images; the samples have shape {tuple(x.shape[1:])}")
    clf = load_digit_classifier().to(device)
    with torch.no_grad():
        return np.concatenate([clf.features(torch.as_tensor(x[i:i + batch_size]).to(device)).cpu().numpy()
                               for i in range(0, len(x), batch_size)])


def stats_file(path: str) -> bool:
    """An .npz of statistics (mu, sigma), not of samples."""
    if not path.endswith(".npz") or not Path(path).is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except Exception:  # not an npz at all: load_samples names the problem
        return False


def fid_report(x: np.ndarray, stats_path: str, kind="inception", device="cpu", batch_size=50) -> dict:
    from fdrl_eval.metrics import feature_stats, frechet_distance

    from .inception import read_stats
    mu_r, sigma_r = read_stats(stats_path)
    if x.ndim != 4:
        raise EvalError(f"FID against {stats_path} takes images; these samples are points {tuple(x.shape[1:])}")
    feats = image_features(x, kind, device, batch_size)
    if feats.shape[1] != len(mu_r):
        raise EvalError(f"{stats_path} holds statistics of {len(mu_r)}-d features, these are {feats.shape[1]}-d "
                        f"({kind}): make it with --features {kind} --save-stats")
    return {"reference": stats_path, "n": len(x), "features": kind,
            "fid": frechet_distance(*feature_stats(feats), mu_r, sigma_r)}


def pair_report(a: np.ndarray, b: np.ndarray, names, kind: str, device: str, batch_size: int, width: float) -> dict:
    """Two sample sets: points by RBF MMD; images by FID and KID in `kind` features."""
    if a.shape[1:] != b.shape[1:]:
        raise EvalError(f"the two sample sets differ in shape: {tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    out = {"a": names[0], "b": names[1], "n_a": len(a), "n_b": len(b)}
    if a.ndim == 2:
        import torch

        from fdrl_eval.metrics import mmd2_rbf
        return {**out, "mmd2": mmd2_rbf(torch.as_tensor(a), torch.as_tensor(b), width), "kernel_width": width}
    from fdrl_eval.metrics import feature_stats, frechet_distance, kernel_inception_distance
    fa, fb = image_features(a, kind, device, batch_size), image_features(b, kind, device, batch_size)
    scale = 1.0 if kind == "inception" else kid_feature_scale(fb)
    kid, kid_std = kernel_inception_distance(fa / scale, fb / scale)
    return {**out, "features": kind, "fid": frechet_distance(*feature_stats(fa), *feature_stats(fb)),
            "kid": kid, "kid_std": kid_std, "kid_feature_scale": scale}


@command("fdrl-eval")
@click.argument("samples")
@click.argument("other", required=False)
@click.option("--against", "against", help="mnist, digits, a toy dataset name, or a stats .npz (mu, sigma).")
@click.option("--features", type=click.Choice(FEATURES), default="inception", show_default=True,
              help="Image features for A B and --save-stats: pytorch-fid's Inception, or the digit classifier (28x28).")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="RBF kernel width for MMD of points (> 0).")
@click.option("--inception-weights", help="Path to pt_inception-2015-12-05-6726825d.pth (FID).")
@click.option("--device", default="cpu", show_default=True, help="Where features are computed: cpu, cuda, cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="Images per feature-network call.")
@click.option("--save-stats", type=click.Path(dir_okay=False), help="Write the samples' feature mu/sigma here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the numbers as JSON.")
def main(samples, other, against, features, width, inception_weights, device, batch_size, save_stats, json_path):
    """Quality numbers of SAMPLES (an fdrl-infer folder, an .npz or an image folder), against
    --against REF or a second set OTHER."""
    with cli_errors("fdrl-eval"), contextlib.ExitStack() as held:
        if other and against:
            raise EvalError("give a second sample set or --against, not both")
        if not (other or against or save_stats):
            raise EvalError("nothing to compare with: give a second sample set, --against REF or --save-stats FILE")
        check_device(device)
        for flag, path in (("--json", json_path), ("--save-stats", save_stats)):
            if path:
                check_output_file(path, flag)
        if device != "cpu":
            import torch
            if not torch.cuda.is_available():
                raise EvalError(f"--device {device}: no CUDA GPU is visible to torch here; use --device cpu")
        stats_ref = against if against and against.endswith(".npz") else (other if other and stats_file(other) else None)
        if stats_ref:
            from .inception import read_stats
            read_stats(stats_ref)  # a bad statistics file is named before anything else is needed
        inception = features == "inception" and (save_stats or stats_ref or other)
        x = load_samples(samples)
        y = load_samples(other) if other and not stats_ref else None
        if inception and x.ndim == 4:  # its weights from disk, through torch's hub
            from .inception import inception_home
            held.enter_context(inception_home(inception_weights))
        if stats_ref:
            report = fid_report(x, stats_ref, features, device, batch_size)
        elif y is not None:
            report = pair_report(x, y, (samples, other), features, device, batch_size, width)
        elif against == "mnist":
            report = digit_report(x)
        elif against == "digits":
            from .digits import digits_report
            report = digits_report(x)
        elif against in TOYS:
            report = toy_report(x, against, width)
        elif against:
            raise EvalError(f"--against {against!r}: use mnist, digits, {', '.join(TOYS)} or a statistics .npz")
        else:
            report = {"samples": samples, "n": len(x)}
        if save_stats:
            if x.ndim != 4:
                raise EvalError("--save-stats writes statistics of image features; these samples are points")
            from fdrl_eval.metrics import feature_stats

            from .inception import write_stats
            write_stats(save_stats, *feature_stats(image_features(x, features, device, batch_size)))
            report["saved_stats"] = {"path": save_stats, "features": features}
        not_finite = [k for k, v in report.items() if isinstance(v, float) and not math.isfinite(v)]
        if not_finite:  # JSON has no NaN; a NaN figure is no measurement
            raise EvalError(f"{not_finite[0]} came out {report[not_finite[0]]} (the features or statistics are "
                            "degenerate: too few samples, or constant ones); nothing was written")
        click.echo(json.dumps(report, indent=2))
        if json_path:
            atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
