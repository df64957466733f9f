"""MNIST-5k quality (issue 2, Show 3): train the mnist preset, export, sample with the
runtime, and judge samples, DDP-prior draws and the held-out split with the project's
digit classifier (fdrl_train/assets): confidence, label spread, Fréchet distance of its
128-d features to the held-out split.

    python scripts/mnist_quality.py [--skip-train] [--out docs]     # trains runs/mnist and runs/mnist_lrkl
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from fdrl_core.pictures import image_grid, save_png
from fdrl_core.samples import from_uint8_hwc, read_run_folder
from fdrl_eval.metrics import feature_stats, frechet_distance
from fdrl_train.checkpoint import load_checkpoint
from fdrl_train.classifier import load_digit_classifier, predict
from fdrl_train.datasets import load_mnist_dataset
from fdrl_train.priors import prior_from_state


def run(*cmd):
    subprocess.run([sys.executable, "-m", *cmd], check=True)


def judge(clf, x, ref_stats):
    with torch.no_grad():
        probs = predict(clf, x)
        feats = torch.cat([clf.features(x[i:i + 500]) for i in range(0, len(x), 500)]).numpy()
    conf = probs.max(1).values
    marginal = probs.mean(0)
    entropy = float(-(marginal * marginal.clamp_min(1e-12).log()).sum())
    fd = frechet_distance(*feature_stats(feats), *ref_stats)
    return {"confidence": float(conf.mean()), "confident": float((conf > 0.9).float().mean()),
            "label_entropy": entropy, "fd": fd}


# The preset as shipped (LSIF-χ²) and the LR-KL pairing, same budget; samples_png per run.
RUNS = [("LSIF-χ²", "runs/mnist", [], "mnist_samples.png"),
        ("LR-KL", "runs/mnist_lrkl", ["loss=LR", "divergence=KL"], "mnist_samples_lrkl.png")]


def sample_run(run_dir: Path, sets: list[str], n: int, train: bool) -> tuple[torch.Tensor, dict, float | None]:
    train_s = None
    if train:
        t0 = time.perf_counter()
        run("fdrl_train.cli", "--config", "mnist", "--out", str(run_dir), "--overwrite", "--quiet",
            *(["--set", *sets] if sets else []))
        train_s = time.perf_counter() - t0
    run("fdrl_export.cli", str(run_dir / "last.pt"), str(run_dir / "model.onnx"))
    run("fdrl_runtime.cli", "--engine", str(run_dir / "model.onnx"), "-n", str(n), "--out",
        str(run_dir / "samples"), "--format", "npz", "--overwrite", "--quiet", "--seed", "11")
    _, u8 = read_run_folder(run_dir / "samples")
    return torch.from_numpy(from_uint8_hwc(u8, (-1.0, 1.0))), load_checkpoint(run_dir / "last.pt"), train_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-train", action="store_true", help="use the runs already in runs/mnist, runs/mnist_lrkl")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    out = Path(args.out)
    data = load_mnist_dataset(0.1)
    clf = load_digit_classifier()
    with torch.no_grad():
        ref_feats = torch.cat([clf.features(data.test_images[i:i + 500]) for i in range(0, len(data.test_images), 500)])
    ref_stats = feature_stats(ref_feats.numpy())
    train_half = data.train_images[: len(data.test_images)]
    rows = [("held-out test split (floor)", judge(clf, data.test_images, ref_stats)),
            ("training images (same count)", judge(clf, train_half, ref_stats))]
    settings = []
    for name, run_dir, sets, png in RUNS:
        samples, ckpt, train_s = sample_run(Path(run_dir), sets, args.n, not args.skip_train)
        rows.append((f"FDRL samples, {name} (`{run_dir}`)", judge(clf, samples, ref_stats)))
        save_png(image_grid(samples[:64].numpy()), out / png)
        cfg = ckpt["config"]
        settings.append(f"- {name}: `{run_dir}`, {ckpt['step']} steps" + (f", {train_s / 60:.0f} min" if train_s else "")
                        + f"; grid `{png}`")
    prior = prior_from_state(ckpt["prior"]).sample(args.n, torch.Generator().manual_seed(12))
    rows.append(("DDP prior draws (ceiling)", judge(clf, prior, ref_stats)))
    save_png(image_grid(prior[:64].clamp(-1, 1).numpy()), out / "mnist_prior.png")
    acc = float((predict(clf, data.test_images).argmax(1) == data.test_labels).float().mean())
    lines = ["# MNIST-5k quality", "",
             f"Preset `mnist`: {cfg['model']}, DDP prior, K = {cfg['flow_steps']}, κ = {cfg['refine_steps']}, "
             f"η = {cfg['eta']}, batch {cfg['batch_size']}, on 2 CPU cores; two pairings on the same budget:",
             *settings,
             f"Judge: the project's digit classifier (held-out accuracy {acc:.3f}); Fréchet distance of its 128-d",
             f"features against the held-out split; {args.n} samples from `fdrl-infer` (seed 11).", "",
             "    python scripts/mnist_quality.py", "",
             "| images | mean confidence | confidence > 0.9 | label entropy (max 2.303) | Fréchet distance |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        lines.append(f"| {name} | {r['confidence']:.3f} | {r['confident']:.1%} | {r['label_entropy']:.3f} | {r['fd']:.2f} |")
    ddp_fd = rows[-1][1]["fd"]
    lines += ["", "Fréchet distance relative to the DDP prior's: "
              + ", ".join(f"{n.split(' (')[0].removeprefix('FDRL samples, ')} {r['fd'] / ddp_fd:.2f}×"
                          for n, r in rows if n.startswith("FDRL")) + " (issue 6 target ≤ 0.5×).",
              "`mnist_prior.png`: the DDP prior's draws."]
    (out / "mnist_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
