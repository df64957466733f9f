"""Reading image files as training reads them: centre crop, resize, uint8 [H, W, C].

One definition for the datasets (fdrl_train), `fdrl-infer --init FOLDER` and
`fdrl-eval FOLDER`, so that an image given to the runtime is prepared exactly as the
model's training data was. numpy and Pillow only.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .errors import FdrlError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class ImageReadError(FdrlError, ValueError):
    """A file that should be an image cannot be decoded; the message names it."""


def load_image(path_or_bytes, size: int | None, crop: int | None = None, channels: int = 3) -> np.ndarray:
    """uint8 [size, size, channels] (RGB or grey): centre crop (`crop`, or the largest
    square), then a bicubic resize to `size`. size=None keeps the file's own size, uncropped."""
    from PIL import Image, UnidentifiedImageError
    name = "<bytes>" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    try:
        img = Image.open(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
        img = img.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageReadError(f"{name} is not a readable image ({str(e).splitlines()[0][:100]})") from None
    if size is not None:
        w, h = img.size
        c = min(crop or min(w, h), w, h)
        left, top = (w - c) // 2, (h - c) // 2
        img = img.crop((left, top, left + c, top + c))
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
    a = np.asarray(img, dtype=np.uint8)
    return a if a.ndim == 3 else a[..., None]


def image_files(folder: str | Path, recursive: bool = True) -> list[Path]:
    """The image files under `folder`, sorted by path (so their order is reproducible)."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
