"""Build the pre-trained artifacts that ship inside fdrl_runtime (fdrl_runtime/bundled/), from
the bundled presets as they are: train, export (the float64 check on), sample through the
runtime and measure, so `fdrl-infer --engine digits -n 10000` works on a fresh install
and `fdrl-infer --list` can say how good each is.

    python scripts/build_bundled.py                      # all of them, ~15 min on 2 cores
    python scripts/build_bundled.py --only digits        # one
    python scripts/build_bundled.py --steps 20 --out /tmp/b --work /tmp/w   # a dry run (the tests)

Quality, on 2,000 samples (seed 1) against fresh or held-out data, beside the prior's own
figure: points, the RBF-kernel MMD² of `fdrl-eval --against NAME` (and the 25 modes
covered); digits, the Fréchet distance in the hidden features of a scikit-learn MLP digit
classifier and the pixel MMD² against the held-out split (scripts/preset_quality.py's judge).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("swissroll", "25gaussians", "digits")
N_JUDGED = 2000


def sh(*cmd: str) -> None:
    subprocess.run([sys.executable, "-m", *cmd], check=True, cwd=ROOT)


def points_quality(x: np.ndarray, name: str) -> dict:
    from fdrl_eval.cli import toy_report
    r = toy_report(x, name, 0.1)
    out = {"measure": "MMD² (RBF width 0.1) against fresh data", "value": r["mmd2"], "prior": r["mmd2_standard_normal"]}
    if "modes_covered" in r:
        out["modes_covered"] = r["modes_covered"]
    return out


def digits_quality(x: np.ndarray) -> dict:
    from fdrl_eval.digits import digits_judge
    judge = digits_judge()
    train_x = judge.train_x
    rng = np.random.default_rng(12)
    cov = np.cov(train_x, rowvar=False) + 1e-4 * np.eye(train_x.shape[1])  # the DDP prior, fitted with numpy
    prior = judge(np.clip(rng.multivariate_normal(train_x.mean(0), cov, size=len(x)), -1, 1))
    got = judge(x.reshape(len(x), -1).astype(np.float64))
    return {"measure": "Fréchet distance (MLP digit-classifier features) against the held-out split",
            "value": got["digit_fd"], "prior": prior["digit_fd"], "mmd2": got["mmd2"], "mmd2_prior": prior["mmd2"]}


def build(name: str, out: Path, work: Path, steps: int | None) -> dict:
    import fdrl_runtime
    from fdrl_runtime.artifact import sha256_file
    run = work / name
    t0 = time.perf_counter()
    sh("fdrl_train.cli", "--config", name, "--out", str(run), "--overwrite", "--quiet",
       # a dry run: few steps, no pictures, no compile of the toy flow (tens of seconds it would not repay)
       *(["--set", f"steps={steps}", f"ckpt_every={steps}", "sample_every=0", "compile_flow=false"] if steps else []))
    train_s = time.perf_counter() - t0
    target = out / f"{name}.onnx"
    sh("fdrl_export.cli", str(run / "last.pt"), str(target))  # the float64 check runs here
    with fdrl_runtime.load(target) as sampler:
        x = sampler.sample(N_JUDGED, seed=1)
    quality = points_quality(x, name) if x.ndim == 2 else digits_quality(x)
    return {"file": target.name, "sha256": sha256_file(target), "preset": name, "train_steps": steps or "as shipped",
            "train_minutes": round(train_s / 60, 1), "samples_judged": N_JUDGED, "quality": quality,
            "rebuild": f"python scripts/build_bundled.py --only {name}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=BUNDLED, help="build this one (repeatable; default: all)")
    ap.add_argument("--out", default=str(ROOT / "fdrl_runtime" / "bundled"), help="where the artifacts go")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bundled"), help="the training runs")
    ap.add_argument("--steps", type=int, help="train this many steps instead of the preset's (a dry run)")
    args = ap.parse_args()
    from fdrl_core.atomic import atomic_write_text
    from fdrl_runtime.bundled import INDEX_NAME
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / INDEX_NAME
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for name in args.only or BUNDLED:
        index[name] = build(name, out, Path(args.work), args.steps)
        atomic_write_text(index_path, json.dumps(index, indent=2, sort_keys=True, ensure_ascii=False) + "\n")  # each as it is made
        q = index[name]["quality"]
        print(f"{name}: {q['measure']}: {q['value']:.4g} (prior {q['prior']:.4g}); {index[name]['train_minutes']} min")


if __name__ == "__main__":
    main()
