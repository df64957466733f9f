"""Checkpoints: one file of plain tensors and values, written atomically.

Loads with `torch.load(weights_only=True)`. `load_checkpoint` also accepts the reference
implementation's checkpoints (shared/DESIGN.md §2) and converts them (see reference.py).
"""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import torch

from fdrl_core.atomic import atomic_path
from fdrl_core.errors import FdrlError, not_a_file, one_line, short

from .errors import CheckpointError
from .reference import convert_reference_checkpoint

FORMAT = "fdrl-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("config", "step", "model", "sample_shape", "prior")
DIGESTED = ("model", "ema", "prior")  # what tensor_sha256 covers (a checkpoint without it is not checked)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary name in the same folder, fsync, then rename over `path`."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's zip writer reports a full disk as "[enforce fail ...] file write failed"
            raise CheckpointError(f"cannot write {path}: {one_line(e, 120)} (is the disk full?); "
                                  "the previous file, if any, is intact") from None


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
    if not path.is_file():  # a pipe would block torch.load forever
        raise CheckpointError(f"{what} {path} {not_a_file(path)}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (random bytes make the unpickler fail in many ways: IndexError, KeyError, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in reason or isinstance(e, pickle.UnpicklingError):
            reason = "it holds pickled objects, not plain tensors"
        raise CheckpointError(f"{what} {path} cannot be read (truncated, corrupt or not a torch file): "
                              f"{reason[:160]}") from None


# The config keys that say what a run is: a checkpoint must record them (the rest, added in
# later versions, take their defaults).
IDENTITY_KEYS = ("dataset", "model", "loss", "divergence", "prior", "flow_steps", "eta", "noise")


def _state_dict_problem(state, what: str) -> str | None:
    if not isinstance(state, dict) or not state:
        return f"its {what} is not a mapping of tensors"
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            return f"its {what} holds {short(k)} -> {type(v).__name__}, not a named tensor"
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return f"its {what} tensor {short(k)} holds NaN or inf (a diverged or damaged run)"
    return None


def check_checkpoint(ckpt: dict, path) -> dict:
    """The checkpoint contract, checked once where a checkpoint is loaded (resume, export,
    bench, the reference importer): types, ranges and required keys of every part a reader
    uses, the config validated (defaults for keys added since). Returns the checkpoint with
    its config resolved; a problem is one CheckpointError naming the part."""
    from fdrl_core.prior import PriorSpec

    from .config import ConfigError, validate

    def bad(problem: str):
        return CheckpointError(f"checkpoint {path}: {problem} (damaged or written by another tool); "
                               "use another checkpoint")
    step = ckpt.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise bad(f"its step is {short(step)}, not an integer >= 0")
    cfg = ckpt.get("config")
    if not isinstance(cfg, dict):
        raise bad("its config is not a mapping")
    missing = [k for k in IDENTITY_KEYS if k not in cfg]
    if missing:
        raise bad(f"its config lacks '{missing[0]}'")
    try:
        cfg = validate(cfg)
    except ConfigError as e:
        raise bad(f"its config is invalid: {e}") from None
    shape = ckpt.get("sample_shape")
    if (not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 4
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise bad(f"its sample_shape is {short(shape)}, not 1 to 4 positive sizes")
    vr = ckpt.get("value_range")
    if vr is not None and not (isinstance(vr, (list, tuple)) and len(vr) == 2
                               and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                       for v in vr) and vr[0] < vr[1]):
        raise bad(f"its value_range is {short(vr)}, not [low, high]")
    for what in ("model", "ema"):
        if what == "ema" and ckpt.get("ema") is None:
            continue
        problem = _state_dict_problem(ckpt.get(what), what + " weights")
        if problem:
            raise bad(problem)
    if ckpt.get("ema") is not None:
        model, ema = ckpt["model"], ckpt["ema"]
        odd = [k for k in model if k not in ema or ema[k].shape != model[k].shape]
        if odd or set(ema) - set(model):
            raise bad(f"its EMA weights do not match its weights ({short((odd or sorted(set(ema) - set(model)))[0])})")
    if ckpt.get("prior") is not None:
        if not isinstance(ckpt["prior"], dict):
            raise bad("its prior is not a mapping")
        try:
            spec = PriorSpec.from_state(ckpt["prior"], f"checkpoint {path}")
        except FdrlError as e:
            raise bad(f"its prior is damaged: {e}") from None
        if spec.shape != tuple(shape):
            raise bad(f"its prior draws shape {spec.shape}, its samples are {tuple(shape)}")
    optim = ckpt.get("optim")
    if optim is not None and not (isinstance(optim, dict) and isinstance(optim.get("state"), dict)
                                  and isinstance(optim.get("param_groups"), list)
                                  and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                          for g in optim["param_groups"])):
        raise bad("its optimizer state is not Adam's state_dict (state, param_groups)")
    rng = ckpt.get("rng")
    if rng is not None:
        if not isinstance(rng, dict) or not all(isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1
                                                for v in rng.values()):
            raise bad("its random-generator state is not a set of byte tensors")
    return {**ckpt, "config": cfg}


def load_checkpoint(path: str | os.PathLike) -> dict:
    """This project's checkpoint as a dict, or a reference checkpoint converted to one;
    either way checked against the contract (check_checkpoint)."""
    ckpt = _load_checkpoint(path)
    return check_checkpoint(ckpt, path)


def _load_checkpoint(path: str | os.PathLike) -> dict:
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
