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
from fdrl_core.errors import FdrlError

FORMAT = "fdrl-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(FdrlError, ValueError):
    """A checkpoint that is missing, unreadable or not a checkpoint; the message says which."""


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
        if ckpt.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {path} has format version {ckpt['format_version']}; "
                                  f"this fdrl reads up to {FORMAT_VERSION}: upgrade fdrl")
        return ckpt
    if isinstance(ckpt, dict) and {"model", "config"} <= set(ckpt):
        from .reference import convert_reference_checkpoint
        return convert_reference_checkpoint(ckpt, path)
    raise CheckpointError(f"{path} is a torch file but not an FDRL checkpoint "
                          "(expected this project's format or a reference dict with 'model' and 'config')")
