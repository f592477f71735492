"""Image mode: detections -> upright crops -> model (two passes; a third for turned faces) -> rejection -> max_faces.

Crops: pass 1 crops around the detector's landmark-box estimate; pass 2 re-crops around the
pass-1 landmarks (the training convention: square, side CROP_SCALE x the larger side of the
landmark box). A face whose roll (eye line, core.face_finder angle convention) exceeds
UPRIGHT_ABOVE_DEG is cropped upright instead: the crop matrix rotates by -roll about the box
centre, and the box is taken in that rotated frame; the landmarks come back to the photo through
the inverse of the same matrix, so they are exact in photo pixels whatever the angle.
Turn search: a pass-1 face whose uncertainty ratio (below) exceeds the threshold is cropped again
turned by 90, 180 and 270 degrees, and keeps the turn the model is surest of (a face on its side
whose eye keypoints the detector got wrong; a few extra crops, only for doubtful faces).

Confidence (rejection from the model's own evidence): r = sigma / d, sigma = median over points of
the predicted standard deviation sqrt(trace(Sigma) / 2) (photo px), d = predicted inter-ocular
distance (points 36, 45; at least INTEROCULAR_MIN_SHARE x the landmark box side so profiles
are not punished for their short eye distance). confidence = 1 / (1 + (r / reject_ratio)^2), so
confidence 0.5 is at the model's threshold (reject_ratio_for); faces below `min_confidence` are
dropped. A model without an uncertainty head or without a threshold gives confidence None and
rejects nothing.

Stability: a face kept so far is cropped once more around its landmarks; when they move more than
MAX_DRIFT inter-ocular distances (mean over points) it is dropped (a real face is a fixed point of
crop -> predict; a texture the model turned into a face drifts). Only where faces are rejected at all.

Duplicates (two candidates that converged on one face) are merged by landmark-box IoU above
DUPLICATE_IOU, keeping the more confident. `max_faces` keeps the most confident (then highest
detector score) faces; the result says whether any were left out (FaceList.truncated)."""
from __future__ import annotations

import numpy as np

from .detectors import Detection, box_iou
from .landmarks import CROP_SCALE, LEFT_EYE_OUTER, RIGHT_EYE_OUTER, crop_matrix, invert_affine, warp_crop

UPRIGHT_ABOVE_DEG = 30.0  # faces rolled more than this are cropped upright
# sigma / inter-ocular at confidence 0.5, per model (each head's sigma has its own scale); chosen on
# validation faces + seeded no-face images by benchmarks/photos.py (docs/PHOTOS.md) and recorded in
# the weights' JSON ("reject_ratio", python -m core.calibrate --reject-ratio R). Shipped weights saved
# before that key existed: LEGACY_REJECT_RATIOS by stem. Neither: no confidence and no rejection.
LEGACY_REJECT_RATIOS = {"sdfl_flagship": 0.06, "sdfl_wasserstein": 0.04}
# the fallback default; shipped weights record their own (weights/sdfl_flagship.json: 0.05 since session 13)
REJECT_RATIO = LEGACY_REJECT_RATIOS["sdfl_flagship"]
DEFAULT_MIN_CONFIDENCE = 0.5
INTEROCULAR_MIN_SHARE = 0.25  # normaliser floor, share of the landmark box's larger side
DUPLICATE_IOU = 0.5
TURNS = (90.0, 180.0, 270.0)  # turn search: extra crops for faces the model doubts after pass 1
TURN_GAIN = 0.8  # a lone turned crop replaces the current one when its ratio is below this share of it
TURN_CONTEND = 1.5  # turns whose pass-1 ratio is within this factor of the best are decided by their second pass
TURN_SEARCH = "always"  # "always", "doubtful" (faces above the threshold after pass 1) or "none"
MAX_CANDIDATES = 64  # at most this many detector candidates go through the model
# stability: a kept face's landmarks move this far (mean, in inter-ocular distances) on one more
# re-crop -> not a face (real faces <= 0.016 on 80 validation faces, upright and turned; 25 of 26
# false detections on seeded no-face images >= 0.057; docs/PHOTOS.md). None: no check.
MAX_DRIFT = 0.03
RIGHT_EYE, LEFT_EYE = slice(36, 42), slice(42, 48)  # iBUG: image-left eye, image-right eye


class FaceList(list):
    """list of Face; `truncated` is True when max_faces left faces out."""
    truncated: bool = False


