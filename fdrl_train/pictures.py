"""Pictures of samples: an image grid, or a scatter plot of 2-D points, as PNG (Pillow only)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def image_grid(images: np.ndarray, ncol: int | None = None, pad: int = 2) -> Image.Image:
    """images: [N, C, H, W] floats in [-1, 1] (C = 1 or 3)."""
    n, c, h, w = images.shape
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    u8 = np.clip(np.round((images + 1) * 127.5), 0, 255).astype(np.uint8)
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = \
            u8[i].transpose(1, 2, 0)
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    scale = max(1, 256 // max(h, w) // max(1, ncol // 8))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def scatter_plot(points: np.ndarray, size: int = 512, lim: float | None = None,
                 extra: np.ndarray | None = None) -> Image.Image:
    """A square scatter plot of [N, 2] points (blue); `extra` points drawn in red."""
    pts = points if extra is None else np.concatenate([points, extra])
    finite = pts[np.isfinite(pts).all(1)]
    if lim is None:
        lim = float(np.quantile(np.abs(finite), 0.995)) * 1.1 if len(finite) else 1.0
        lim = max(lim, 1e-3)
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    d.line([(size // 2, 0), (size // 2, size)], fill=(220, 220, 220))
    d.line([(0, size // 2), (size, size // 2)], fill=(220, 220, 220))

    def draw(p, colour):
        xy = (p / lim * 0.5 + 0.5) * size
        for x, y in xy[np.isfinite(xy).all(1)]:
            d.point((float(x), float(size - y)), fill=colour)

    draw(points, (30, 80, 200))
    if extra is not None:
        draw(extra, (220, 40, 40))
    return img


def save_png(img: Image.Image, path: str | os.PathLike) -> None:
    """Write atomically, so a reader never sees half a picture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def picture_of(samples: np.ndarray) -> Image.Image:
    return scatter_plot(samples) if samples.ndim == 2 else image_grid(samples)
