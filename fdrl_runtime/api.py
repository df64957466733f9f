"""The runtime's Python API: load an artifact once, draw samples as numpy arrays.

    import fdrl_runtime
    sampler = fdrl_runtime.load("model.onnx")                 # backend from the file type
    x = sampler.sample(1000, seed=0)                           # [1000, *shape] float32, as fdrl-infer
    for ids, xb in sampler.iter_batches(50_000, seed=0, batch=256):
        ...                                                    # streaming: one batch in memory at a time
    sampler.meta.eta, sampler.meta.nu, sampler.meta.flow_steps # the artifact's contract (ArtifactMeta)

Sample i depends only on (artifact, seed, i, steps, class, init): the same numbers at any
batch size, in any order, as fdrl-infer writes for id i (noise.py). fdrl-infer is a shell
over this module (cli.py adds run folders, shards and pictures).
"""
from __future__ import annotations

import math

import os
from typing import Iterator, Sequence

import numpy as np

from fdrl_core.errors import FdrlError, UsageError
from fdrl_core.launch import check_count, check_device, check_threads
from fdrl_core.samples import (
    ARRAY_SUFFIXES,
    from_uint8_hwc,
    read_array_file,
    read_image_folder,
    real_samples,
)

from .artifact import Artifact, load_artifact
from .backends import backend_class, resolve_backend
from .loop import sample_batch


class NonFiniteSamples(FdrlError, RuntimeError):
    """The flow produced NaN or inf; those samples are not returned or written."""


def default_batch(artifact: Artifact, device: str) -> int:
    """CPU: 1024 points, 64 images (benchmarks/RESULTS.md). GPU: 1024 up to CIFAR's size
    (on the H200 1024 beat 256 by 10% in bf16), 256 above it, whose activations at 1024
    would not fit a smaller GPU."""
    if device.startswith("cuda"):
        return 1024 if math.prod(artifact.sample_shape) <= 3 * 32 * 32 else 256
    return 64 if artifact.is_image else 1024


def resolve_classes(artifact: Artifact, classes) -> list[int] | None:
    """None, one class, or a list of classes, checked against a conditional artifact."""
    cond = artifact.meta.conditional
    if cond is None:
        if classes is not None:
            raise UsageError("this artifact is not class-conditional: export it with fdrl-export --classifier CLS.pt")
        return None
    n = int(cond["n_classes"])
    if classes is None:
        return list(range(n))
    classes = [int(classes)] if isinstance(classes, (int, np.integer)) else [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < n]
    if bad or not classes:
        raise UsageError(f"class {bad[0] if bad else classes!r} is out of range: this model's classifier has "
                         f"classes 0-{n - 1}")
    return classes


def labels_for(ids: np.ndarray, classes: list[int]) -> np.ndarray:
    """Balanced classes: sample i asks for classes[i mod len(classes)], whatever the batching."""
    return np.asarray(classes, dtype=np.int64)[ids % len(classes)]


def read_init(init, artifact: Artifact, what: str = "init") -> np.ndarray:
    """Starting samples as float32 [N, *shape]: an array (floats in the value range, or
    uint8 images [N, H, W, C]), a .npz/.npy file or a folder of images (prepared as
    training prepares a folder dataset: the largest centred square, resized)."""
    shape = artifact.sample_shape
    if isinstance(init, (str, os.PathLike)):
        from pathlib import Path
        p = Path(init)
        try:
            if p.is_dir():
                if not artifact.is_image:
                    raise UsageError(f"this artifact takes points of shape {shape}, not images: give a .npz/.npy")
                arr = read_image_folder(p, size=shape[1], channels=shape[0])
            elif p.is_file() and p.suffix in ARRAY_SUFFIXES:
                arr = read_array_file(p)
            else:
                raise UsageError("give a .npz/.npy file or a folder of images")
        except (FdrlError, OSError) as e:
            raise UsageError(f"{what} {init}: {e}") from None
        where = f"{what} {init}"
    else:
        arr, where = np.asarray(init), what
    if arr.dtype == np.uint8:
        if not artifact.is_image or arr.ndim != 4:
            raise UsageError(f"{where}: uint8 data must be images [N, H, W, C]")
        arr = from_uint8_hwc(arr, artifact.value_range or (-1.0, 1.0))
    try:
        arr = real_samples(arr, where)
    except FdrlError as e:
        raise UsageError(str(e)) from None
    if tuple(arr.shape[1:]) != shape:
        raise UsageError(f"{where}: samples have shape {tuple(arr.shape[1:])}, the model takes {shape}")
    return arr


