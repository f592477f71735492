"""A statistical shape prior fused with the model's per-point Gaussians (maximum a posteriori).

The model gives every landmark a mean p_i and a covariance Sigma_i (calibrated by core.calibrate); a
point it cannot see (an occluder, blur) gets a wide ellipse. The prior is a point distribution model of
the training shapes: after generalised Procrustes alignment (mirror images included),
y = m + sum_k b_k P_k with b_k ~ N(0, lambda_k) (PCA, the modes that keep VARIANCE_KEPT of the variance).
A face is x = a y + c y_perp + t (a similarity: scale, rotation, translation, flat prior), and

    (a, c, t, b)* = argmin  sum_i (p_i - x_i)^T Sigma_i^-1 (p_i - x_i)  +  sum_k b_k^2 / lambda_k

(Gauss-Newton from the similarity fit of the mean shape; two steps converge). The returned points are
x*: confident points stay where the model put them, uncertain ones follow the shape of the confident
ones. Covariances are left as the model gave them. A model's JSON may add "point_offsets" (core.calibrate:
per-landmark offsets o_i fitted on its validation split, inter-ocular units in each face's frame), moved
last: x_i* + d R^T o_i (core.metrics.in_convention; the labels' convention, e.g. where 300-W's annotators
put points that flipped training crops leave ambiguous). No knob: the prior's weight is the Bayesian one (1)
and the modes follow VARIANCE_KEPT (validation only confirmed both sit where its curves are flat).

    python -m core.shape_prior --data ../shared/data/faces68 --weights weights/sdfl_flagship.safetensors \
        --out weights/shape_prior.json --link   # the shipped file, byte for byte: the model's training split
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from .landmarks import MIRROR_PERMUTATION
from .metrics import in_convention

VARIANCE_KEPT = 0.995  # share of the aligned training shapes' variance the modes keep
PROCRUSTES_ITERS = 10
GN_STEPS = 2  # Gauss-Newton steps after the similarity fit (validation: a third changes < 0.001 points)
META_KEY = "shape_prior"  # <stem>.json key naming the prior's file, relative to the weights' folder
OFFSETS_KEY = "point_offsets"  # <stem>.json key of the model's (N, 2) offsets (core.calibrate)
_BLAS = []  # threadpoolctl's handle on numpy's BLAS, made on first use


def _one_blas_thread():
    """A context in which numpy's BLAS / LAPACK run on one thread: the fit's 66 x 66 solves take 0.03 ms
    there, and 0.5-4 ms when OpenBLAS's threads compete with the model runtime's for two cores."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController().select(user_api="blas"))
        except ImportError:  # a bare install: correct, only slower on a busy machine
            _BLAS.append(None)
    return _BLAS[0].limit(limits=1) if _BLAS[0] is not None else contextlib.nullcontext()


def _perp(v: np.ndarray) -> np.ndarray:
    """Each 2-vector turned by +90 degrees."""
    return np.stack([-v[..., 1], v[..., 0]], -1)


