"""Fit the mapping detector box -> landmark box (core.detectors.*_CALIBRATION) on faces68 *train*.

    nice python benchmarks/calibrate_detector.py [--data ../shared/data/faces68] [--limit N] [--json OUT]

For every training face the raw boxes of mediapipe short range, mediapipe full range and the Haar
cascade are matched to the ground-truth landmark box (highest IoU, at least MATCH_IOU), and

    dx = (lm_cx - det_cx) / det_w,  dy = (lm_cy - det_cy) / det_h,  sw = lm_w / det_w,  sh = lm_h / det_h

are summarised by their medians (robust to the odd wrong match); (sw, sh) are then rescaled by one
factor so that the larger side (which sets the crop side) is unbiased. Printed with them: the matched
share, the spread (MAD) and the first-pass crop error after calibration (centre offset and side
ratio of the resulting crop against the canonical crop). Never run it on test.jsonl.

With --eval-weights W it also reports the landmark NME (inter-ocular) on the validation split of
train (split_by_photo, DataConfig defaults) for: one pass from the calibrated detector box, the
two-pass refinement (FaceAligner's default), a third pass, and the oracle canonical crop."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data import load_jsonl, read_image  # noqa: E402
from core.detectors import BoxCalibration, HaarDetector, MediaPipeDetector, box_iou  # noqa: E402
from core.landmarks import crop_from_box, landmark_box  # noqa: E402

MATCH_IOU = 0.2
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faces68"


def relation(det: np.ndarray, lm: np.ndarray) -> np.ndarray:
    w, h = det[2] - det[0], det[3] - det[1]
    return np.array([((lm[0] + lm[2]) - (det[0] + det[2])) / 2 / w, ((lm[1] + lm[3]) - (det[1] + det[3])) / 2 / h,
                     (lm[2] - lm[0]) / w, (lm[3] - lm[1]) / h])


def crop_error(cal: BoxCalibration, det: np.ndarray, lm: np.ndarray) -> tuple[float, float]:
    """(centre offset / canonical side, |log(side / canonical side)|) of the first-pass crop."""
    cx, cy, s = crop_from_box(cal.apply(det))
    gx, gy, gs = crop_from_box(lm)
    return float(np.hypot(cx - gx, cy - gy) / gs), float(abs(np.log(s / gs)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="faces68 folder (train.jsonl is read)")
    ap.add_argument("--limit", type=int, default=0, help="use the first N faces only (0 = all)")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--eval-weights", default="", help="also compare 1/2/3 passes on the val split")
    ap.add_argument("--eval-limit", type=int, default=0, help="at most N validation faces (0 = all)")
    args = ap.parse_args(argv)
    if args.eval_weights:
        return evaluate_passes(Path(args.data), args.eval_weights, args.eval_limit)
    split = Path(args.data) / "train.jsonl"
    records = load_jsonl(split)
    if args.limit:
        records = records[: args.limit]
    mp_det, haar = MediaPipeDetector(), HaarDetector()
    detectors = {"mediapipe_short": lambda im: mp_det.detect_raw(im, 0),
                 "mediapipe_full": lambda im: mp_det.detect_raw(im, 1),
                 "haar": haar.detect_raw}
    pairs: dict[str, list] = {k: [] for k in detectors}
    t0 = time.time()
    for n, r in enumerate(records, 1):
        img = read_image(r.image)
        lm = np.array(landmark_box(r.landmarks))
        for name, fn in detectors.items():
            cands = [(box_iou(b, lm), b) for b, _ in fn(img)]
            if cands:
                iou, b = max(cands, key=lambda c: c[0])
                if iou >= MATCH_IOU:
                    pairs[name].append((b, lm))
        if n % 200 == 0:
            print(f"{n}/{len(records)} faces, {time.time() - t0:.0f} s", file=sys.stderr)
    results = {"data": str(split), "faces": len(records)}
    for name, pr in pairs.items():
        if not pr:
            results[name] = {"matched": 0}
            continue
        rel = np.stack([relation(b, lm) for b, lm in pr])
        med = np.median(rel, 0)
        mad = np.median(np.abs(rel - med), 0)
        # the crop side follows the larger box side: rescale (sw, sh) so that it is unbiased
        dets = np.stack([b for b, _ in pr])
        lms = np.stack([lm for _, lm in pr])
        est = np.maximum(med[2] * (dets[:, 2] - dets[:, 0]), med[3] * (dets[:, 3] - dets[:, 1]))
        k = float(np.median(np.maximum(lms[:, 2] - lms[:, 0], lms[:, 3] - lms[:, 1]) / est))
        cal = BoxCalibration(*(round(float(v), 4) for v in (med[0], med[1], med[2] * k, med[3] * k)))
        errs = np.array([crop_error(cal, b, lm) for b, lm in pr])
        raw_errs = np.array([crop_error(BoxCalibration(), b, lm) for b, lm in pr])
        results[name] = {"matched": len(pr), "dx": cal.dx, "dy": cal.dy, "sw": cal.sw, "sh": cal.sh,
                         "mad": [round(float(v), 4) for v in mad],
                         "crop_centre_err_median": round(float(np.median(errs[:, 0])), 4),
                         "crop_centre_err_p90": round(float(np.percentile(errs[:, 0], 90)), 4),
                         "crop_log_side_err_median": round(float(np.median(errs[:, 1])), 4),
                         "uncalibrated_centre_err_median": round(float(np.median(raw_errs[:, 0])), 4),
                         "uncalibrated_log_side_err_median": round(float(np.median(raw_errs[:, 1])), 4)}
    results["seconds"] = round(time.time() - t0, 1)
    print(f"faces68 train: {len(records)} faces ({split})")
    print(f"{'detector':16s} {'matched':>8s} {'dx':>8s} {'dy':>8s} {'sw':>8s} {'sh':>8s}  crop err (centre/side, "
          "median; p90)  uncalibrated")
    for name in detectors:
        r = results[name]
        if not r["matched"]:
            print(f"{name:16s} {0:8d}")
            continue
        print(f"{name:16s} {r['matched']:8d} {r['dx']:8.4f} {r['dy']:8.4f} {r['sw']:8.4f} {r['sh']:8.4f}  "
              f"{r['crop_centre_err_median']:.4f} / {r['crop_log_side_err_median']:.4f}; {r['crop_centre_err_p90']:.4f}"
              f"   {r['uncalibrated_centre_err_median']:.4f} / {r['uncalibrated_log_side_err_median']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def evaluate_passes(data: Path, weights: str, limit: int = 0) -> dict:
    """NME of 1, 2 and 3 model passes from the detector box, and of the canonical crop, on the
    validation split of train (DataConfig defaults)."""
    from core.config import DataConfig
    from core.data import train_val_split
    from core.inference import FaceAligner

    _, val = train_val_split(DataConfig(), data)
    val = val[:limit] if limit else val
    fa = FaceAligner(weights, backend="torch")
    errs: dict[str, list] = {"pass1": [], "pass2": [], "pass3": [], "canonical_crop": []}
    missed = 0

    def nme(p, g):
        return float(np.linalg.norm(p - g, axis=1).mean() / np.linalg.norm(g[36] - g[45]))

    for r in val:
        img = read_image(r.image)
        lm = np.array(landmark_box(r.landmarks))
        dets = fa._detect(img)
        if not dets or max(box_iou(d.box, lm) for d in dets) < MATCH_IOU:
            missed += 1
            continue
        box = max(dets, key=lambda d: box_iou(d.box, lm)).box
        for k in ("pass1", "pass2", "pass3"):
            p = fa._run(img, [box])["pts"][0]
            errs[k].append(nme(p, r.landmarks))
            box = np.r_[p.min(0), p.max(0)]
        errs["canonical_crop"].append(nme(fa._run(img, [lm])["pts"][0], r.landmarks))
    out = {"weights": weights, "val_faces": len(val), "missed": missed,
           **{k: {"mean_nme": round(100 * float(np.mean(v)), 3), "median_nme": round(100 * float(np.median(v)), 3)}
              for k, v in errs.items() if v}}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
