"""Sample quality of a shipped CPU preset, judged by measures independent of the project's
code (issue 18): train the preset (or variants of it), export, sample with fdrl-infer, and
compare against the held-out split beside a Gaussian fitted to the training split (what
the DDP prior is) and the training split itself.

Measures (all against the held-out split): Fréchet distance in the hidden features of a
scikit-learn MLP digit classifier trained on the training split; RBF-kernel MMD² in pixel
space (bandwidth: the median pairwise distance of the held-out split); 1-Wasserstein
distance of the pixel values (scipy); the smallest class share the classifier assigns.

    python scripts/preset_quality.py --preset digits                      # the preset as shipped
    python scripts/preset_quality.py --preset digits --run "LR-KL=loss=LR divergence=KL"
    python scripts/preset_quality.py --preset digits --reuse              # judge runs/quality_* again
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def sh(*cmd):
    subprocess.run([sys.executable, "-m", *cmd], check=True, cwd=ROOT)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def mmd2(x: np.ndarray, y: np.ndarray, width: float) -> float:
    """Unbiased squared MMD, k(a, b) = exp(-|a - b|^2 / (2 width^2))."""
    from scipy.spatial.distance import cdist
    g = 1.0 / (2 * width ** 2)
    kxx, kyy, kxy = (np.exp(-g * cdist(p, q, "sqeuclidean")) for p, q in ((x, x), (y, y), (x, y)))
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


class Judge:
    def __init__(self, train_x, train_y, test_x):
        from scipy.spatial.distance import pdist
        from sklearn.neural_network import MLPClassifier
        self.clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=0).fit(train_x, train_y)
        self.test_x = test_x
        self.test_feats = self.features(test_x)
        self.width = float(np.median(pdist(test_x)))

    def features(self, x):  # the hidden ReLU layer: 32-d keeps the bias of a 180-image reference small
        return np.maximum(x @ self.clf.coefs_[0] + self.clf.intercepts_[0], 0)

    def __call__(self, x: np.ndarray) -> dict:
        from scipy.stats import wasserstein_distance
        labels = self.clf.predict(x)
        shares = np.bincount(labels, minlength=10) / len(labels)
        return {"fd": frechet(self.features(x), self.test_feats), "mmd2": mmd2(x, self.test_x, self.width),
                "pixel_w1": float(wasserstein_distance(x.ravel(), self.test_x.ravel())),
                "pixel_mean": float(x.mean()), "pixel_std": float(x.std()), "min_class": float(shares.min())}


def sample_run(preset: str, run_dir: Path, sets: list[str], n: int, train: bool,
               steps: int | None = None) -> tuple[np.ndarray, float | None]:
    from fdrl_core.samples import from_uint8_hwc, read_run_folder
    train_s = None
    if train:
        t0 = time.perf_counter()
        sh("fdrl_train.cli", "--config", preset, "--out", str(run_dir), "--overwrite", "--quiet",
           *(["--set", *sets] if sets else []))
        train_s = time.perf_counter() - t0
    sh("fdrl_export.cli", str(run_dir / "last.pt"), str(run_dir / "model.onnx"))
    sh("fdrl_runtime.cli", "--engine", str(run_dir / "model.onnx"), "-n", str(n), "--out", str(run_dir / "samples"),
       "--format", "npz", "--overwrite", "--quiet", "--seed", "2", *(["--steps", str(steps)] if steps else []))
    _, u8 = read_run_folder(run_dir / "samples")
    return from_uint8_hwc(u8, (-1.0, 1.0)).reshape(len(u8), -1), train_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", required=True, choices=["digits", "mnist"])
    ap.add_argument("--run", action="append", default=[],
                    help="LABEL=key=value key=value ...: a variant of the preset (default: the preset as shipped)")
    ap.add_argument("--reuse", action="store_true", help="judge the runs already in runs/quality_<preset>_*")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--doc", help="write the table here (Markdown)")
    ap.add_argument("--steps", type=int, help="flow steps at sampling (default: each run's K + kappa)")
    args = ap.parse_args()
    from fdrl_train.config import load_config
    from fdrl_train.data import load_dataset
    cfg = load_config(args.preset)
    data = load_dataset(cfg)
    flat = lambda t: t.reshape(len(t), -1).numpy().astype(np.float64)  # noqa: E731
    train_x, test_x = flat(data.train_images), flat(data.test_images)
    judge = Judge(train_x, data.train_labels.numpy(), test_x)
    rng = np.random.default_rng(12)
    # The DDP prior as the paper defines it, fitted here with numpy: N(mean, cov + 1e-4 I), clamped.
    cov = np.cov(train_x, rowvar=False) + 1e-4 * np.eye(train_x.shape[1])
    gauss = np.clip(rng.multivariate_normal(train_x.mean(0), cov, size=args.n), -1, 1)
    rows = [("training split (floor)", judge(train_x[rng.choice(len(train_x), min(args.n, len(train_x)), replace=False)]), None),
            ("Gaussian fitted to the training split (the DDP prior)", judge(gauss), None)]
    runs = [r.split("=", 1) for r in args.run] or [["as shipped", ""]]
    for label, sets in runs:
        slug = re.sub("_+", "_", "".join(c if c.isalnum() else "_" for c in label.lower())).strip("_")
        x, train_s = sample_run(args.preset, ROOT / "runs" / f"quality_{args.preset}_{slug}", sets.split(),
                                args.n, not args.reuse, args.steps)
        rows.append((f"FDRL `{args.preset}` {label}" + (f" (`{sets}`)" if sets else ""), judge(x), train_s))
    g = rows[1][1]
    lines = [f"| {args.preset}: samples vs held-out ({len(test_x)}) | FD (MLP features) | MMD² | pixel W1 | "
             "pixel mean / std | smallest class | FD, MMD², W1 vs the Gaussian | train min |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r, t in rows:
        ratio = f"{r['fd'] / g['fd']:.2f}× / {r['mmd2'] / g['mmd2']:.2f}× / {r['pixel_w1'] / g['pixel_w1']:.2f}×"
        lines.append(f"| {name} | {r['fd']:.3f} | {r['mmd2']:.5f} | {r['pixel_w1']:.4f} | {r['pixel_mean']:.3f} / "
                     f"{r['pixel_std']:.3f} | {r['min_class']:.1%} | {ratio} | {'' if t is None else f'{t / 60:.1f}'} |")
    print("\n".join(lines))
    print(json.dumps({name: r for name, r, _ in rows}, indent=1))
    if args.doc:
        Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
        Path(args.doc).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
