"""Post-hoc calibration of the per-landmark covariances on the validation split.

    python -m core.calibrate --weights weights/sdfl_flagship.safetensors [--data ../shared/data/faces68]
        [--reject-ratio R]   # also record the image-mode rejection threshold (docs/PHOTOS.md)
        [--max-drift D]      # and the stability check's threshold (benchmarks/drift.py)

The NLL-trained uncertainty head sees heavily augmented crops, so on clean faces its ellipses come
out too large. One factor s scales every covariance (the model's `cov_scale` buffer, so torch, ONNX
and the app agree). With d^2 = r^T Sigma^-1 r the Mahalanobis distance of each ground-truth point,
s minimises (P[d^2/s <= 1] - 0.393)^2 + (P[d^2/s <= 4] - 0.865)^2, the shares a 2-D Gaussian puts
inside its 1- and 2-sigma ellipses. It is fitted on the checkpoint's own validation split (held out
from train by photo), never on test. The weights are rewritten in place; re-export ONNX afterwards.

A model whose JSON names a shape prior also gets "point_offsets" (core.shape_prior): o_i = mean over the
validation faces of R (g_i - x_i) / d (core.metrics.convention_offsets), x the prior's MAP points with
the new scale, R and d each face's frame and inter-ocular distance: where the labels put points that the
model, trained on flipped crops too, cannot tell from their mirror images (docs/FLAGSHIP.md, session 24)."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .checkpoint import DEFAULT_WEIGHTS, CheckpointError, load_model, save_weights, training_data_config
from .data import DataError, train_val_split
from .evaluate import predict_records
from .metrics import GAUSSIAN_COVERAGE, calibration, convention_offsets, in_convention, mahalanobis2, nme
from .shape_prior import OFFSETS_KEY, prior_for

SCALE_GRID = np.logspace(-3, 2, 1001)


def fit_scale(d2: np.ndarray) -> float:
    """The s of the module docstring, by grid search over SCALE_GRID."""
    d2 = np.sort(d2.ravel())
    n = len(d2)
    in1 = np.searchsorted(d2, SCALE_GRID, side="right") / n
    in2 = np.searchsorted(d2, 4 * SCALE_GRID, side="right") / n
    return float(SCALE_GRID[np.argmin((in1 - GAUSSIAN_COVERAGE[0]) ** 2 + (in2 - GAUSSIAN_COVERAGE[1]) ** 2)])


def calibrate(weights, data: str | None = None, device: str = "cpu", reject_ratio: float | None = None,
              max_drift: float | None = None) -> dict:
    """Fit and store cov_scale; with reject_ratio, also record it in the weights' JSON ("reject_ratio":
    sigma / inter-ocular at confidence 0.5, chosen with benchmarks/photos.py; core.image_faces), and
    with max_drift the stability check's threshold (inter-ocular distances, chosen with benchmarks/drift.py)."""
    if reject_ratio is not None and not reject_ratio > 0:
        raise ValueError(f"--reject-ratio must be > 0, got {reject_ratio}")
    if max_drift is not None and not max_drift > 0:
        raise ValueError(f"--max-drift must be > 0, got {max_drift}")
    model, meta = load_model(weights, device)
    if not model.cfg.uncertainty:
        raise CheckpointError(f"{weights}: the model has no uncertainty head")
    dc = training_data_config(meta)
    _, val = train_val_split(dc, data)
    old = float(model.cov_scale)
    pred, gt, cov = predict_records(model, val, device=device)
    before = calibration(pred, gt, cov)
    scale = old * fit_scale(mahalanobis2(pred, gt, cov))
    model.cov_scale.fill_(scale)
    after = calibration(pred, gt, cov * scale / old)
    info = {"cov_scale": scale, "fitted_on": f"{dc.train_split} validation split ({len(val)} faces)",
            "val_before": before, "val_after": after}
    meta = {k: v for k, v in meta.items() if k != OFFSETS_KEY}
    prior = prior_for(weights, meta)
    if prior is not None:  # the prior's points at the new scale, as FaceAligner gives them (equivariant: pixels)
        pred = prior.refine(pred, cov * (scale / old))
        o = convention_offsets(pred, gt)
        meta[OFFSETS_KEY] = np.round(o, 6).tolist()
        info["point_offsets"] = {"mean_abs": float(np.linalg.norm(o, axis=1).mean()),
                                 "val_nme_before": float(nme(pred, gt).mean()),
                                 "val_nme_after_in_sample": float(nme(in_convention(pred, o), gt).mean())}
    if reject_ratio is not None:
        meta = {**meta, "reject_ratio": float(reject_ratio)}
    if max_drift is not None:
        meta = {**meta, "max_drift": float(max_drift)}
    save_weights(weights, model, {**meta, "uncertainty_calibration": info})
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--data", default=None, help="faces68 folder (default: the one the checkpoint was trained on)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reject-ratio", type=float, default=None,
                    help="image-mode rejection threshold to record in the weights' JSON (docs/PHOTOS.md)")
    ap.add_argument("--max-drift", type=float, default=None,
                    help="image-mode stability threshold to record in the weights' JSON (benchmarks/drift.py)")
    args = ap.parse_args(argv)
    try:
        info = calibrate(args.weights, args.data, args.device, args.reject_ratio, args.max_drift)
    except (DataError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
