"""Which dataset a config names: the dispatch over the toys, digits, MNIST (datasets.py)
and the image datasets read from disk (image_datasets.py); both sit below this module."""
from __future__ import annotations

from pathlib import Path

from .datasets import (
    IMAGE_DATASETS,
    Dataset,
    DatasetError,
    ToyDataset,
    halves,
    load_digits_dataset,
    load_mnist_dataset,
    thicken,
)
from .image_datasets import load_image_dataset, load_image_folder


def load_source_dataset(cfg: dict, shape: tuple) -> Dataset:
    """The source domain of an unpaired translation (the prior q'); a folder is read at the
    data's `shape` (channels, size), since q' and p share the sample space."""
    if cfg["source"] == "mnist":
        return halves(load_mnist_dataset(cfg["test_fraction"]), 0)
    if cfg["source"] == "cat2dog_a":
        if cfg["data_dir"] is None:
            raise DatasetError("source 'cat2dog_a' is read from data_dir/trainA: set data_dir")
        return load_image_folder("cat2dog_a", Path(cfg["data_dir"]) / "trainA", 64, None, cfg["test_fraction"],
                                 "the source domain's images in trainA/")
    if cfg["source"] == "folder":
        if len(shape) != 3 or shape[0] not in (1, 3) or shape[1] != shape[2]:
            raise DatasetError(f"source 'folder' holds square images; the data's samples have shape {list(shape)}")
        return load_image_folder("source", cfg["source_dir"], shape[1], None, cfg["test_fraction"],
                                 "the source domain's images (source_dir)", channels=shape[0])
    raise DatasetError(f"unknown source domain '{cfg['source']}'")


def load_dataset(cfg: dict) -> Dataset:
    name = cfg["dataset"]
    if name == "mnist_thick":
        ds = halves(load_mnist_dataset(cfg["test_fraction"]), 1)
        ds.name = name
        ds.train_images, ds.test_images = thicken(ds.train_images), thicken(ds.test_images)
        return ds
    if name in ("8gaussians", "25gaussians", "swissroll", "chasm"):
        return ToyDataset(name)
    if name == "digits":
        return load_digits_dataset(cfg["test_fraction"])
    if name == "mnist":
        return load_mnist_dataset(cfg["test_fraction"])
    if name in IMAGE_DATASETS:
        return load_image_dataset(cfg)
    raise DatasetError(f"unknown dataset '{name}'")
