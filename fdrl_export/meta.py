"""The artifact metadata (fdrl_runtime.artifact) made from a checkpoint."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fdrl_runtime.artifact import FORMAT, FORMAT_VERSION

from . import __version__
from .graph import DriftModule, Estimator


def flops_per_sample(module: DriftModule, sample_shape, batch: int = 4) -> int:
    """Multiply-adds x 2 of one drift evaluation (forward + input gradient) per sample."""
    args = (torch.zeros((batch,) + tuple(sample_shape)),)
    if module.conditional:
        args += (torch.zeros(batch, dtype=torch.int64),)
    with FlopCounterMode(display=False) as counter:
        module(*args)
    return int(counter.get_total_flops() // batch)


def prior_meta(prior_state: dict | None) -> tuple[dict, dict[str, np.ndarray]]:
    """The prior as JSON-able metadata plus its arrays."""
    if prior_state is None:
        return {"kind": "input", "clamp": False}, {}
    kind = prior_state["kind"]
    meta = {"kind": kind, "clamp": bool(prior_state["clamp"])}
    arrays = {}
    if kind == "normal":
        meta["std"] = float(prior_state["std"])
    elif kind == "ddp":
        arrays = {"mean": prior_state["mean"].float().numpy(), "factor": prior_state["factor"].float().numpy()}
        if prior_state.get("diag") is not None:
            arrays["diag"] = prior_state["diag"].float().numpy()
        meta["rank"] = int(arrays["factor"].shape[1])
        meta["covariance"] = "low rank + diagonal" if "diag" in arrays else "full"
    return meta, arrays


def build_meta(est: Estimator, ckpt: dict, prior_state: dict | None, module: DriftModule,
               checkpoint_sha256: str, refine_steps: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    cfg = est.cfg
    prior, arrays = prior_meta(prior_state)
    from fdrl_train.losses import LOSSES
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created_by": f"fdrl {__version__}",
        "sample_shape": list(est.sample_shape), "value_range": ckpt.get("value_range"),
        "eta": float(cfg["eta"]), "noise": float(cfg["noise"]), "flow_steps": int(cfg["flow_steps"]),
        "refine_steps": int(cfg["refine_steps"] if refine_steps is None else refine_steps),
        "loss": cfg["loss"], "divergence": cfg["divergence"], "output": LOSSES[cfg["loss"]].output,
        "model": cfg["model"], "prior": prior,
        "graph": {"input": "x", "outputs": ["drift", "score"], "dtype": "float32", "batch": "dynamic"},
        "flops_per_sample": flops_per_sample(module, est.sample_shape),
        "source": {"checkpoint_sha256": checkpoint_sha256, "step": int(ckpt.get("step", 0)),
                   "weights": est.weights, "kind": (ckpt.get("source") or {}).get("kind", "fdrl-train")},
    }
    return meta, arrays
