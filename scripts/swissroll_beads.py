"""The swiss-roll demo against the reference implementation's own loss and flow (issue 18,
Show 3): the `swissroll` preset trained by fdrl-train, and the same recipe trained by the
reference code's `flow`, `get_loss`, `MLP` and `EMAHelper` (imported from a clear-nus/fdrl
checkout you give; nothing of it is copied here). Both sampled K + kappa steps from N(0, I).

Measures against fresh data: RBF-kernel MMD² (width 0.1, the project's toy measure) beside
N(0, I)'s; and bead-ness, the gaps a clumped sample leaves along the spiral: the 99th
percentile of the distance from fresh data points to their nearest sample, divided by the
same for a second fresh data set (1.0 = covers the spiral as data does). Then the trained
estimator of each is sampled at several nu, to see whether the beads come from the noise.

    python scripts/swissroll_beads.py --reference /path/to/fdrl-checkout --out docs/swissroll_beads
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
N = 4000


def gap_ratio(samples: torch.Tensor, data: torch.Tensor, data2: torch.Tensor) -> float:
    def gap(s):
        return torch.cdist(data.double(), s.double()).min(1).values.quantile(0.99)
    return float(gap(samples) / gap(data2))


def train_ours(out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fdrl_train.cli", "--config", "swissroll", "--out", str(out),
                    "--overwrite", "--quiet"], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def train_reference(ref: Path, cfg: dict, data_fn):
    """The preset's recipe on the reference code's own pieces, in the reference's loop order."""
    sys.path.insert(0, str(ref))
    from src.ema import EMAHelper
    from src.model_utils import flow, get_loss
    from src.models import MLP
    rc = {"in_dim": 2, "hidden_dim": cfg["hidden_dim"], "n_hidden_layers": cfg["n_hidden_layers"],
          "spectral_norm": False, "device": "cpu"}
    torch.manual_seed(cfg["seed"])
    model = MLP(rc)
    optim = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=[0.9, 0.999])
    ema = EMAHelper(mu=cfg["ema_rate"])
    ema.register(model)
    g = torch.Generator().manual_seed(cfg["seed"])
    t0 = time.perf_counter()
    for i in range(cfg["steps"]):
        for group in optim.param_groups:
            group["lr"] = cfg["lr"] * cfg["lr_gamma"] ** sum(1 for m in cfg["lr_milestones"] if m <= i)
        x_de = data_fn(cfg["batch_size"], g)
        x_nu = flow(torch.randn(cfg["batch_size"], 2), model, cfg["flow_steps"], cfg["eta"], cfg["noise"], cfg["divergence"])
        loss, *_ = get_loss(cfg["loss"], model(x_nu), model(x_de))
        optim.zero_grad()
        loss.backward()
        optim.step()
        ema.update(model)
    return ema.ema_copy(model), time.perf_counter() - t0, flow


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, required=True, help="a checkout of clear-nus/fdrl (its src/ is imported)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "swissroll_beads")
    ap.add_argument("--reuse", action="store_true", help="use runs/beads_ours as it is")
    args = ap.parse_args()
    from fdrl_eval.metrics import mmd2_rbf
    from fdrl_export.graph import estimator_from_checkpoint
    from fdrl_train.checkpoint import load_checkpoint
    from fdrl_train.datasets import toy_sample
    from fdrl_train.drift import DriftGraph
    from fdrl_train.flow import flow as our_flow
    from fdrl_train.losses import get_pairing
    run = ROOT / "runs" / "beads_ours"
    ours_s = None if args.reuse else train_ours(run)
    ckpt = load_checkpoint(run / "last.pt")
    cfg = ckpt["config"]
    ref_model, ref_s, ref_flow = train_reference(args.reference, cfg, lambda n, g: toy_sample("swissroll", n, g))
    steps = cfg["flow_steps"] + cfg["refine_steps"]
    g = torch.Generator().manual_seed(5)
    data, data2 = toy_sample("swissroll", N, g), toy_sample("swissroll", N, g)
    normal = torch.randn(N, 2, generator=g)
    est = estimator_from_checkpoint(ckpt)
    graph = DriftGraph(est.twin(), get_pairing(cfg["loss"], cfg["divergence"])[1], est.sample_shape)
    weights = graph.weights(est.params)

    def ours(nu, seed=7):
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.randn(N, 2, generator=gen)
        with torch.no_grad():
            return our_flow(lambda x: graph(weights, x)[0], x0, steps, cfg["eta"], nu,
                            lambda k: torch.randn(N, 2, generator=gen))

    def reference(nu, seed=7):
        torch.manual_seed(seed)
        return ref_flow(torch.randn(N, 2), ref_model, steps, cfg["eta"], nu, cfg["divergence"])

    rows = [("fresh data (second draw)", data2), ("N(0, I), the prior", normal)]
    sweep = {}
    for nu in (cfg["noise"], 0.03, 0.1):
        sweep[nu] = (ours(nu), reference(nu))
    rows += [(f"fdrl-train `swissroll` (ν = {cfg['noise']})", sweep[cfg["noise"]][0]),
             (f"reference loss + flow, same recipe (ν = {cfg['noise']})", sweep[cfg["noise"]][1])]
    lines = [f"Recipe (the `swissroll` preset): {cfg['loss']}-{cfg['divergence']}, MLP {cfg['n_hidden_layers']}×"
             f"{cfg['hidden_dim']}, batch {cfg['batch_size']}, {cfg['steps']} steps, K = {cfg['flow_steps']}, η = "
             f"{cfg['eta']}, ν = {cfg['noise']}, lr {cfg['lr']} (× {cfg['lr_gamma']} at {cfg['lr_milestones']}), "
             f"EMA {cfg['ema_rate']}; training time here: fdrl-train "
             + (f"{ours_s / 60:.1f} min" if ours_s else "(reused)") + f", reference loop {ref_s / 60:.1f} min.", "",
             f"| {N:,} samples vs {N:,} fresh data | MMD² (RBF, width 0.1) | gap ratio (1.0 = as data) |",
             "| --- | ---: | ---: |"]
    for name, x in rows:
        lines.append(f"| {name} | {mmd2_rbf(x, data):.5f} | {gap_ratio(x, data, data2):.2f} |")
    lines += ["", "Sampling the same two trained estimators at other ν (training ν unchanged):", "",
              "| sampling ν | fdrl-train: MMD² / gap ratio | reference: MMD² / gap ratio |", "| ---: | ---: | ---: |"]
    for nu, (a, b) in sweep.items():
        lines.append(f"| {nu} | {mmd2_rbf(a, data):.5f} / {gap_ratio(a, data, data2):.2f} | "
                     f"{mmd2_rbf(b, data):.5f} / {gap_ratio(b, data, data2):.2f} |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 5, figsize=(20, 4.2), sharex=True, sharey=True)
    panels = [("fresh data", data)] + [(f"fdrl-train, ν={nu}", sweep[nu][0]) for nu in list(sweep)[:2]] + \
             [(f"reference, ν={nu}", sweep[nu][1]) for nu in list(sweep)[:2]]
    for a, (name, x) in zip(ax, panels):
        a.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
        a.set(title=name, xlim=(-1.6, 1.6), ylim=(-1.6, 1.6), aspect="equal")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"), dpi=80)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
