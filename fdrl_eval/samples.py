"""Sample sets as float arrays for fdrl-eval: an fdrl-infer run folder, an .npz/.npy or a
folder of images (the readers are fdrl_core.samples)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fdrl_core.errors import FdrlError
from fdrl_core.samples import (
    ARRAY_SUFFIXES,
    from_uint8_hwc,
    read_array_file,
    read_image_folder,
    read_run_folder,
    real_samples,
)


class EvalError(FdrlError, ValueError):
    """Bad evaluation input; the message says what was expected."""


def load_samples(path: str | Path) -> np.ndarray:
    """Images as float [N, C, H, W] in [-1, 1], or points as float [N, D]."""
    p = Path(path)
    if p.is_dir() and (p / "shards").is_dir() and any((p / "shards").glob("*.npz")):
        _, x = read_run_folder(p)
    elif p.is_dir() and (p / "png").is_dir():
        return load_samples(p / "png")
    elif p.is_dir():
        try:
            x = read_image_folder(p)
        except FdrlError as e:
            raise EvalError(f"{e} (and no fdrl-infer shards)") from None
    elif p.is_file() and p.suffix in ARRAY_SUFFIXES:
        x = read_array_file(p)
    else:
        raise EvalError(f"{p} does not exist or is not a run folder, an .npz/.npy or an image folder")
    if x.ndim == 0 or len(x) == 0:
        raise EvalError(f"{p} holds no samples")
    if x.dtype == np.uint8:
        if x.ndim != 4:
            raise EvalError(f"{p}: uint8 data must be images [N, H, W, C]")
        return from_uint8_hwc(x, (-1.0, 1.0))
    try:  # a NaN would make every measure NaN, reported as if it were a number
        return real_samples(x, str(p))
    except FdrlError as e:
        raise EvalError(str(e)) from None
