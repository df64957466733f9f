"""Sample sets on disk, read and converted in one place (numpy and Pillow only).

- images as uint8 [N, H, W, C] <-> floats [N, C, H, W] in a value range (`to_uint8_hwc`,
  `from_uint8_hwc`): what fdrl-infer writes and what --init and fdrl-eval read back;
- an fdrl-infer run folder's shards (`read_run_folder`);
- an array file, .npz (key "x", else its first array) or .npy (`read_array_file`);
- a folder of image files (`read_image_folder`): grey files stay one channel, anything
  else (RGBA, palette, CMYK) becomes RGB, so a folder reads as one [N, H, W, C] array.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import FdrlError, one_line
from .images import image_files, load_image, open_image

ARRAY_SUFFIXES = (".npz", ".npy")


class SampleReadError(FdrlError, ValueError):
    """A sample file or folder that cannot be read as samples; the message says why."""


def to_uint8_hwc(x: np.ndarray, value_range) -> np.ndarray:
    lo, hi = value_range
    u = np.clip(np.round((x - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    return u.transpose(0, 2, 3, 1)


def from_uint8_hwc(u: np.ndarray, value_range) -> np.ndarray:
    lo, hi = value_range
    return (u.astype(np.float32).transpose(0, 3, 1, 2) / 255.0) * (hi - lo) + lo


def real_samples(arr: np.ndarray, where: str) -> np.ndarray:
    """float32 samples [N, ...] from an array a user gave, or a SampleReadError naming what is
    wrong: not numbers, complex (a silent cast would drop the imaginary part), none, or
    samples holding NaN or inf (which would make every later number NaN)."""
    if arr.dtype.kind == "c":
        raise SampleReadError(f"{where}: holds complex numbers ({arr.dtype}); samples are real: give x.real "
                              "if that is what you meant")
    if arr.dtype.kind not in "fiu" or arr.ndim < 1:
        raise SampleReadError(f"{where}: holds {arr.dtype} data of {arr.ndim} dimensions, not samples (numbers [N, ...])")
    if len(arr) == 0:
        raise SampleReadError(f"{where}: holds no samples")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
    if bad.any():
        raise SampleReadError(f"{where}: {int(bad.sum())} of {len(arr)} samples are not finite (NaN or inf); "
                              "nothing was used")
    return arr


def read_run_folder(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """All shards of a run folder as (ids, samples), ordered by id (npz formats only)."""
    files = sorted(Path(root, "shards").glob("*.npz"))
    if not files:
        return np.zeros(0, np.int64), np.zeros(0)
    ids, xs = [], []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                ids.append(z["ids"])
                xs.append(z["x"])
        except Exception as e:  # a damaged zip or array raises many kinds
            raise SampleReadError(f"{f} cannot be read: {one_line(e, 120)}") from None
    ids, xs = np.concatenate(ids), np.concatenate(xs)
    order = np.argsort(ids)
    return ids[order], xs[order]


def read_array_file(path: str | os.PathLike) -> np.ndarray:
    """The samples in a .npy, or in an .npz's "x" (else its only or first array)."""
    p = Path(path)
    if p.suffix not in ARRAY_SUFFIXES:
        raise SampleReadError(f"{p}: not an array file (.npz or .npy)")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        with np.load(p, allow_pickle=False) as z:
            if not z.files:
                raise SampleReadError(f"{p} holds no arrays")
            return z["x"] if "x" in z.files else z[z.files[0]]
    except SampleReadError:
        raise
    except Exception as e:  # numpy raises several kinds for a damaged or pickled file
        raise SampleReadError(f"{p} cannot be read: {one_line(e, 120)}") from None


def folder_channels(files: list[Path]) -> int:
    """1 if the first image is grey, else 3: one rule for the whole folder."""
    with open_image(files[0]) as img:
        return 1 if img.mode in ("1", "L", "I", "I;16", "F") else 3


def read_image_folder(folder: str | os.PathLike, size: int | None = None, channels: int | None = None,
                      recursive: bool = False) -> np.ndarray:
    """uint8 [N, H, W, C] from the images in `folder` (sorted by name). size: centre crop
    and resize each as training does; None keeps the files' size (all must match)."""
    files = image_files(folder, recursive=recursive)
    if not files:
        raise SampleReadError(f"{folder}: holds no images")
    channels = channels or folder_channels(files)
    imgs = [load_image(f, size, None, channels) for f in files]
    shapes = {i.shape for i in imgs}
    if len(shapes) > 1:
        raise SampleReadError(f"{folder}: the images differ in size ({', '.join(str(s[:2]) for s in sorted(shapes)[:3])}); "
                              "give images of one size")
    return np.stack(imgs)
