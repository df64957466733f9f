"""Sample sets as arrays: an fdrl-infer run folder, an .npz, or a folder of images."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fdrl_runtime.outputs import from_uint8_hwc, read_samples


class EvalError(ValueError):
    """Bad evaluation input; the message says what was expected."""


def load_samples(path: str | Path) -> np.ndarray:
    """Images as float [N, C, H, W] in [-1, 1], or points as float [N, D]."""
    p = Path(path)
    if p.is_dir() and (p / "shards").is_dir() and any((p / "shards").glob("*.npz")):
        _, x = read_samples(p)
    elif p.is_dir() and (p / "png").is_dir():
        return load_samples(p / "png")
    elif p.is_dir():
        from PIL import Image
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise EvalError(f"{p}: no fdrl-infer shards and no .png/.jpg images")
        imgs = [np.asarray(Image.open(f)) for f in files]
        x = np.stack([i[..., None] if i.ndim == 2 else i for i in imgs])
    elif p.is_file() and p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            x = z["x"] if "x" in z.files else z[z.files[0]]
    else:
        raise EvalError(f"{p} does not exist or is not a run folder, an .npz or an image folder")
    if x.dtype == np.uint8:
        if x.ndim != 4:
            raise EvalError(f"{p}: uint8 data must be images [N, H, W, C]")
        return from_uint8_hwc(x, (-1.0, 1.0))
    if not np.issubdtype(x.dtype, np.number):
        raise EvalError(f"{p}: samples must be numbers, not {x.dtype}")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1) if x.ndim else np.array([True])
    if bad.any():  # a NaN would make every measure NaN, reported as if it were a number
        raise EvalError(f"{p}: {int(bad.sum())} of {len(bad)} samples are not finite (NaN or inf); nothing was measured")
    return x
