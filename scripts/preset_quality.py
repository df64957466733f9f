"""Sample quality of a shipped CPU preset, judged by measures independent of the project's
code (issue 18): train the preset (or variants of it), export, sample with fdrl-infer, and
compare against the held-out split beside a Gaussian fitted to the training split (what
the DDP prior is) and the training split itself.

Measures (all against the held-out split): fdrl_eval/digits.py's judge (`fdrl-eval --against
digits` on the digits preset's split), fitted here on the chosen preset's split: Fréchet
distance in an MLP digit classifier's features, pixel MMD², pixel W1, the smallest class share.

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
    from fdrl_eval.digits import DigitsJudge
    from fdrl_train.config import load_config
    from fdrl_train.data import load_dataset
    cfg = load_config(args.preset)
    data = load_dataset(cfg)
    flat = lambda t: t.reshape(len(t), -1).numpy().astype(np.float64)  # noqa: E731
    train_x, test_x = flat(data.train_images), flat(data.test_images)
    judge = DigitsJudge(train_x, data.train_labels.numpy(), test_x)
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
        ratio = f"{r['digit_fd'] / g['digit_fd']:.2f}× / {r['mmd2'] / g['mmd2']:.2f}× / {r['pixel_w1'] / g['pixel_w1']:.2f}×"
        lines.append(f"| {name} | {r['digit_fd']:.3f} | {r['mmd2']:.5f} | {r['pixel_w1']:.4f} | {r['pixel_mean']:.3f} / "
                     f"{r['pixel_std']:.3f} | {r['min_class']:.1%} | {ratio} | {'' if t is None else f'{t / 60:.1f}'} |")
    print("\n".join(lines))
    print(json.dumps({name: r for name, r, _ in rows}, indent=1))
    if args.doc:
        Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
        Path(args.doc).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
