"""The artifact metadata (fdrl_runtime.artifact) made from a checkpoint."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fdrl_core.contract import ArtifactMeta
from fdrl_core.prior import PriorSpec

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


def prior_meta(prior_state: dict | None, sample_shape) -> tuple[dict, dict[str, np.ndarray]]:
    """The prior as JSON-able metadata plus its arrays (None: translation, starts from --init)."""
    if prior_state is None:
        return PriorSpec("input", sample_shape, clamp=False).to_artifact()
    return PriorSpec.from_state(prior_state).to_artifact()


def build_meta(est: Estimator, ckpt: dict, prior_state: dict | None, module: DriftModule,
               checkpoint_sha256: str, refine_steps: int | None = None) -> tuple[ArtifactMeta, dict[str, np.ndarray]]:
    cfg = est.cfg
    prior, arrays = prior_meta(prior_state, est.sample_shape)
    from fdrl_train.losses import LOSSES
    meta = {
        "created_by": f"fdrl {__version__}",
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
    # validated here too: a checkpoint's bad value (eta -1) stops the export, named
    return ArtifactMeta(**meta).replace(), arrays
