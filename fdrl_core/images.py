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


# The most pixels one image may claim: 8192 x 8192. A header is read before any pixel, so a
# 100-byte file that claims 40000 x 40000 (1.6 GB decoded) is refused before it is decoded.
MAX_PIXELS = 8192 * 8192


def open_image(path_or_bytes):
    """A Pillow image, its header read and its size checked, pixels not yet decoded; every
    reader of image files goes through here. Unreadable, truncated or oversized files are an
    ImageReadError naming the file."""
    from PIL import Image, UnidentifiedImageError
    name = "<bytes>" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    try:
        img = Image.open(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
    except Image.DecompressionBombError:  # Pillow's own limit, above ours: same message
        raise ImageReadError(f"{name} claims more than {MAX_PIXELS} pixels (at most 8192 x 8192); "
                             "resize it or leave it out") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageReadError(f"{name} is not a readable image ({str(e).splitlines()[0][:100]})") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise ImageReadError(f"{name} claims {w} x {h} pixels, more than 8192 x 8192; resize it or leave it out")
    return img


def load_image(path_or_bytes, size: int | None, crop: int | None = None, channels: int = 3) -> np.ndarray:
    """uint8 [size, size, channels] (RGB or grey): centre crop (`crop`, or the largest
    square), then a bicubic resize to `size`. size=None keeps the file's own size, uncropped."""
    from PIL import Image
    name = "<bytes>" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    img = open_image(path_or_bytes)
    try:
        img = img.convert("RGB" if channels == 3 else "L")
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # truncated or damaged pixel data
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
