"""What the flow does, for runs of fdrl-train (issue 18's diagnosis): over training, the
mean estimator output on held-out data and on flowed samples (metrics.jsonl); along the
sampling flow of the final EMA estimator, the drift's per-step displacement (RMS per
coordinate, eta * |drift| / sqrt(d)), the score on the flowed batch, and the samples'
pixel mean and std beside the held-out data's.

    python scripts/flow_diagnostics.py runs/quality_digits_as_shipped runs/quality_digits_lr_kl \
        --out docs/digits_flow_diagnostics.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def along_the_flow(run: Path, n: int = 256, extra: int = 2):
    from fdrl_export.graph import estimator_from_checkpoint
    from fdrl_train.checkpoint import load_checkpoint
    from fdrl_train.data import load_dataset
    from fdrl_train.drift import DriftGraph
    from fdrl_train.losses import get_pairing
    from fdrl_train.priors import prior_from_state
    ckpt = load_checkpoint(run / "last.pt")
    cfg = ckpt["config"]
    est = estimator_from_checkpoint(ckpt)
    graph = DriftGraph(est.twin(), get_pairing(cfg["loss"], cfg["divergence"])[1], est.sample_shape)
    w = graph.weights(est.params)
    g = torch.Generator().manual_seed(0)
    x = prior_from_state(ckpt["prior"]).sample(n, g)
    test = load_dataset(cfg).test_set()
    steps = extra * (cfg["flow_steps"] + cfg["refine_steps"])
    rows = []
    with torch.no_grad():
        score_data = float(graph(w, test)[1].mean())
        for k in range(steps + 1):
            drift, score = graph(w, x)
            xc = x.clamp(-1, 1)
            rows.append({"step": k, "disp": float(cfg["eta"] * drift.pow(2).mean().sqrt()),
                         "score": float(score.mean()), "mean": float(xc.mean()), "std": float(xc.std()),
                         "outside": float((x.abs() > 1).float().mean())})
            x = x - cfg["eta"] * drift + cfg["noise"] * torch.randn(x.shape, generator=g)
    return cfg, rows, score_data, float(test.mean()), float(test.std())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="a .png for the figure; the table goes beside it as .md")
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 4, figsize=(18, 4))
    lines = ["| run | pairing | score on held-out data | score on prior draws → after K → after K + κ | "
             "RMS step (drift) at 1, K, K + κ | pixel std after K + κ (data) | pixels outside [−1, 1] |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for run in args.runs:
        metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
        cfg, rows, score_data, data_mean, data_std = along_the_flow(run)
        label = f"{run.name} ({cfg['loss']}-{cfg['divergence']}{', SN' if cfg['spectral_norm'] else ''})"
        s = [m["step"] for m in metrics]
        ax[0].plot(s, [m["r_data"] for m in metrics], label=f"{label}: data")
        ax[0].plot(s, [m["r_flowed"] for m in metrics], "--", label=f"{label}: flowed")
        k = [r["step"] for r in rows]
        ax[1].plot(k, [r["disp"] for r in rows], label=label)
        ax[2].plot(k, [r["std"] for r in rows], label=label)
        ax[3].plot(k, [r["mean"] for r in rows], label=label)
        K, T = cfg["flow_steps"], cfg["flow_steps"] + cfg["refine_steps"]
        lines.append(f"| `{run}` | {cfg['loss']}-{cfg['divergence']}{' + SN' if cfg['spectral_norm'] else ''} | "
                     f"{score_data:.3g} | {rows[0]['score']:.3g} → {rows[K]['score']:.3g} → {rows[T]['score']:.3g} | "
                     f"{rows[1]['disp']:.3g}, {rows[K]['disp']:.3g}, {rows[T]['disp']:.3g} | "
                     f"{rows[T]['std']:.3f} ({data_std:.3f}) | {rows[T]['outside']:.1%} |")
    for a in ax[2:]:
        a.axvline(K, color="grey", lw=0.5)
    ax[2].axhline(data_std, color="k", lw=0.8, ls=":", label="held-out data")
    ax[3].axhline(data_mean, color="k", lw=0.8, ls=":", label="held-out data")
    ax[0].set(title="mean r (LSIF) or exp(log r) during training", xlabel="training step", yscale="log")
    ax[1].set(title="RMS drift step per coordinate (sampling)", xlabel="flow step", yscale="log")
    ax[2].set(title="pixel std of clamped samples", xlabel="flow step")
    ax[3].set(title="pixel mean of clamped samples", xlabel="flow step")
    for a in ax:
        a.legend(fontsize=6)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
