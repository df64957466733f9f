"""Pictures of samples: an image grid, or a scatter plot of 2-D points, as PNG (numpy and Pillow only)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_path


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


def _ticks(lim: float) -> list[float]:
    """Round tick values covering [-lim, lim]: steps of 1, 2 or 5 times a power of ten."""
    raw = lim / 2
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    k = int(lim // step)
    return [i * step for i in range(-k, k + 1)]


def scatter_plot(points: np.ndarray, size: int = 512, lim: float | None = None,
                 extra: np.ndarray | None = None, alpha: float = 0.25) -> Image.Image:
    """A square scatter plot of all [N, 2] points (blue; `extra` in red) with axes and ticks.

    Each point adds `alpha` of opacity where it falls, so where thousands overlap the plot
    shows their density instead of one saturated blob; non-finite points are left out."""
    pts = points if extra is None else np.concatenate([points, extra])
    finite = pts[np.isfinite(pts).all(1)]
    if lim is None:
        lim = float(np.quantile(np.abs(finite), 0.995)) * 1.1 if len(finite) else 1.0
        lim = max(lim, 1e-3)
    margin = 36
    plot = size - 2 * margin
    rgb = np.full((plot, plot, 3), 255.0)

    def layer(p, colour):
        p = p[np.isfinite(p).all(1)]
        cols = np.floor((p[:, 0] / lim * 0.5 + 0.5) * plot).astype(np.int64)
        rows = np.floor((0.5 - p[:, 1] / lim * 0.5) * plot).astype(np.int64)
        keep = (cols >= 0) & (cols < plot) & (rows >= 0) & (rows < plot)
        counts = np.zeros((plot, plot))
        np.add.at(counts, (rows[keep], cols[keep]), 1.0)
        a = (1 - (1 - alpha) ** counts)[..., None]
        return rgb * (1 - a) + np.asarray(colour, float) * a

    rgb = layer(points, (30, 80, 200))
    if extra is not None:
        rgb = layer(extra, (220, 40, 40))
    img = Image.new("RGB", (size, size), "white")
    img.paste(Image.fromarray(np.round(rgb).astype(np.uint8)), (margin, margin))
    d = ImageDraw.Draw(img)
    d.rectangle([margin - 1, margin - 1, margin + plot, margin + plot], outline=(90, 90, 90))
    for t in _ticks(lim):
        u = margin + int(round((t / lim * 0.5 + 0.5) * plot))  # x position; y is mirrored
        v = margin + int(round((0.5 - t / lim * 0.5) * plot))
        label = f"{t:g}"
        d.line([(u, margin + plot), (u, margin + plot + 4)], fill=(90, 90, 90))
        d.text((u - 3 * len(label), margin + plot + 6), label, fill=(60, 60, 60))
        d.line([(margin - 5, v), (margin - 1, v)], fill=(90, 90, 90))
        d.text((margin - 8 - 6 * len(label), v - 5), label, fill=(60, 60, 60))
    d.text((margin, 8), f"{len(finite):,} points, range [{-lim:.3g}, {lim:.3g}]", fill=(60, 60, 60))
    return img


def save_png(img: Image.Image, path: str | os.PathLike) -> None:
    """Write atomically, so a reader never sees half a picture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def picture_of(samples: np.ndarray, value_range=(-1.0, 1.0)) -> Image.Image:
    """The picture of a sample set: a scatter of all points, or a grid of the first 64 images
    (values in `value_range`). Training's progress pictures and fdrl-infer --grid."""
    if samples.ndim == 2:
        return scatter_plot(samples)
    lo, hi = value_range
    return image_grid((np.asarray(samples[:64], np.float64) - lo) / (hi - lo) * 2 - 1)
