"""Import of the reference implementation's checkpoints and DDP prior files.

shared/DESIGN.md §2: a reference checkpoint is a dict (step, model, optim, ema,
scheduler, config) with the reference's config keys; its DDP prior is a separate pickled
MultivariateNormal. The checkpoint does not say which prior its run used: toy runs drew
from N(0, I), image runs from the DDP file or U[-1, 1], so for images the prior must be
given (`reference_prior`).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from fdrl_core.prior import PriorSpec

from .config import DATASETS, ConfigError, validate
from .errors import CheckpointError

KAPPA_DEFAULT = {"ddp": 20, "up": 10, "normal": 0}


def _model_name(rc: dict) -> str:
    if "in_dim" in rc:
        return "mlp"
    size, kind = rc.get("img_size"), rc.get("model", "resnet")
    if size == 32:
        return "resnet32"
    if size == 64:
        return "resnet64_shallow" if kind == "resnetshallow" else "resnet64"
    if size == 128:
        return "resnet128"
    raise CheckpointError(f"reference checkpoint has img_size={size!r}, model={kind!r}: "
                          "no matching architecture (32, 64 or 128 pixels)")


def convert_reference_checkpoint(ckpt: dict, path) -> dict:
    rc = ckpt["config"]
    if not isinstance(rc, dict):
        raise CheckpointError(f"reference checkpoint {path}: 'config' is not a dict")
    model = _model_name(rc)
    toy = model == "mlp"
    dataset = rc.get("dataset")
    if dataset not in DATASETS:
        dataset = "swissroll" if toy else {32: "cifar10", 64: "celeba", 128: "lsun_church"}[rc["img_size"]]
    raw = {
        "dataset": dataset, "model": model,
        "loss": rc.get("loss_function", "LSIF"), "divergence": rc.get("f_divergence", "Pearson"),
        "eta": rc.get("eta", 1.0), "noise": rc.get("noise_factor", 0.01),
        "flow_steps": rc.get("n_flow_steps", 100), "ema_rate": rc.get("ema_rate", 0.998) if rc.get("ema", True) else 0.0,
        "spectral_norm": bool(rc.get("spectral_norm", False)), "self_attn": bool(rc.get("self_attn", False)),
        "prior": "normal" if toy else "ddp", "refine_steps": 0 if toy else KAPPA_DEFAULT["ddp"],
    }
    if toy:
        raw.update(hidden_dim=rc.get("hidden_dim", 64), n_hidden_layers=rc.get("n_hidden_layers", 3))
    for k in ("learning_rate", "train_batch_size"):
        if k in rc:
            raw["lr" if k == "learning_rate" else "batch_size"] = rc[k]
    try:
        cfg = validate(raw)
    except ConfigError as e:
        raise CheckpointError(f"reference checkpoint {path}: {e}") from None
    shape = (int(rc.get("in_dim", 2)),) if toy else (int(rc.get("n_channels", 3)), int(rc["img_size"]), int(rc["img_size"]))
    return {
        "config": cfg,  # load_checkpoint adds this project's format and version
        "step": int(ckpt.get("step", -1)) + 1,  # the reference stores the last step's index
        "model": ckpt["model"], "ema": ckpt.get("ema") or None,
        "sample_shape": list(shape), "value_range": None if toy else [-1.0, 1.0],
        # Toy runs of the reference drew x_0 ~ N(0, I); image runs need their prior given.
        "prior": PriorSpec("normal", shape, clamp=False, std=1.0).to_state() if toy else None,
        "source": {"kind": "reference", "path": str(path), "dataset": rc.get("dataset")},
    }


def load_reference_ddp_prior(path: str | Path, shape, trust_pickle: bool) -> dict:
    """A reference `<dataset>_ddp.pt` (a pickled MultivariateNormal) as a prior state.

    Unpickling runs code from the file, so it needs the caller's explicit trust."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"prior file {path} does not exist")
    if not trust_pickle:
        raise CheckpointError(f"prior file {path} is a pickle (it can run code when loaded): "
                              "pass --trust-pickle if you trust its source")
    try:
        dist = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # any unpickling failure is the file's fault
        raise CheckpointError(f"prior file {path} cannot be read: {str(e).splitlines()[0][:160]}") from None
    if not isinstance(dist, torch.distributions.MultivariateNormal):
        raise CheckpointError(f"prior file {path} holds a {type(dist).__name__}, not a MultivariateNormal")
    d = math.prod(int(s) for s in shape)
    if dist.loc.numel() != d:
        raise CheckpointError(f"prior file {path} has dimension {dist.loc.numel()}, the model takes {d}")
    return PriorSpec("ddp", shape, clamp=True, mean=dist.loc.detach().float().reshape(-1),
                     factor=dist.scale_tril.detach().float()).to_state()
