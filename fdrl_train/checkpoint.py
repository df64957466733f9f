"""Checkpoints: one file of plain tensors and values, written atomically.

Loads with `torch.load(weights_only=True)`. `load_checkpoint` also accepts the reference
implementation's checkpoints (shared/DESIGN.md §2) and converts them (see reference.py).
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from fdrl_core.atomic import atomic_path

from .errors import CheckpointError
from .reference import convert_reference_checkpoint

FORMAT = "fdrl-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("config", "step", "model", "sample_shape", "prior")
DIGESTED = ("model", "ema", "prior")  # what tensor_sha256 covers (a checkpoint without it is not checked)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary name in the same folder, fsync, then rename over `path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def checkpoint_dict(cfg: dict, model_state: dict, ema_state: dict | None, prior_state: dict | None,
                    sample_shape, value_range, step: int, **extra) -> dict:
    """A checkpoint in this project's format; `extra` adds optim, scheduler, rng, source."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg, "step": int(step),
            "model": model_state, "ema": ema_state, "prior": prior_state, "sample_shape": list(sample_shape),
            "value_range": None if value_range is None else list(value_range), **extra}


def tensor_digest(ckpt: dict) -> str:
    """SHA-256 over every tensor of the weights and the prior, in key order: a flipped bit
    in a saved tensor (which torch.load does not notice) changes it."""
    import hashlib
    h = hashlib.sha256()

    def feed(prefix, value):
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{prefix}:{t.dtype}:{list(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                feed(f"{prefix}.{k}", value[k])

    for key in DIGESTED:
        feed(key, ckpt.get(key))
    return h.hexdigest()


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """Atomically, with the tensors' digest, which load_checkpoint verifies."""
    atomic_torch_save({**ckpt, "tensor_sha256": tensor_digest(ckpt)}, path)


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint"):
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder; give the .pt file (e.g. {path / 'last.pt'})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in reason or isinstance(e, pickle.UnpicklingError):
            reason = "it holds pickled objects, not plain tensors"
        raise CheckpointError(f"{what} {path} cannot be read (truncated, corrupt or not a torch file): "
                              f"{reason[:160]}") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """This project's checkpoint as a dict, or a reference checkpoint converted to one."""
    ckpt = read_torch_file(path)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        version = ckpt.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {path} has format version {version!r}; "
                                  f"this fdrl reads up to {FORMAT_VERSION}: upgrade fdrl")
        missing = [k for k in REQUIRED if k not in ckpt]
        if missing or not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
            raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing) or 'a config or model mapping'} "
                                  "(damaged or written by another tool): use another checkpoint")
        if "tensor_sha256" in ckpt and ckpt["tensor_sha256"] != tensor_digest(ckpt):
            raise CheckpointError(f"checkpoint {path} is corrupt: its tensors do not match the digest saved with "
                                  "them (a damaged disk or copy); use an intact copy or an earlier checkpoint")
        return ckpt
    if isinstance(ckpt, dict) and {"model", "config"} <= set(ckpt):
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **convert_reference_checkpoint(ckpt, path)}
    raise CheckpointError(f"{path} is a torch file but not an FDRL checkpoint "
                          "(expected this project's format or a reference dict with 'model' and 'config')")
