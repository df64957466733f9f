"""Local image datasets in their published formats, and the DDP prior at scale."""
import pickle

import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli
from PIL import Image

from fdrl_train.config import validate
from fdrl_train.data import load_dataset
from fdrl_train.datasets import DatasetError
from fdrl_train.priors import GaussianPrior


def write_cifar(root, n_per_batch=20):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
                         b"batch_label": name.encode()}, f)
    return data  # the test batch


def test_cifar10_python_batches(tmp_path):
    test = write_cifar(tmp_path)
    ds = load_dataset(validate({"dataset": "cifar10", "data_dir": str(tmp_path), "model": "resnet32"}))
    assert ds.sample_shape == (3, 32, 32)
    x = ds.test_set()
    assert x.shape == (20, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    # Channel-major rows as the format defines: row 0, red channel, pixel (0, 0).
    assert x[0, 0, 0, 0].item() == pytest.approx(test[0, 0] / 127.5 - 1)
    assert x[0, 2, 31, 31].item() == pytest.approx(test[0, 3071] / 127.5 - 1)
    assert sum(b.shape[0] for b in ds.batches(33)) == 100


def test_cifar10_refuses_a_pickle_with_code(tmp_path):
    write_cifar(tmp_path)
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DatasetError, match="not allowed"):
        load_dataset(validate({"dataset": "cifar10", "data_dir": str(tmp_path), "model": "resnet32"}))


def test_celeba_crop_and_resize(tmp_path):
    d = tmp_path / "celeba" / "img_align_celeba"
    d.mkdir(parents=True)
    for i in range(6):
        a = np.zeros((218, 178, 3), np.uint8)
        a[109 - 70:109 + 70, 89 - 70:89 + 70] = 200  # the centre 140 x 140 crop is bright
        a[0:10] = 255
        Image.fromarray(a).save(d / f"{i:06d}.jpg", quality=95)
    ds = load_dataset(validate({"dataset": "celeba", "data_dir": str(tmp_path), "model": "resnet64",
                                "test_fraction": 0.34}))
    x = ds.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 64, 64)
    assert abs(x.mean().item() - (200 / 127.5 - 1)) < 0.05  # only the crop survives
    assert len(ds.test_set()) == 2


def test_any_image_folder_and_missing_folders(tmp_path):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((40, 50, 3), i * 40, np.uint8)).save(tmp_path / "imgs" / "sub" / f"{i}.png")
    ds = load_dataset(validate({"dataset": "folder", "data_dir": str(tmp_path / "imgs"), "img_size": 16,
                                "model": "resnet64", "test_fraction": 0.2}))
    assert ds.sample_shape == (3, 16, 16) and len(ds.train_items) == 4
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(validate({"dataset": "celeba", "data_dir": str(tmp_path / "nope"), "model": "resnet64"}))
    with pytest.raises(DatasetError, match="missing data_batch_1"):
        load_dataset(validate({"dataset": "cifar10", "data_dir": str(tmp_path), "model": "resnet32"}))
    p = run_cli("fdrl_train.cli", "--config", "celeba", "--out", str(tmp_path / "o"), "--set",
                f"data_dir={tmp_path / 'nope'}")
    assert_user_error(p, "img_align_celeba")


def test_lsun_lmdb(tmp_path):
    lmdb = pytest.importorskip("lmdb", reason="lmdb is an optional dependency (pip install lmdb)")
    env = lmdb.open(str(tmp_path / "church_outdoor_train_lmdb"), map_size=1 << 24)
    import io
    with env.begin(write=True) as txn:
        for i in range(4):
            buf = io.BytesIO()
            Image.fromarray(np.full((150, 200, 3), 60 * i, np.uint8)).save(buf, format="JPEG")
            txn.put(f"{i:04d}".encode(), buf.getvalue())
    env.close()
    ds = load_dataset(validate({"dataset": "lsun_church", "data_dir": str(tmp_path), "model": "resnet128",
                                "test_fraction": 0.25}))
    assert ds.sample(3, torch.Generator().manual_seed(0)).shape == (3, 3, 128, 128)


@pytest.mark.parametrize("rank", [0, 6])
def test_ddp_prior_matches_the_data_covariance(rank):
    """Synthetic data with a known covariance (rank 4 + diagonal) in d = 192: the prior's
    samples have the data's mean and covariance, full or low rank (O(d k) memory)."""
    g = torch.Generator().manual_seed(0)
    d, k = 192, 4
    u = torch.randn(d, k, generator=g) * torch.tensor([2.0, 1.5, 1.0, 0.7])
    std = torch.rand(d, generator=g) * 0.3 + 0.1
    mean = torch.randn(d, generator=g) * 0.2
    data = mean + torch.randn(30000, k, generator=g) @ u.T + torch.randn(30000, d, generator=g) * std
    cov = u @ u.T + torch.diag(std ** 2)
    prior = GaussianPrior.fit(data.split(997), (3, 8, 8), clamp=False, rank=rank)
    if rank:
        assert prior.factor.shape == (d, rank) and prior.diag.shape == (d,)
    x = prior.sample(60000, g).reshape(60000, d).double()
    # Means agree within 5 standard errors (the data's 30,000 and the samples' 60,000).
    se = (cov.diagonal().double() * (1 / 30000 + 1 / 60000)).sqrt()
    assert ((x.mean(0) - mean.double()).abs() / se).max() < 5
    rel = (torch.cov(x.T) - cov.double()).norm() / cov.norm()
    assert rel < 0.05, rel


def test_cat2dog_translates_trainA_into_trainB(tmp_path):
    # The preset: data p = trainB (dogs), prior q' = trainA (cats), both read at 64 x 64.
    from fdrl_train.config import load_config
    from fdrl_train.train import make_prior
    for folder, value in (("trainA", 30), ("trainB", 220), ("testA", 30), ("testB", 220)):
        (tmp_path / folder).mkdir()
        for i in range(4):
            Image.fromarray(np.full((80, 96, 3), value + i, np.uint8)).save(tmp_path / folder / f"{i}.jpg", quality=100)
    cfg = load_config("cat2dog", [f"data_dir={tmp_path}"])
    data = load_dataset(cfg)
    prior = make_prior(cfg, data)
    g = torch.Generator().manual_seed(0)
    dogs, cats = data.sample(8, g), prior.sample(8, g)
    assert data.sample_shape == (3, 64, 64) and cats.shape == (8, 3, 64, 64)
    assert ((dogs + 1) * 127.5).mean() > 200 and ((cats + 1) * 127.5).mean() < 50
    assert prior.kind == "input"  # the artifact takes --init testA/
    p = run_cli("fdrl_train.cli", "--config", "cat2dog", "--out", str(tmp_path / "o"), "--set",
                f"data_dir={tmp_path / 'nope'}")
    assert_user_error(p, "trainB")