def procrustes(shapes: np.ndarray, iters: int = PROCRUSTES_ITERS) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis of (F, N, 2) shapes: (mean (N, 2), centred and of unit norm;
    every shape aligned to it by scale and rotation, (F, N, 2))."""
    x = shapes - shapes.mean(1, keepdims=True)
    x = x / np.sqrt((x ** 2).sum((1, 2), keepdims=True))
    mean, aligned = x[0], x
    for _ in range(iters):
        n2 = (x ** 2).sum((1, 2))
        a = (x * mean).sum((1, 2)) / n2
        c = (x[..., 0] * mean[:, 1] - x[..., 1] * mean[:, 0]).sum(1) / n2
        aligned = a[:, None, None] * x + c[:, None, None] * _perp(x)
        mean = aligned.mean(0)
        mean = mean - mean.mean(0)
        mean = mean / np.sqrt((mean ** 2).sum())
    return mean, aligned


@dataclasses.dataclass
class ShapePrior:
    mean: np.ndarray  # (N, 2), centred, unit norm
    modes: np.ndarray  # (K, N, 2), orthonormal
    variances: np.ndarray  # (K,)
    info: dict = dataclasses.field(default_factory=dict)
    offsets: np.ndarray | None = None  # (N, 2) moved last (module docstring), or None

    def __post_init__(self):
        self.mean, self.modes = np.asarray(self.mean, float), np.asarray(self.modes, float)
        self.variances = np.asarray(self.variances, float)
        n, k = len(self.mean), len(self.variances)
        if self.mean.shape != (n, 2) or self.modes.shape != (k, n, 2) or not np.all(self.variances > 0):
            raise ValueError(f"inconsistent shape prior (mean {self.mean.shape}, modes {self.modes.shape}, "
                             f"variances {self.variances.shape})")
        if self.offsets is not None:
            self.offsets = np.asarray(self.offsets, float)
            if self.offsets.shape != (n, 2) or not np.isfinite(self.offsets).all():
                raise ValueError(f"point offsets of shape {self.offsets.shape} do not fit a {n}-point prior")
        # what every fit reuses: the modes flat (K, 2N) and per axis (N, K), 1 / lambda, the ridge diag(0, 1 / lambda)
        self._flat = self.modes.reshape(k, -1)
        self._px, self._py = (np.ascontiguousarray(self.modes[..., axis].T) for axis in (0, 1))
        self._inv_var = 1.0 / self.variances
        self._ridge = np.diag(np.concatenate([np.zeros(4), self._inv_var]))

    @classmethod
    def fit(cls, shapes: np.ndarray, mirror: bool = True, variance_kept: float = VARIANCE_KEPT,
            info: dict | None = None) -> "ShapePrior":
        """PCA of (F, N, 2) landmark sets (any frame) after Procrustes alignment; mirror: add every
        shape's mirror image (left and right points swapped)."""
        shapes = np.asarray(shapes, dtype=np.float64)
        if shapes.ndim != 3 or shapes.shape[2] != 2 or len(shapes) < 3:
            raise ValueError(f"need (F >= 3, N, 2) shapes, got {shapes.shape}")
        if mirror:
            flipped = shapes * [-1.0, 1.0]
            shapes = np.concatenate([shapes, flipped[:, MIRROR_PERMUTATION]])
        mean, aligned = procrustes(shapes)
        _, s, vt = np.linalg.svd((aligned - mean).reshape(len(aligned), -1), full_matrices=False)
        var = s ** 2 / len(aligned)
        k = int(np.searchsorted(np.cumsum(var) / var.sum(), variance_kept) + 1)
        info = {"faces": int(len(shapes) // (2 if mirror else 1)), "mirror": mirror,
                "variance_kept": variance_kept, "modes": k, **(info or {})}
        return cls(mean, vt[:k].reshape(k, -1, 2), var[:k], info)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({
            "info": self.info, "mean": np.round(self.mean, 7).tolist(),
            "modes": np.round(self.modes, 7).tolist(), "variances": [float(f"{v:.7g}") for v in self.variances]}))

    @classmethod
    def load(cls, path: str | Path) -> "ShapePrior":
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["mean"], d["modes"], d["variances"], d.get("info", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a shape prior ({e})") from e

    def refine(self, coords: np.ndarray, cov: np.ndarray, steps: int = GN_STEPS) -> np.ndarray:
        """(B, N, 2) points with (B, N, 2, 2) covariances (any frame, any unit) -> the MAP points x*
        (module docstring), same dtype. A face whose points or covariances are not finite and positive
        definite is returned unchanged."""
        p = np.asarray(coords, dtype=np.float64)
        c = np.asarray(cov, dtype=np.float64)
        if p.shape[1:] != self.mean.shape or c.shape != p.shape + (2,):
            raise ValueError(f"coords {p.shape} / cov {c.shape} do not match a {len(self.mean)}-point prior")
        ok = np.isfinite(p).all((1, 2)) & np.isfinite(c).all((1, 2, 3))
        det = c[..., 0, 0] * c[..., 1, 1] - c[..., 0, 1] * c[..., 1, 0]
        ok &= ((c[..., 0, 0] > 0) & (det > 0)).all(1)
        out = np.array(coords, copy=True)
        if ok.any():
            with _one_blas_thread():
                x = self._map(p[ok], c[ok], steps)
            out[ok] = (x if self.offsets is None else in_convention(x, self.offsets)).astype(out.dtype)
        return out

    def _map(self, p: np.ndarray, cov: np.ndarray, steps: int) -> np.ndarray:
        nb, n, k = len(p), len(self.mean), len(self.variances)
        flat, px, py, ridge, inv_var = self._flat, self._px, self._py, self._ridge, self._inv_var
        # whitening: cov = C C^T (Cholesky); residuals and Jacobian rows are premultiplied by W = C^-1,
        # lower triangular: W v = (w00 v_x, w10 v_x + w11 v_y)
        l11 = np.sqrt(cov[..., 0, 0])
        l21 = cov[..., 1, 0] / l11
        l22 = np.sqrt(np.maximum(cov[..., 1, 1] - l21 ** 2, 1e-12 * cov[..., 1, 1]))
        w00, w11 = 1 / l11, 1 / l22
        w10 = -l21 * w00 * w11
        # the whitened Jacobian J_w (B, N, 2, 4 + K): columns a, c, t_x, t_y, then the mode weights b
        jw = np.zeros((nb, n, 2, 4 + k))
        jw[:, :, 0, 2], jw[:, :, 1, 2], jw[:, :, 1, 3] = w00, w10, w11  # W e_x, W e_y
        wp = (w00[..., None] * px, w10[..., None] * px + w11[..., None] * py)  # W P, per axis (B, N, K)
        wq = (-w00[..., None] * py, w11[..., None] * px - w10[..., None] * py)  # W P_perp
        rw = np.empty((nb, n, 2))
        theta, b = np.tile([1.0, 0.0, 0.0, 0.0], (nb, 1)), np.zeros((nb, k))
        for step in range(steps + 1):
            y = self.mean + (b @ flat).reshape(nb, n, 2)
            yx, yy = y[..., 0], y[..., 1]  # y_perp = (-yy, yx)
            a, c = theta[:, 0, None], theta[:, 1, None]
            rx = p[..., 0] - (a * yx - c * yy + theta[:, 2, None])
            ry = p[..., 1] - (a * yy + c * yx + theta[:, 3, None])
            rw[..., 0], rw[..., 1] = w00 * rx, w10 * rx + w11 * ry
            jw[:, :, 0, 0], jw[:, :, 1, 0] = w00 * yx, w10 * yx + w11 * yy  # W y
            jw[:, :, 0, 1], jw[:, :, 1, 1] = -w00 * yy, w11 * yx - w10 * yy  # W y_perp
            m = 4 + k if step else 4  # step 0: the similarity alone (b = 0)
            if step:
                for axis in (0, 1):
                    np.add(a[..., None] * wp[axis], c[..., None] * wq[axis], out=jw[:, :, axis, 4:])
            j = jw[..., :m].reshape(nb, 2 * n, m)
            jt = j.transpose(0, 2, 1)
            h = jt @ j
            g = (jt @ rw.reshape(nb, 2 * n, 1))[..., 0]
            if step:
                h += ridge
                g[:, 4:] -= b * inv_var
            diag = h.reshape(nb, -1)[:, ::m + 1]  # a view of each H's diagonal
            diag += 1e-12 * diag.sum(1, keepdims=True)
            dz = np.linalg.solve(h, g[..., None])[..., 0]
            theta = theta + dz[:, :4]
            if step:
                b = b + dz[:, 4:]
        y = self.mean + (b @ flat).reshape(nb, n, 2)
        a, c = theta[:, 0, None, None], theta[:, 1, None, None]
        return a * y + c * _perp(y) + theta[:, None, 2:]


def prior_for(weights: str | Path, meta: dict) -> ShapePrior | None:
    """The shape prior a model's <stem>.json names (META_KEY) with the model's OFFSETS_KEY, or None."""
    name = meta.get(META_KEY)
    if not name:
        return None
    prior = ShapePrior.load(Path(weights).parent / name)
    return dataclasses.replace(prior, offsets=meta[OFFSETS_KEY]) if meta.get(OFFSETS_KEY) else prior


class ShapePriorRunner:
    """A model runner (x (B, 3, S, S) -> numpy dict with "coords" and "cov") whose coords are the
    prior's MAP points, the model's own under "coords_raw"; runners without "cov" are not wrapped
    (nothing to weigh the points by)."""

    def __init__(self, runner, prior: ShapePrior):
        self.runner, self.prior = runner, prior
        for name in ("provider", "device_name", "outputs", "input_shape", "meta"):
            if hasattr(runner, name):
                setattr(self, name, getattr(runner, name))

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = dict(self.runner(x))
        out["coords_raw"] = out["coords"]
        out["coords"] = self.prior.refine(out["coords"], out["cov"])
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="faces68 folder (train.jsonl)")
    ap.add_argument("--weights", required=True, help="the model whose training split the prior is fitted on")
    ap.add_argument("--out", required=True, help="the prior's JSON file (put it beside the weights)")
    ap.add_argument("--link", action="store_true", help=f"also name it in the weights' <stem>.json ({META_KEY!r})")
    args = ap.parse_args(argv)
    from .checkpoint import read_meta, stem_paths, training_data_config
    from .data import train_val_split

    meta = read_meta(args.weights)
    train, val = train_val_split(training_data_config(meta), args.data)
    prior = ShapePrior.fit(np.stack([r.landmarks for r in train]),
                           info={"fitted_on": f"faces68 train minus the validation split of {Path(args.weights).name}",
                                 "validation_faces_left_out": len(val)})
    prior.save(args.out)
    print(json.dumps(prior.info))
    if args.link:
        js = stem_paths(args.weights)[1]
        meta[META_KEY] = Path(args.out).name
        js.write_text(json.dumps(meta, indent=1))
        print(f"{js}: {META_KEY} = {Path(args.out).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