class Sampler:
    """An artifact loaded on a backend; close() (or `with`) frees the backend's memory."""

    def __init__(self, artifact: Artifact, backend: str | None = None, device: str = "cpu",
                 precision: str = "fp32", threads: int = 0, trust_pickle: bool = False, compile: bool = True):
        check_device(device)
        check_threads(threads, "threads")
        self.artifact = artifact
        self.device, self.precision = device, precision
        name = resolve_backend(backend or "auto", artifact.kind)
        extra = {"compile": compile} if name == "torch" else {}  # inductor: the torch backend's CPU path
        self.backend = backend_class(name)(artifact, device=device, precision=precision, threads=threads,
                                           trust_pickle=trust_pickle, **extra)

    @property
    def meta(self):
        """The artifact's contract: eta, nu, flow_steps (K), refine_steps (kappa), sample_shape, prior, ..."""
        return self.artifact.meta

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def sample(self, n: int | None = None, seed: int = 0, steps: int | None = None, batch: int | None = None,
               classes=None, init=None, ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """n samples (ids 0 .. n-1, or the given `ids`) as float32 [n, *shape], in the artifact's value range."""
        parts = [x for _, x in self.iter_batches(n, seed, batch, steps, classes, init, ids)]
        return np.concatenate(parts) if parts else np.zeros((0,) + self.artifact.sample_shape, np.float32)

    def iter_batches(self, n: int | None = None, seed: int = 0, batch: int | None = None, steps: int | None = None,
                     classes=None, init=None, ids: Sequence[int] | np.ndarray | None = None
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, samples) batch by batch for ids 0 .. n-1 (or the given `ids`); with
        `init`, sample i starts from init[i]."""
        art = self.artifact
        if (n is None) == (ids is None):
            raise UsageError("give n (samples 0 .. n-1) or ids, one of the two")
        check_count(seed, "seed", minimum=None)
        if ids is None:
            n = check_count(n, "n", minimum=0)  # ids are made batch by batch: n may be any size
        else:
            try:
                ids = np.asarray(ids)
            except (ValueError, TypeError):  # ragged or otherwise not an array: refused below
                ids = np.asarray([None])
            if ids.ndim != 1 or not (ids.dtype.kind in "iu" or len(ids) == 0) or (len(ids) and ids.min() < 0):
                raise UsageError(f"sample ids must be a list of integers >= 0, got {ids.dtype} of shape {ids.shape}")
            ids = ids.astype(np.int64)
        batch = check_count(default_batch(art, self.device) if batch is None else batch, "batch")
        steps = check_count(art.default_steps if steps is None else steps, "steps")
        class_list = resolve_classes(art, classes)
        if init is None:
            init_x = None
        elif isinstance(init, np.ndarray) and init.dtype == np.float32 and tuple(init.shape[1:]) == art.sample_shape:
            init_x = init  # as read_init leaves it (fdrl-infer reads once, then asks shard by shard)
        else:
            init_x = read_init(init, art)
        if init_x is None and not art.prior.drawable:
            raise UsageError("this artifact has no prior (it translates given images): give init")
        count = n if ids is None else len(ids)
        top = (n - 1) if ids is None else (int(ids.max()) if len(ids) else -1)
        if init_x is not None and top >= len(init_x):
            raise UsageError(f"{count} samples asked for, but init holds {len(init_x)}")
        for start in range(0, count, batch):
            chunk = (np.arange(start, min(start + batch, n), dtype=np.int64) if ids is None
                     else ids[start:start + batch])
            x = sample_batch(self.backend, art, chunk, seed, steps, None if init_x is None else init_x[chunk],
                             None if class_list is None else labels_for(chunk, class_list))
            bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
            if bad.any():  # NaN would be written as black pixels or NaN points, as if samples
                raise NonFiniteSamples(
                    f"{int(bad.sum())} of {len(x)} samples (ids {int(chunk[0])}-{int(chunk[-1])}) are not finite; "
                    "nothing was written for them: the drift diverges (an export with --no-check, eta too large, "
                    "or phi too large for a conditional model)")
            yield chunk, x

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(path: str | os.PathLike, backend: str | None = None, device: str = "cpu", precision: str = "fp32",
         threads: int = 0, trust_pickle: bool = False, compile: bool = True) -> Sampler:
    """A Sampler for the artifact at `path` (.onnx, .plan/.engine, .pt2, or a bundled name such as
    "digits": fdrl-infer --list). backend None:
    the one for the file type; trust_pickle: allow a .pt2 that holds pickled data; compile:
    the torch backend compiles its blocks of steps on a CPU (tens of seconds, once)."""
    from .bundled import resolve_engine
    return Sampler(load_artifact(resolve_engine(path)), backend, device, precision, threads, trust_pickle, compile)
