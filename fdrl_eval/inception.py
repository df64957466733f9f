"""FID and KID on Inception-v3 pool features, with weights that must already be on disk.

The standard FID network is pytorch-fid's port of the TensorFlow Inception
(pt_inception-2015-12-05-6726825d.pth). Nothing is downloaded: the file is looked up in
--inception-weights, $FDRL_INCEPTION_WEIGHTS, then torch's hub cache. Statistics files
are the reference's and pytorch-fid's format: an .npz with `mu` and `sigma`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fdrl_core.atomic import atomic_write_bytes
from fdrl_core.errors import one_line

from .samples import EvalError

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


def find_weights(given: str | None = None) -> Path:
    candidates = [given, os.environ.get("FDRL_INCEPTION_WEIGHTS")]
    torch_home = os.environ.get("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
    candidates.append(str(Path(torch_home) / "hub" / "checkpoints" / WEIGHTS_NAME))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise EvalError(f"FID needs the Inception weights {WEIGHTS_NAME} on disk (nothing is downloaded): "
                    f"put it at {candidates[-1]} or pass --inception-weights FILE")


def torch_home_for(weights: Path, home: str | Path) -> Path:
    """A torch hub folder under `home` that holds (a link to) `weights`. pytorch-fid loads
    its weights through torch's hub cache, so fdrl-eval points TORCH_HOME here at its
    entry (process-wide state, set once there) and nothing is downloaded."""
    cache = Path(home) / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / WEIGHTS_NAME
    if not link.exists():
        link.symlink_to(Path(weights).resolve())
    return Path(home)


class inception_home:
    """TORCH_HOME pointed, for the `with` block, at a temporary hub folder that links the weights
    found by find_weights(given): pytorch-fid loads through torch's hub cache, and nothing is
    downloaded. fdrl-eval holds it for its whole run, fdrl-train's quality watch per judged step."""

    def __init__(self, given: str | None = None):
        self.weights = find_weights(given)

    def __enter__(self):
        import tempfile
        self.tmp = tempfile.TemporaryDirectory()
        self.saved = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = str(torch_home_for(self.weights, self.tmp.name))
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = self.saved
        self.tmp.cleanup()


def inception_features(images: np.ndarray, batch: int = 50, device: str = "cpu") -> np.ndarray:
    """2048-d pool features of [N, C, H, W] images in [-1, 1] (grey images repeated to RGB),
    with the weights found through TORCH_HOME (see torch_home_for)."""
    try:
        import torch
        from pytorch_fid.inception import InceptionV3
    except ImportError:
        raise EvalError("Inception FID/KID need pytorch-fid and the torchvision it imports: pip install 'fdrl[eval]' "
                        "(without them: --features digits for 28x28 digits, --against mnist, or a toy name)") from None
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval().to(device)
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = (torch.from_numpy(images[i:i + batch]).float().to(device) + 1) / 2  # pytorch-fid takes [0, 1]
            x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
            feats.append(model(x)[0].flatten(1).cpu().numpy())
    return np.concatenate(feats)


def read_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            mu, sigma = z["mu"], z["sigma"]
    except Exception as e:  # numpy raises several kinds for a damaged or foreign file
        raise EvalError(f"{p} is not a statistics file (an .npz with mu and sigma): {one_line(e, 120)}") from None
    # What a Fréchet distance needs: real numbers, mu [d], sigma [d, d], all finite.
    if mu.dtype.kind not in "fiu" or sigma.dtype.kind not in "fiu":
        raise EvalError(f"{p}: mu and sigma must be real numbers, not {mu.dtype} and {sigma.dtype}: "
                        "remake it with fdrl-eval --save-stats")
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)) or len(mu) == 0:
        raise EvalError(f"{p}: mu {tuple(mu.shape)} and sigma {tuple(sigma.shape)} do not fit (need [d] and [d, d]): "
                        "remake it with fdrl-eval --save-stats")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise EvalError(f"{p}: mu or sigma holds NaN or inf: remake it with fdrl-eval --save-stats")
    return mu.astype(np.float64), sigma.astype(np.float64)


def write_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray) -> None:
    """As pytorch-fid's --save-stats writes them (np.savez_compressed, keys mu and sigma), so
    either tool reads the other's."""
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, mu=mu, sigma=sigma)
    atomic_write_bytes(path, buf.getvalue())
