import numpy as np
import pytest
import torch

from fdrl_eval.metrics import feature_stats, frechet_distance, mmd2_rbf, mode_coverage
from fdrl_train.datasets import TWENTY_FIVE_CENTRES


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 2, 6), rng.uniform(0.1, 2, 6)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(want, rel=1e-10)


def test_frechet_distance_full_covariances_against_commuting_case():
    # Same eigenvectors: the trace term is sum of sqrt(l1 * l2).
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    l1, l2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    want = l1.sum() + l2.sum() - 2 * np.sqrt(l1 * l2).sum()
    assert frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(want, rel=1e-9)
    assert frechet_distance(np.ones(5), s1, np.ones(5), s1) == pytest.approx(0.0, abs=1e-9)


def test_feature_stats_recover_a_known_gaussian():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 4))
    cov = a @ a.T + np.eye(4)
    x = rng.multivariate_normal(np.arange(4.0), cov, size=200_000)
    mu, sigma = feature_stats(x)
    assert np.abs(mu - np.arange(4.0)).max() < 0.03 and np.abs(sigma - cov).max() < 0.1


def test_mmd_is_zero_in_expectation_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g)
    same, shifted = mmd2_rbf(x, y, 0.5), mmd2_rbf(x, y + 1.0, 0.5)
    assert abs(same) < 0.01 and shifted > 10 * abs(same) + 0.05


def test_mode_coverage_counts_modes_with_enough_samples():
    pts = torch.cat([TWENTY_FIVE_CENTRES[:20].repeat(6, 1), TWENTY_FIVE_CENTRES[20:].repeat(2, 1)])
    assert mode_coverage(pts, TWENTY_FIVE_CENTRES, 0.1, 5) == 20
    assert mode_coverage(pts, TWENTY_FIVE_CENTRES, 0.1, 1) == 25


def test_kid_against_its_closed_form_for_zero_mean_gaussians():
    """For zero-mean x, y the odd moments vanish, so with u = x.y/d, E(u + 1)^3 = 3 E u^2 + 1
    and E u^2 = tr(Sx Sy)/d^2: KID's population value is 3 ||Sx - Sy||_F^2 / d^2."""
    from fdrl_eval.metrics import kernel_inception_distance
    rng = np.random.default_rng(0)
    d, n = 8, 4000
    x = rng.standard_normal((n, d))
    y = 1.5 * rng.standard_normal((n, d))
    want = 3 * d * (1 - 1.5 ** 2) ** 2 / d ** 2
    kid, std = kernel_inception_distance(x, y, subsets=20, subset_size=2000)
    assert abs(kid - want) < 0.05 * want and 0 < std < 0.1 * want, (kid, want, std)
    same, same_std = kernel_inception_distance(x, rng.standard_normal((n, d)), subsets=20, subset_size=2000)
    assert abs(same) < 3 * same_std + 1e-3 and abs(same) < 0.01 * want
