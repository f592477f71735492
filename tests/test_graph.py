"""Data-driven sparse neighbourhoods (SDFL)."""
from __future__ import annotations

import numpy as np
import pytest

from core.graph import correlation_matrix, neighbourhood

from conftest import synthetic_shapes


def _paired(n_samples=200, seed=0) -> np.ndarray:
    """6 landmarks in 3 pairs (0,1), (2,3), (4,5): partners move together (plus small noise),
    pairs are independent."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_samples, 3, 2))
    pts = np.repeat(base, 2, axis=1) + rng.normal(scale=0.05, size=(n_samples, 6, 2))
    return pts


def _triples(n_samples=200, seed=1) -> np.ndarray:
    """6 landmarks in 2 groups of 3 moving together."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_samples, 2, 2))
    return np.repeat(base, 3, axis=1) + rng.normal(scale=0.05, size=(n_samples, 6, 2))


def test_correlation_matrix_known_values():
    c = correlation_matrix(_paired())
    assert c.shape == (6, 6)
    assert np.allclose(np.diag(c), 1.0)
    assert np.allclose(c, c.T)
    for a, b in ((0, 1), (2, 3), (4, 5)):
        assert c[a, b] > 0.99
    mask = np.ones((6, 6), bool)
    for a, b in ((0, 1), (2, 3), (4, 5)):
        mask[a, b] = mask[b, a] = mask[a, a] = mask[b, b] = False
    assert c[mask].max() < 0.3


def test_anticorrelation_counts_as_correlation():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(100, 1, 2))
    pts = np.concatenate([base, -base, rng.normal(size=(100, 1, 2))], 1)
    c = correlation_matrix(pts)
    assert c[0, 1] == pytest.approx(1.0)
    assert neighbourhood(pts, k=1)[0].tolist() == [1, 1, 0]


def test_neighbourhood_pairs_k1():
    m = neighbourhood(_paired(), k=1)
    expected = np.zeros((6, 6), np.float32)
    for a, b in ((0, 1), (2, 3), (4, 5)):
        expected[a, [a, b]] = expected[b, [a, b]] = 1
    assert np.array_equal(m, expected)


def test_neighbourhood_triples_k2():
    m = neighbourhood(_triples(), k=2)
    expected = np.zeros((6, 6), np.float32)
    expected[:3, :3] = 1
    expected[3:, 3:] = 1
    assert np.array_equal(m, expected)


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_rows_contain_self_and_exactly_k_plus_one(k):
    m = neighbourhood(synthetic_shapes(40), k=k)
    assert m.shape == (68, 68) and m.dtype == np.float32
    assert np.all(np.diag(m) == 1)
    assert np.all(m.sum(1) == k + 1)
    assert set(np.unique(m)) <= {0.0, 1.0}


def test_self_kept_even_with_a_perfect_duplicate():
    # landmark 1 duplicates landmark 0 exactly: both correlations are 1, self must still be kept
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(50, 4, 2))
    pts[:, 1] = pts[:, 0]
    m = neighbourhood(pts, k=1)
    assert np.all(np.diag(m) == 1) and np.all(m.sum(1) == 2)
    assert m[0, 1] == 1 and m[1, 0] == 1


def test_constant_landmark_gives_finite_matrix():
    pts = _paired()
    pts[:, 2] = 0.5  # no variance: correlation undefined -> treated as 0
    with np.errstate(all="ignore"):
        c = correlation_matrix(pts)
        m = neighbourhood(pts, k=1)
    assert np.isfinite(c).all()
    assert np.all(m.sum(1) == 2) and m[2, 2] == 1


@pytest.mark.parametrize("bad", [
    np.zeros((10, 6)),  # not (S, N, 2)
    np.zeros((10, 6, 3)),
    np.zeros((2, 6, 2)),  # fewer than 3 samples
    np.zeros((5, 6, 2, 1)),
])
def test_bad_shapes_raise(bad):
    with pytest.raises(ValueError):
        neighbourhood(bad, k=1)
    with pytest.raises(ValueError):
        correlation_matrix(bad)


@pytest.mark.parametrize("k", [0, -1, 6, 7])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match="k must be"):
        neighbourhood(_paired(), k=k)


def test_the_directed_top_k_graph_leaves_some_pairs_unreachable():
    shapes = synthetic_shapes(40)
    directed = neighbourhood(shapes, k=3)
    reach = directed.astype(np.float64)
    for _ in range(7):  # paths of up to 2**7 edges
        reach = np.minimum(reach @ reach, 1.0)
    assert not reach.all()
