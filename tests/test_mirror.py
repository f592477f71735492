"""core.mirror: mirrored landmarks and covariances, and the mirror-ensemble runner."""
from __future__ import annotations

import numpy as np

from core.landmarks import MIRROR_PERMUTATION
from core.mirror import MirrorRunner, mirror_covariances, mirror_points
from synth_faces import face_points

SIZE = 256


def test_mirror_points_is_an_involution_that_swaps_roles():
    pts = face_points(SIZE)
    once = mirror_points(pts, SIZE - 1)
    assert np.allclose(mirror_points(once, SIZE - 1), pts)
    i = 36  # an outer eye corner lands where its mirror partner is, mirrored
    j = int(MIRROR_PERMUTATION[i])
    assert j != i and np.isclose(once[j, 0], SIZE - 1 - pts[i, 0]) and np.isclose(once[j, 1], pts[i, 1])
    # a symmetric face is its own mirror image (pixel centres at integers: x -> W - 1 - x)
    sym = face_points(SIZE, noise=0.0)
    centred = mirror_points(sym - [sym[:, 0].mean() - (SIZE - 1) / 2, 0], SIZE - 1)
    assert np.allclose(centred, sym - [sym[:, 0].mean() - (SIZE - 1) / 2, 0], atol=1e-3)


def test_mirror_covariances_flip_the_correlation_and_swap_roles():
    cov = np.tile(np.array([[4.0, 1.5], [1.5, 1.0]]), (68, 1, 1))
    cov[36] = [[9.0, 0.0], [0.0, 1.0]]
    m = mirror_covariances(cov)
    j = int(MIRROR_PERMUTATION[36])
    assert np.allclose(m[j], [[9.0, 0.0], [0.0, 1.0]])
    k = next(i for i in range(68) if i != 36 and MIRROR_PERMUTATION[i] != 36)
    assert np.allclose(m[int(MIRROR_PERMUTATION[k])], [[4.0, -1.5], [-1.5, 1.0]])
    assert np.allclose(mirror_covariances(m), cov)


class _Runner:
    """Finds the brightest pixel of each of 68 channels-free crops: a mirror-equivariant toy model
    whose point i is the brightest pixel's position, the same for every point (plus a per-point bias
    that the mirror image swaps: left points biased left)."""
    provider, device_name, outputs = "toy", "cpu", ["coords", "adjacency", "cov"]

    def __init__(self, size):
        self.size, self.calls = size, []

    def __call__(self, x):
        self.calls.append(len(x))
        b, _, s, _ = x.shape
        flat = x[:, 0].reshape(b, -1).argmax(1)
        yx = np.stack([flat // s, flat % s], 1).astype(np.float32)
        coords = np.repeat((yx[:, ::-1] / s)[:, None], 68, 1)
        return {"coords": coords, "adjacency": np.zeros((b, 68, 68), np.float32),
                "cov": np.tile(np.eye(2, dtype=np.float32), (b, 68, 1, 1))}


def test_mirror_runner_averages_in_one_batch_and_keeps_the_runner_facts():
    size = 32
    x = np.zeros((3, 3, size, size), np.float32)
    for n, (r, c) in enumerate([(5, 7), (20, 2), (31, 31)]):
        x[n, :, r, c] = 1.0
    inner = _Runner(size)
    ens = MirrorRunner(inner, size)
    out = ens(x)
    assert inner.calls == [6] and ens.provider == "toy" and ens.outputs == inner.outputs
    # the brightest pixel of the mirror image maps back onto the same pixel: the ensemble equals the model
    assert np.allclose(out["coords"], inner(x)["coords"], atol=1e-6)
    assert out["coords"].shape == (3, 68, 2) and out["cov"].shape == (3, 68, 2, 2)