def roll_deg(pts: np.ndarray) -> float:
    """Roll of a 68-point face: angle of the eye-centre line (36-41 -> 42-47), degrees, y down."""
    d = pts[LEFT_EYE].mean(0) - pts[RIGHT_EYE].mean(0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def rotate(pts: np.ndarray, deg: float, centre) -> np.ndarray:
    a = np.deg2rad(deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (np.asarray(pts, np.float64) - centre) @ r.T + centre


def upright_crop(box_or_pts, angle: float, size: int, upright_above: float = UPRIGHT_ABOVE_DEG) -> np.ndarray:
    """2x3 image->crop matrix: the training-convention square around a landmark box ((4,) box) or
    around landmarks ((N, 2)), turned upright when |angle| > upright_above (box taken in the
    upright frame for landmarks; a box is rotated about its centre)."""
    a = np.asarray(box_or_pts, np.float64)
    if abs(angle) <= upright_above:
        angle = 0.0
    if a.ndim == 1:
        cx, cy, side = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2, max(a[2] - a[0], a[3] - a[1], 1.0)
    else:
        cx, cy, side = upright_box(a, angle)
    return crop_matrix(cx, cy, CROP_SCALE * side, out_size=size, angle_deg=-angle)


def upright_box(pts: np.ndarray, angle: float) -> tuple[float, float, float]:
    """(cx, cy, side) of the landmarks' box in the frame turned by -angle about their mean: centre
    mapped back to the image, side = the box's larger side (at least 1 px)."""
    a = np.asarray(pts, np.float64)
    c = a.mean(0)
    q = rotate(a, -angle, c)
    lo, hi = q.min(0), q.max(0)
    cx, cy = rotate(((lo + hi) / 2)[None], angle, c)[0]
    return float(cx), float(cy), float(max(*(hi - lo), 1.0))


def run_crops(aligner, img: np.ndarray, mats: list[np.ndarray], crop_units: bool = False) -> dict:
    """One batched model call on the crops of `mats`: pts (K,68,2) and cov (K,68,2,2) in photo
    pixels (cov None without uncertainty), adj (K,68,68), sigma (K,) median std in photo px (in
    crop units, the crop side = 1, with crop_units: the video tracker's scale); with a shape prior
    (core.shape_prior.ShapePriorRunner) also raw (K,68,2), the model's own points before it."""
    size = aligner.input_size
    crops = np.stack([warp_crop(img, m, size) for m in mats])
    out = aligner.runner(crops.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1.0 / 255.0))
    invs = np.stack([invert_affine(m) for m in mats])
    a = invs[:, :, :2]

    def to_photo(coords: np.ndarray) -> np.ndarray:
        return np.einsum("kij,knj->kni", a, coords.astype(np.float64) * size) + invs[:, None, :, 2]

    res = {"pts": to_photo(out["coords"]), "adj": out["adjacency"].astype(np.float32), "cov": None, "sigma": None}
    if "coords_raw" in out:
        res["raw"] = to_photo(out["coords_raw"])
    if "cov" in out:
        unit = out["cov"].astype(np.float64)
        c = unit * size * size
        res["cov"] = np.einsum("kij,knjl,kml->knim", a, c, a)
        scale = np.hypot(invs[:, 0, 0], invs[:, 1, 0])  # photo px per crop px
        res["sigma"] = median_sigma(unit) if crop_units else median_sigma(c) * scale
    return res


def median_sigma(cov: np.ndarray) -> np.ndarray:
    """Median over points of the standard deviation sqrt(trace(Sigma) / 2); cov (..., N, 2, 2)."""
    return np.median(np.sqrt(np.clip(np.trace(cov, axis1=-2, axis2=-1) / 2, 0, None)), axis=-1)


def error_scale(pts: np.ndarray) -> float:
    """The normaliser of a face's errors: max(inter-ocular, INTEROCULAR_MIN_SHARE x landmark-box side)
    (profiles are not punished for their short eye distance)."""
    iod = float(np.linalg.norm(pts[LEFT_EYE_OUTER] - pts[RIGHT_EYE_OUTER]))
    side = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
    return max(iod, INTEROCULAR_MIN_SHARE * side, 1e-6)


def uncertainty_ratio(pts: np.ndarray, sigma: float) -> float:
    """r = sigma / error_scale(pts)."""
    return float(sigma) / error_scale(pts)


def confidence_of(ratio: float, reject_ratio: float = REJECT_RATIO) -> float:
    """1 / (1 + (r / reject_ratio)^2): 1 for a sure face, 0.5 at the threshold."""
    if not np.isfinite(ratio):
        return 0.0
    return float(1.0 / (1.0 + (ratio / reject_ratio) ** 2))


def ratio_at(min_confidence: float, reject_ratio: float | None) -> float | None:
    """The uncertainty ratio whose confidence_of is min_confidence (reject_ratio at 0.5); None when
    nothing is rejected (no threshold, or min_confidence 0)."""
    if reject_ratio is None or min_confidence <= 0:
        return None
    return float(reject_ratio * np.sqrt(1.0 / min(min_confidence, 1.0) - 1.0))


def reject_ratio_for(weights, meta: dict) -> float | None:
    """The rejection threshold of a model: meta["reject_ratio"], else LEGACY_REJECT_RATIOS by weights stem."""
    from pathlib import Path

    r = meta.get("reject_ratio", LEGACY_REJECT_RATIOS.get(Path(str(weights)).stem))
    return None if r is None else float(r)


def max_drift_for(meta: dict) -> float:
    """The stability check's threshold of a model: meta["max_drift"] (chosen on the validation photo
    sets with benchmarks/drift.py, recorded by core.calibrate --max-drift), else MAX_DRIFT."""
    return float(meta.get("max_drift", MAX_DRIFT))


def _ratios(res, idx) -> np.ndarray:
    return np.array([uncertainty_ratio(res["pts"][i], res["sigma"][i]) if np.isfinite(res["pts"][i]).all()
                     else np.inf for i in idx])


def _take(res: dict, idx, src: dict, rows=slice(None)) -> None:
    """res[key][idx] = src[key][rows] for every output the model has (cov/sigma may be None)."""
    for key in res:
        if res[key] is not None:
            res[key][idx] = src[key][rows]


def _recrop(aligner, img, pts: np.ndarray, upright_above: float) -> tuple[dict, list[float]]:
    """Pass k+1 for landmark sets pts (K, 68, 2): the training-convention crop around each, turned
    upright when its roll exceeds upright_above; (run_crops result, crop angle per face)."""
    rolls = [roll_deg(p) for p in pts]
    angles = [a if abs(a) > upright_above else 0.0 for a in rolls]
    return run_crops(aligner, img, [upright_crop(p, a, aligner.input_size, -1.0) for p, a in zip(pts, angles)]), angles


def _turn_search(aligner, img, dets, angles, res, threshold: float, upright_above: float) -> set[int]:
    """Pass-1 faces whose ratio exceeds `threshold` are cropped again turned by 90, 180 and 270
    degrees. Turns whose pass-1 ratio is within TURN_CONTEND x the best are contenders; when there
    are several, each gets its second pass (re-crop around its landmarks) and the face keeps the
    contender whose second-pass ratio is lowest, the detector's own angle counted at TURN_GAIN x its
    ratio (a pass-1 crop on the wrong side can look as sure
    as the right one: a face upside down with its points mirrored). res is updated in place (the
    kept contender's second pass, or its pass 1 when it was the only one); returns the faces whose
    second pass is done. A face the detector found on its side, with unreliable eye keypoints, comes
    back upright this way."""
    idx = [i for i, r in zip(range(len(dets)), _ratios(res, range(len(dets)))) if r > threshold]
    if not idx:
        return set()
    size = aligner.input_size
    runs = [{k: (None if v is None else v[idx]) for k, v in res.items()}]
    for turn in TURNS:
        runs.append(run_crops(aligner, img, [upright_crop(dets[i].box, angles[i] + turn, size, -1.0) for i in idx]))
    r1 = np.stack([_ratios(rt, range(len(idx))) for rt in runs], 1)  # (faces, turns)
    contend = [np.flatnonzero(row <= TURN_CONTEND * row.min()) if np.isfinite(row.min()) else np.array([0])
               for row in r1]
    done = set()
    pairs = [(k, t) for k, ts in enumerate(contend) if len(ts) > 1 for t in ts]
    if pairs:
        r2, _ = _recrop(aligner, img, np.stack([runs[t]["pts"][k] for k, t in pairs]), upright_above)
        q2 = _ratios(r2, range(len(pairs)))
    for k, i in enumerate(idx):
        if len(contend[k]) == 1:
            t = int(contend[k][0])
            if t != 0 and r1[k, t] < TURN_GAIN * r1[k, 0]:
                _take(res, i, runs[t], k)
            continue
        rows = [j for j, (kk, _) in enumerate(pairs) if kk == k]
        favour = np.array([TURN_GAIN if pairs[j][1] == 0 else 1.0 for j in rows])  # the detector's angle wins ties
        j = rows[int(np.argmin(q2[rows] * favour))]
        _take(res, i, r2, j)
        done.add(i)
    return done


def drift(aligner, img, pts: np.ndarray, upright_above: float = UPRIGHT_ABOVE_DEG) -> np.ndarray:
    """Per landmark set of pts (K, 68, 2): how far one more re-crop moves it, mean over points in
    inter-ocular distances (inf where the re-crop fails). A real face is a fixed point of the
    crop-predict map; a texture the model turned into a face drifts."""
    if not len(pts):
        return np.zeros(0)
    res2, _ = _recrop(aligner, img, pts, upright_above)
    return np.array([np.linalg.norm(q - p, axis=1).mean() / error_scale(p) if np.isfinite(q).all() else np.inf
                     for p, q in zip(pts, res2["pts"])])


def predict_image(aligner, img: np.ndarray, dets: list[Detection], max_faces: int,
                  min_confidence: float = DEFAULT_MIN_CONFIDENCE, passes: int = 2,
                  upright_above: float = UPRIGHT_ABOVE_DEG, reject_ratio: float | None = REJECT_RATIO,
                  turn_search: str = TURN_SEARCH, max_drift: float | None = MAX_DRIFT) -> FaceList:
    """Faces (core.inference.Face) for detections on one image. See the module docstring.
    reject_ratio None: confidence None, nothing rejected (the stability check too)."""
    from .inference import Face

    dets = sorted(dets, key=lambda d: -d.score)[:MAX_CANDIDATES]
    out = FaceList()
    if not dets:
        return out
    size = aligner.input_size
    angles = [getattr(d, "angle", 0.0) for d in dets]
    angles = [a if abs(a) > upright_above else 0.0 for a in angles]
    res = run_crops(aligner, img, [upright_crop(d.box, a, size, -1.0) for d, a in zip(dets, angles)])
    done: set[int] = set()  # faces whose second pass the turn search ran
    if turn_search != "none" and res["sigma"] is not None:
        done = _turn_search(aligner, img, dets, angles, res,
                            0.0 if turn_search == "always" else reject_ratio or REJECT_RATIO, upright_above)
    for p in range(passes - 1):
        ok = [i for i in range(len(dets)) if np.isfinite(res["pts"][i]).all() and (p > 0 or i not in done)]
        if not ok:
            continue
        res2, _ = _recrop(aligner, img, res["pts"][ok], upright_above)
        _take(res, ok, res2)
    turned = [i for i in range(len(dets)) if passes > 1 and np.isfinite(res["pts"][i]).all()
              and abs(roll_deg(res["pts"][i])) > upright_above]
    if turned:  # their crops were turned by an estimated roll: one more upright re-crop converges them
        res2, _ = _recrop(aligner, img, res["pts"][turned], upright_above)
        _take(res, turned, res2)
    faces, confs = [], {}
    for i in range(len(dets)):
        p = res["pts"][i]
        if not np.isfinite(p).all():
            continue
        conf = None if res["sigma"] is None or reject_ratio is None else confidence_of(uncertainty_ratio(p, res["sigma"][i]), reject_ratio)
        if conf is None or conf >= min_confidence:
            confs[i] = conf
    if max_drift is not None and passes > 1 and reject_ratio is not None and min_confidence > 0 and confs:
        idx = list(confs)
        moved = drift(aligner, img, res["pts"][idx], upright_above)
        confs = {i: confs[i] for i, m in zip(idx, moved) if m <= max_drift}
    for i, d in enumerate(dets):
        if i not in confs:
            continue
        p, conf = res["pts"][i], confs[i]
        cov = None if res["cov"] is None else res["cov"][i].astype(np.float32)
        raw = res["raw"][i].astype(np.float32) if "raw" in res else None
        faces.append(Face(np.asarray(d.box, np.float64), float(d.score), p.astype(np.float32), cov, res["adj"][i],
                          confidence=conf, raw_landmarks=raw))
    faces.sort(key=lambda f: (-(f.confidence if f.confidence is not None else 1.0), -f.score))
    kept: list = []
    for f in faces:
        b = np.r_[f.landmarks.min(0), f.landmarks.max(0)]
        if all(box_iou(b, np.r_[k.landmarks.min(0), k.landmarks.max(0)]) <= DUPLICATE_IOU for k in kept):
            kept.append(f)
    out.extend(kept[:max_faces])
    out.truncated = len(kept) > max_faces
    return out
