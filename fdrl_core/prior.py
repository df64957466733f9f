"""The prior q' as one spec: its stored forms and its one draw (numpy or torch alike).

Kinds (shared/DESIGN.md §1):
- "normal": N(0, std² I) (the toys);
- "up":     uniform on [-1, 1]^d;
- "ddp":    the data-dependent Gaussian N(mean, F Fᵀ + diag(diag²)); F [d, k] is a
            Cholesky factor (full covariance, no diag) or a low-rank factor plus a
            diagonal std (large images);
- "input":  unpaired translation (the config's `prior: domain`): the source domain's
            images, given at sampling time (`fdrl-infer --init`); nothing to draw.

The spec is stored in two places in two forms, both made and read only here:
- the checkpoint (`to_state` / `from_state`): kind, shape, clamp and the arrays as they
  are (torch tensors in a checkpoint; plain values, so `torch.load(weights_only=True)`);
- the artifact (`to_artifact` / `from_artifact`): JSON-able metadata (kind, clamp, std,
  rank, covariance) plus the arrays as float32 numpy.

A draw maps standard noise to a sample: `noise_width()` says which noise (normal or
uniform) and how many numbers per sample, `transform(z)` does the rest, clamp included.
Training draws z with a torch.Generator, the runtime with its counter-based noise; the
arithmetic after that is this one function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import FdrlError

KINDS = ("normal", "up", "ddp", "input")
CONFIG_KINDS = {"normal": "normal", "up": "up", "ddp": "ddp", "domain": "input"}  # config name -> stored kind


class PriorError(FdrlError, ValueError):
    """A prior whose stored form is incomplete or inconsistent; the message says what."""


def _all_finite(a) -> bool:
    if hasattr(a, "isfinite"):  # a torch tensor, on whatever device (no torch import here)
        return bool(a.isfinite().all())
    return bool(np.isfinite(np.asarray(a, dtype=np.float64)).all())


def _shape_of(a) -> tuple[int, ...]:
    return tuple(int(s) for s in a.shape)


@dataclass(frozen=True)
class PriorSpec:
    kind: str
    shape: tuple[int, ...]
    clamp: bool
    std: float = 1.0
    mean: Any = None
    factor: Any = None
    diag: Any = None
    source: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.kind not in KINDS:
            raise PriorError(f"unknown prior kind '{self.kind}'; known: {', '.join(KINDS)}")
        if not self.shape or any(s <= 0 for s in self.shape):
            raise PriorError(f"prior sample shape {self.shape}: needs positive sizes")
        if self.kind == "normal" and not (math.isfinite(self.std) and self.std > 0):
            raise PriorError(f"normal prior std {self.std}: must be a positive number")
        if self.kind == "ddp":
            d = self.dim
            if self.mean is None or self.factor is None:
                raise PriorError("the DDP prior's mean or factor is missing; export (or train) again")
            if _shape_of(self.mean) != (d,) or len(self.factor.shape) != 2 or int(self.factor.shape[0]) != d:
                raise PriorError(f"the DDP prior's arrays (mean {_shape_of(self.mean)}, factor "
                                 f"{_shape_of(self.factor)}) do not fit samples of shape {self.shape}")
            if self.diag is not None and _shape_of(self.diag) != (d,):
                raise PriorError(f"the DDP prior's diagonal has shape {_shape_of(self.diag)}, expected ({d},)")
            if self.diag is None and int(self.factor.shape[1]) != d:
                raise PriorError(f"the DDP prior's factor {_shape_of(self.factor)} is low rank but has no diagonal")
            for name in ("mean", "factor", "diag"):
                a = getattr(self, name)
                if a is not None and not _all_finite(a):
                    raise PriorError(f"the DDP prior's {name} holds NaN or inf (a damaged file, or a fit to "
                                     "data that held them); fit or export it again")

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def drawable(self) -> bool:
        return self.kind != "input"

    # --- the draw ------------------------------------------------------------------------

    def noise_width(self) -> tuple[str, int]:
        """("normal" or "uniform", numbers per sample) that `transform` takes."""
        if self.kind == "up":
            return "uniform", self.dim
        if self.kind == "ddp":
            k = int(self.factor.shape[1])
            return "normal", k + (0 if self.diag is None else self.dim)
        if self.kind == "normal":
            return "normal", self.dim
        raise PriorError("this prior has no draw (image-to-image translation): give the starting images (--init)")

    def transform(self, z, as_array: Callable = lambda a: a):
        """Standard draws z [B, width] (N(0, 1) or U[0, 1), per noise_width) -> samples
        [B, *shape]; `as_array` brings the stored arrays into z's namespace and device."""
        b = z.shape[0]
        if self.kind == "normal":
            x = self.std * z
        elif self.kind == "up":
            x = 2.0 * z - 1.0
        elif self.kind == "ddp":
            k = int(self.factor.shape[1])
            x = as_array(self.mean)[None] + z[:, :k] @ as_array(self.factor).T
            if self.diag is not None:
                x = x + z[:, k:] * as_array(self.diag)[None]
        else:
            self.noise_width()  # raises: nothing to draw
        x = x.reshape((b,) + self.shape)
        return x.clip(-1.0, 1.0) if self.clamp else x

    # --- the checkpoint's form -----------------------------------------------------------

    def to_state(self) -> dict:
        state = {"kind": self.kind, "shape": list(self.shape), "clamp": bool(self.clamp)}
        if self.kind == "normal":
            state["std"] = float(self.std)
        elif self.kind == "ddp":
            state.update(mean=self.mean, factor=self.factor)
            if self.diag is not None:
                state["diag"] = self.diag
        elif self.kind == "input" and self.source is not None:
            state["source"] = self.source
        return state

    @classmethod
    def from_state(cls, state: dict, where: str = "the checkpoint") -> "PriorSpec":
        try:
            kind, shape, clamp = state["kind"], tuple(int(s) for s in state["shape"]), bool(state["clamp"])
            std = float(state.get("std", 1.0))
        except (KeyError, TypeError, ValueError):
            raise PriorError(f"{where}: the prior record lacks kind, shape or clamp, or holds them as the "
                             "wrong types") from None
        if not isinstance(kind, str):
            raise PriorError(f"{where}: the prior's kind is not a name")
        return cls(kind, shape, clamp, std=std, mean=state.get("mean"),
                   factor=state.get("factor"), diag=state.get("diag"), source=state.get("source"))

    # --- the artifact's form -------------------------------------------------------------

    def to_artifact(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able metadata, float32 arrays); the translation prior records clamp False
        (its starting images are given, not drawn)."""
        if self.kind == "input":
            return {"kind": "input", "clamp": False}, {}
        meta: dict = {"kind": self.kind, "clamp": bool(self.clamp)}
        arrays: dict[str, np.ndarray] = {}
        if self.kind == "normal":
            meta["std"] = float(self.std)
        elif self.kind == "ddp":
            arrays = {"mean": _float32(self.mean), "factor": _float32(self.factor)}
            if self.diag is not None:
                arrays["diag"] = _float32(self.diag)
            meta["rank"] = int(arrays["factor"].shape[1])
            meta["covariance"] = "low rank + diagonal" if self.diag is not None else "full"
        return meta, arrays

    @classmethod
    def from_artifact(cls, meta: dict, arrays: dict, shape, where: str = "the artifact") -> "PriorSpec":
        if not isinstance(meta, dict) or "kind" not in meta:
            raise PriorError(f"{where}: the prior's metadata lacks its kind; export again")
        kind = meta["kind"]
        try:
            return cls(kind, tuple(shape), bool(meta.get("clamp", False)), std=float(meta.get("std", 1.0)),
                       mean=arrays.get("mean"), factor=arrays.get("factor"), diag=arrays.get("diag"))
        except PriorError as e:
            raise PriorError(f"{where}: {e}") from None
        except (TypeError, ValueError):
            raise PriorError(f"{where}: the prior's metadata is malformed; export again") from None


def _float32(a) -> np.ndarray:
    """A numpy float32 copy of an array (numpy, or a CPU torch tensor through __array__)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().float()
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))
