"""Stability-check margin (core.image_faces.drift, the model's max_drift): how far one more re-crop
moves the landmarks of real faces and of false detections, for one model, on the choosing sets only.

    nice -n 10 python benchmarks/drift.py --data ../shared/data/faces68 [--weights W] \
        [--sets val val_rot90 photos_afw noface] [--limit 80] [--json benchmarks/results/drift.json]

Every face the image pipeline returns before the stability check (FaceAligner() defaults, rejection
by r off so that false detections reach it) is cropped once more; a face matched to an annotation
is real, an unmatched one false. Printed per set: the largest real-face drifts and, for false faces,
the smallest drifts overall and among those that r0 (the model's rejection threshold) would keep.
Never run on photos_test or noface_report (report sets)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.data import read_image  # noqa: E402
from core.detectors import MediaPipeDetector  # noqa: E402
from core.face_finder import FaceFinder  # noqa: E402
from core.image_faces import drift, predict_image  # noqa: E402
from core.inference import FaceAligner  # noqa: E402
from core.photos import match_faces  # noqa: E402
from photos import load_set, ratio  # noqa: E402

REPORT_SETS = ("photos_test", "noface_report")


def drifts(aligner: FaceAligner, finder: FaceFinder, records) -> tuple[list[float], list[tuple[float, float]]]:
    """(real-face drifts, [(drift, r) of false faces]) over the records."""
    real, false = [], []
    for rec in records:
        rgb = read_image(rec.image)
        faces = predict_image(aligner, rgb, finder.detect(rgb), 64, 0.0, 2, reject_ratio=aligner.reject_ratio,
                              max_drift=None)
        if not faces:
            continue
        pts = np.stack([f.landmarks.astype(np.float64) for f in faces])
        moved = drift(aligner, rgb, pts)
        matched = {i for i, _, _ in match_faces(list(pts), rec.faces)}
        for i, (m, f) in enumerate(zip(moved, faces)):
            (real.append(float(m)) if i in matched else false.append((float(m), ratio(f))))
    return real, false


def summary(real: list[float], false: list[tuple[float, float]], r0: float, max_drift: float) -> dict:
    d = np.sort(np.array(real))[::-1]
    f = sorted(false)
    past_r0 = [m for m, r in f if r <= r0]
    return {"real": len(d), "real_max": float(d[0]) if len(d) else None, "real_top5": d[:5].round(4).tolist(),
            "real_p99": float(np.percentile(d, 99)) if len(d) else None,
            "real_over_max_drift": int((d > max_drift).sum()),
            "false": len(f), "false_min5": [round(m, 4) for m, _ in f[:5]],
            "false_past_r0": len(past_r0), "false_past_r0_min5": [round(m, 4) for m in past_r0[:5]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--weights", default=None)
    ap.add_argument("--sets", nargs="+", default=["val", "val_rot90", "photos_afw", "noface"])
    ap.add_argument("--limit", type=int, default=80, help="validation sets: at most this many photos")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "drift.json"))
    args = ap.parse_args(argv)
    if bad := sorted(set(args.sets) & set(REPORT_SETS)):
        print(f"error: {bad} are report sets: the threshold is chosen without them", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    aligner = FaceAligner(args.weights, threads=1)
    finder = FaceFinder(mediapipe=MediaPipeDetector("auto"))
    out = {"weights": str(aligner.weights), "reject_ratio": aligner.reject_ratio, "max_drift": aligner.max_drift,
           "sets": {}}
    for s in args.sets:
        real, false = drifts(aligner, finder, load_set(s, Path(args.data), args.limit))
        out["sets"][s] = summary(real, false, aligner.reject_ratio, aligner.max_drift)
        print(s, json.dumps(out["sets"][s]), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
