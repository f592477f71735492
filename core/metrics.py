"""Landmark metrics, independent of models. pred, gt: (F, N, 2) in the same pixel frame."""
from __future__ import annotations

import numpy as np

from .landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER, tangents

FAILURE_THRESHOLDS = (0.08, 0.10, 0.15, 0.20)


def interocular(gt: np.ndarray) -> np.ndarray:
    """(F,) distance between the outer eye corners (points 36 and 45)."""
    return np.linalg.norm(gt[:, LEFT_EYE_OUTER] - gt[:, RIGHT_EYE_OUTER], axis=-1)


def landmark_errors(pred, gt) -> np.ndarray:
    """(F, N) point-to-point errors normalised by the inter-ocular distance."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    return np.linalg.norm(pred - gt, axis=-1) / interocular(gt)[:, None]


def nme(pred, gt) -> np.ndarray:
    """(F,) NME per face = mean_i ||p_i - g_i|| / ||g_36 - g_45||."""
    return landmark_errors(pred, gt).mean(1)


def failure_rate(nmes, threshold: float = 0.10) -> float:
    """Share of faces with NME > threshold."""
    return float(np.mean(np.asarray(nmes) > threshold))


def ced(nmes, threshold: float = 0.10, steps: int = 1001):
    """Cumulative error distribution: (x, share of faces with NME <= x) on [0, threshold]."""
    x = np.linspace(0.0, threshold, steps)
    nmes = np.sort(np.asarray(nmes))
    return x, np.searchsorted(nmes, x, side="right") / max(len(nmes), 1)


def auc(nmes, threshold: float = 0.10, steps: int = 1001) -> float:
    """Area under the CED curve on [0, threshold], normalised to 1."""
    x, y = ced(nmes, threshold, steps)
    return float(np.trapezoid(y, x) / threshold) if hasattr(np, "trapezoid") else float(np.trapz(y, x) / threshold)


def face_frame(points) -> tuple[np.ndarray, np.ndarray]:
    """(R (F, 2, 2), d (F,)) of each face's own points: R turns its eye line (36 -> 45) onto +x, d is
    its inter-ocular distance."""
    points = np.asarray(points, np.float64)
    v, d = points[:, RIGHT_EYE_OUTER] - points[:, LEFT_EYE_OUTER], interocular(points)
    c, s = v[:, 0] / d, v[:, 1] / d
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2), d


def convention_offsets(pred, gt) -> np.ndarray:
    """(N, 2) mean offset o_i = mean_f R_f (g_fi - p_fi) / d_f, in each prediction's face frame (R, d:
    face_frame(pred)): the constant per-landmark shift that maps a model's points onto another set of
    labels' annotation convention (fit it on faces other than those it is scored on)."""
    pred = np.asarray(pred, np.float64)
    r, d = face_frame(pred)
    return (np.einsum("fij,fnj->fni", r, np.asarray(gt, np.float64) - pred) / d[:, None, None]).mean(0)


def in_convention(pred, offsets) -> np.ndarray:
    """pred + d R^T o: points moved by convention_offsets' o, in each face's own frame and scale, i.e. by
    (v_x o_x - v_y o_y, v_y o_x + v_x o_y) with v the eye-line vector (no division: collapsed points stay)."""
    pred = np.asarray(pred, np.float64)
    o = np.asarray(offsets, np.float64)
    v = (pred[:, RIGHT_EYE_OUTER] - pred[:, LEFT_EYE_OUTER])[:, None, :]
    return pred + np.stack([v[..., 0] * o[:, 0] - v[..., 1] * o[:, 1], v[..., 1] * o[:, 0] + v[..., 0] * o[:, 1]], -1)


def landmark_failure_rates(pred, gt, thresholds=FAILURE_THRESHOLDS) -> dict[str, list[float]]:
    """Per landmark, share of faces whose normalised point error exceeds each threshold."""
    err = landmark_errors(pred, gt)
    return {f"{t:.2f}": (err > t).mean(0).tolist() for t in thresholds}


def normal_tangent_nme(pred, gt) -> tuple[float, float]:
    """Mean |e.n| and |e.t| / inter-ocular, n and t from the ground-truth curves (points on no
    curve count their full error in both)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    e = pred - gt
    t = tangents(gt)
    on = np.linalg.norm(t, axis=-1) > 0
    n = np.stack([-t[..., 1], t[..., 0]], -1)
    full = np.linalg.norm(e, axis=-1)
    en = np.where(on, np.abs((e * n).sum(-1)), full)
    et = np.where(on, np.abs((e * t).sum(-1)), full)
    io = interocular(gt)[:, None]
    return float((en / io).mean()), float((et / io).mean())


GAUSSIAN_COVERAGE = (1 - np.exp(-0.5), 1 - np.exp(-2.0))  # 2-D Gaussian mass inside its 1- and 2-sigma ellipses


def mahalanobis2(pred, gt, cov) -> np.ndarray:
    """(F, N) squared Mahalanobis distance d^2 = r^T Sigma^-1 r of each ground-truth point, r = g - p."""
    r = (np.asarray(gt, np.float64) - np.asarray(pred, np.float64))[..., None]
    return (np.swapaxes(r, -1, -2) @ np.linalg.solve(np.asarray(cov, np.float64) + 1e-9 * np.eye(2), r))[..., 0, 0]


def calibration(pred, gt, cov) -> dict:
    """Share of ground-truth points inside the predicted 1- and 2-sigma ellipses (d^2 <= 1, 4); a
    calibrated 2-D Gaussian gives 1 - exp(-k^2/2) = 0.393 and 0.865."""
    d2 = mahalanobis2(pred, gt, cov)
    return {"inside_1sigma": float((d2 <= 1).mean()), "inside_2sigma": float((d2 <= 4).mean()),
            "ideal_1sigma": float(GAUSSIAN_COVERAGE[0]), "ideal_2sigma": float(GAUSSIAN_COVERAGE[1])}


def ellipse_growth(cov_clean, cov_changed, mask) -> dict:
    """How the predicted ellipses react to a change of the input: the median over points of
    sigma_changed / sigma_clean, sigma = sqrt(trace Sigma), for the points `mask` marks (e.g. those an
    occluder covers) and for the others. An uncertainty head that sees the occluder grows the first."""
    ratio = np.sqrt(np.trace(np.asarray(cov_changed, np.float64), axis1=-2, axis2=-1)
                    / np.trace(np.asarray(cov_clean, np.float64), axis1=-2, axis2=-1))
    mask = np.asarray(mask, bool)
    return {"marked": float(np.median(ratio[mask])) if mask.any() else float("nan"),
            "others": float(np.median(ratio[~mask])) if (~mask).any() else float("nan")}


def summarize(pred, gt, threshold: float = 0.10) -> dict:
    """All headline metrics as fractions (not percent)."""
    per_face = nme(pred, gt)
    nn_, nt_ = normal_tangent_nme(pred, gt)
    return {
        "n": int(len(per_face)),
        "nme": float(per_face.mean()),
        "fr10": failure_rate(per_face, threshold),
        "auc10": auc(per_face, threshold),
        "nme_normal": nn_,
        "nme_tangent": nt_,
        "nme_per_landmark": landmark_errors(pred, gt).mean(0).tolist(),
        "landmark_failure_rate": landmark_failure_rates(pred, gt),
        "nme_per_face": per_face.tolist(),
    }
