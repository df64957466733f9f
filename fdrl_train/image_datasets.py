"""Image datasets read from local folders in their published formats (torchvision's
layout, so existing downloads work): CIFAR-10's python batches, CelebA's
img_align_celeba, LSUN church (lmdb), Cat2dog's trainA/trainB and any folder of images.

Nothing is downloaded. Folders are read lazily (a batch decodes only its own files), so
the dataset is never held in memory; CIFAR-10 (150 MB as uint8) is.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from fdrl_core.images import IMAGE_SUFFIXES, ImageReadError, image_files
from fdrl_core.images import load_image as _load_image

from .datasets import SPLIT_SEED, Dataset, DatasetError


def to_unit(u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] -> float [N, C, H, W] in [-1, 1]."""
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def load_image(path_or_bytes, size: int, crop: int | None = None, channels: int = 3) -> np.ndarray:
    """fdrl_core.images.load_image, with an unreadable file as a DatasetError."""
    try:
        return _load_image(path_or_bytes, size, crop, channels)
    except ImageReadError as e:
        raise DatasetError(str(e)) from None


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are pickles; allow only what they hold (dicts, lists, ndarrays)."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "bytes"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")


class ArrayImageDataset(Dataset):
    """Images already in memory as uint8 [N, H, W, C]."""
    value_range = (-1.0, 1.0)

    def __init__(self, name: str, train_u8: np.ndarray, test_u8: np.ndarray):
        self.name, self.train_u8, self.test_u8 = name, train_u8, test_u8
        self.sample_shape = (train_u8.shape[3], train_u8.shape[1], train_u8.shape[2])

    def sample(self, n, g):
        idx = torch.randint(0, len(self.train_u8), (n,), generator=g).numpy()
        return to_unit(self.train_u8[idx])

    def test_set(self, n=None):
        return to_unit(self.test_u8 if n is None else self.test_u8[:n])

    def batches(self, batch_size=1024):
        for i in range(0, len(self.train_u8), batch_size):
            yield to_unit(self.train_u8[i:i + batch_size])


def load_cifar10(data_dir: str | Path) -> ArrayImageDataset:
    root = Path(data_dir) / "cifar-10-batches-py"
    files = [root / f"data_batch_{i}" for i in range(1, 6)]
    missing = [f.name for f in files + [root / "test_batch"] if not f.is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 expected in {root} (python version: data_batch_1..5, test_batch; set "
                           f"data_dir to the folder holding cifar-10-batches-py); missing {', '.join(missing)}")

    def read(path):
        try:
            with open(path, "rb") as f:
                d = _NumpyOnlyUnpickler(f, encoding="bytes").load()
            data = np.asarray(d[b"data"], dtype=np.uint8)
        except (pickle.UnpicklingError, KeyError, EOFError, ValueError, TypeError) as e:
            raise DatasetError(f"{path} is not a CIFAR-10 python batch: {e}") from None
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"{path}: expected data of shape [N, 3072], got {list(data.shape)}")
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

    return ArrayImageDataset("cifar10", np.concatenate([read(f) for f in files]), read(root / "test_batch"))


class LazyImageDataset(Dataset):
    """Items (files, lmdb keys) split once into train and test, decoded per batch."""
    value_range = (-1.0, 1.0)

    def __init__(self, name: str, items: list, size: int, test_fraction: float, channels: int = 3):
        if len(items) < 2:
            raise DatasetError(f"dataset '{name}': found {len(items)} images; need at least 2")
        self.name, self.size, self.channels, self.sample_shape = name, size, channels, (channels, size, size)
        perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
        n_test = max(1, int(round(test_fraction * len(items))))
        self.test_items = [items[i] for i in perm[:n_test]]
        self.train_items = [items[i] for i in perm[n_test:]]

    def _load(self, items) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n, g):
        idx = torch.randint(0, len(self.train_items), (n,), generator=g).tolist()
        return self._load([self.train_items[i] for i in idx])

    def test_set(self, n=None):
        return self._load(self.test_items if n is None else self.test_items[:n])

    def batches(self, batch_size=256):
        for i in range(0, len(self.train_items), batch_size):
            yield self._load(self.train_items[i:i + batch_size])


class FolderImageDataset(LazyImageDataset):
    """Image files under a folder (recursively)."""

    def __init__(self, name: str, files: list[Path], size: int, crop: int | None, test_fraction: float,
                 channels: int = 3):
        super().__init__(name, files, size, test_fraction, channels)
        self.crop = crop

    def _load(self, files) -> torch.Tensor:
        return to_unit(np.stack([load_image(f, self.size, self.crop, self.channels) for f in files]))


def load_image_folder(name: str, folder: str | Path, size: int, crop: int | None, test_fraction: float,
                      expected: str, channels: int = 3) -> FolderImageDataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset '{name}': expected {expected} at {folder}, which does not exist (check data_dir)")
    files = image_files(folder)
    if not files:
        raise DatasetError(f"dataset '{name}': no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}; "
                           f"expected {expected}")
    return FolderImageDataset(name, files, size, crop, test_fraction, channels)


class LmdbImageDataset(LazyImageDataset):
    """LSUN's lmdb: keys are image ids, values encoded images (webp/jpeg)."""

    def __init__(self, name: str, path: Path, size: int, test_fraction: float):
        try:
            import lmdb
        except ImportError:
            raise DatasetError("LSUN is stored as lmdb: pip install lmdb") from None
        try:
            self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
        except lmdb.Error as e:
            raise DatasetError(f"dataset '{name}': {path} is not an lmdb database ({e})") from None
        with self.env.begin() as txn:
            keys = [k for k, _ in txn.cursor()]
        super().__init__(name, keys, size, test_fraction)

    def _load(self, keys):
        with self.env.begin() as txn:
            return to_unit(np.stack([load_image(txn.get(k), self.size) for k in keys]))


def load_image_dataset(cfg: dict) -> Dataset:
    name, data_dir = cfg["dataset"], cfg["data_dir"]
    if data_dir is None:
        raise DatasetError(f"dataset '{name}' is read from a local folder: set data_dir (--set data_dir=PATH)")
    root = Path(data_dir)
    if name == "cifar10":
        return load_cifar10(root)
    if name == "celeba":
        folder = root / "celeba" / "img_align_celeba" if (root / "celeba").is_dir() else root / "img_align_celeba"
        return load_image_folder(name, folder, 64, 140, cfg["test_fraction"], "CelebA's img_align_celeba/*.jpg")
    if name == "lsun_church":
        path = root / "church_outdoor_train_lmdb"
        if not path.exists():
            raise DatasetError(f"dataset 'lsun_church': expected the lmdb folder {path} (check data_dir)")
        return LmdbImageDataset(name, path, 128, cfg["test_fraction"])
    if name == "cat2dog":
        return load_image_folder(name, root / "trainB", 64, None, cfg["test_fraction"],
                                 "the target domain's images in trainB/ (source domain in trainA/)")
    if name == "folder":
        return load_image_folder(name, root, cfg["img_size"], None, cfg["test_fraction"], "image files")
    raise DatasetError(f"unknown image dataset '{name}'")
