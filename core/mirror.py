"""Mirror images and their landmarks, and the test-time mirror ensemble.

A horizontal flip maps x -> e - x, with e = W - 1 in pixels (pixel centres at integers) or (S - 1) / S
in crop units of an S-pixel crop, and swaps the roles of left and right points (MIRROR_PERMUTATION).
The ensemble runs the model on a crop and on its mirror image and averages,

    c = (f(x) + m(f(flip x))) / 2,    Sigma = (Sigma(x) + M Sigma(flip x) M) / 2,  M = diag(-1, 1),

keeping the crop's own edge weights."""
from __future__ import annotations

import numpy as np

from .landmarks import MIRROR_PERMUTATION

_FROM_MIRROR = np.argsort(MIRROR_PERMUTATION)  # point i of the result comes from point _FROM_MIRROR[i]


def mirror_points(points: np.ndarray, extent: float) -> np.ndarray:
    """(..., N, 2) landmarks of a mirror image -> the same faces' landmarks in the original image."""
    q = np.array(points, dtype=np.float64 if np.asarray(points).dtype == np.float64 else np.float32)
    q[..., 0] = extent - q[..., 0]
    return q[..., _FROM_MIRROR, :]


def mirror_covariances(cov: np.ndarray) -> np.ndarray:
    """(..., N, 2, 2) covariances of a mirror image's landmarks -> in the original image (M Sigma M)."""
    c = np.array(cov)
    c[..., 0, 1] *= -1
    c[..., 1, 0] *= -1
    return c[..., _FROM_MIRROR, :, :]


def merge_mirrored(out: dict, flipped: dict, size: int) -> dict:
    """The ensemble of a model's outputs on crops (`out`) and on their mirror images (`flipped`), numpy
    dicts with "coords" (B, N, 2) in crop units, optional "cov" (B, N, 2, 2), "adjacency" kept from `out`."""
    res = dict(out)
    res["coords"] = (out["coords"] + mirror_points(flipped["coords"], (size - 1) / size)) / 2
    if "cov" in out:
        res["cov"] = (out["cov"] + mirror_covariances(flipped["cov"])) / 2
    return res


class MirrorRunner:
    """A model runner (x (B, 3, S, S) float32 -> numpy output dict) that answers with the mirror ensemble:
    the crops and their mirror images go through the model in one batch (twice the model time)."""

    def __init__(self, runner, size: int):
        self.runner, self.size = runner, int(size)
        for name in ("provider", "device_name", "outputs", "input_shape", "meta"):
            if hasattr(runner, name):
                setattr(self, name, getattr(runner, name))

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        both = self.runner(np.concatenate([x, x[..., ::-1]]))
        b = len(x)
        return merge_mirrored({k: v[:b] for k, v in both.items()}, {k: v[b:] for k, v in both.items()}, self.size)
