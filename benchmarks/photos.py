"""Photo-protocol benchmark (core.photos): whole photos through detector -> crop -> model ->
rejection, our pipeline before/after the detection stage of issue 19 and the peers in one run.

    nice -n 10 python benchmarks/photos.py --data ../shared/data/faces68 --sets photos_afw val noface \
        [--ablation] [--no-dlib] [--limit N] [--json benchmarks/results/photos_afw.json]

Pipelines (all ours use the same model, FaceAligner defaults unless said):
- today:  MediaPipeDetector("auto") (short range; full range only when short finds nothing),
          8 faces, axis-aligned crops, no rejection (the code before issue 19; reproduces
          `core.evaluate --protocol photos` run on that code exactly)
- ours:   FaceAligner() image mode: core.face_finder.FaceFinder, upright crops, rejection
- mp_short / mp_full: one mediapipe model's boxes -> our model, axis-aligned crops, no turn
          search, no rejection
- dlib:   dlib's HOG detector (upsampled once) + its 68-point predictor on the whole photo
--ablation adds FaceFinder / crop / rejection variants (for choosing on photos_afw and val sets;
never run it on photos_test). Sets: any faces68 photos_* split, benchmarks.photo_sets.VAL_SETS,
noface (100 seeded no-face images, seed 0) and noface_report (seed 1).
Per prediction the uncertainty ratio r (core.image_faces.uncertainty_ratio) is kept for the
rejection analysis (`rejection` in the JSON: kept matched faces and false faces per threshold)."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.detectors import MediaPipeDetector  # noqa: E402
from core.face_finder import FaceFinder  # noqa: E402
from core.image_faces import predict_image, uncertainty_ratio  # noqa: E402
from core.inference import FaceAligner  # noqa: E402
from core.photos import load_photos, match_faces, score_photos  # noqa: E402
from photo_sets import VAL_SETS, noface_photos, val_photos  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SMALL_LIMIT = 20
DLIB_SKIP = ("val_small", "val_mosaic")  # HOG upsampled on 3000 x 2000 / 1280 x 1024 photos: minutes per set
NO_UPRIGHT = math.inf
RATIOS = (0.02, 0.03, 0.035, 0.04, 0.045, 0.05, 0.06, 0.08, 0.10, 0.15, 0.20, 0.30)  # rejection analysis thresholds on r


def ratio(face) -> float:
    if face.covariance is None:
        return float("nan")
    c = np.asarray(face.covariance, np.float64)
    return uncertainty_ratio(np.asarray(face.landmarks, np.float64),
                             float(np.median(np.sqrt(np.clip(np.trace(c, axis1=1, axis2=2) / 2, 0, None)))))


def ours(aligner, detector, max_faces=64, min_confidence=0.0, upright_above=None, turn_search=None):
    """Predictor: detector -> core.image_faces.predict_image -> (landmarks, r) per face."""
    kw = {"reject_ratio": aligner.reject_ratio, "max_drift": aligner.max_drift}  # as FaceAligner.predict passes them
    if turn_search is not None:
        kw["turn_search"] = turn_search
    if upright_above is not None:
        kw["upright_above"] = upright_above

    def run(rgb):
        faces = predict_image(aligner, rgb, detector.detect(rgb), max_faces, min_confidence, 2, **kw)
        return [(f.landmarks.astype(np.float64), ratio(f)) for f in faces]
    return run


def dlib_peer():
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def run(rgb):
        return [(np.array([[p.x, p.y] for p in sp(rgb, r).parts()], np.float64), float("nan")) for r in det(rgb, 1)]
    return run


def pipelines(aligner, ablation: bool, with_dlib: bool) -> dict:
    mp = MediaPipeDetector("auto")
    p = {
        "today": ours(aligner, mp, max_faces=8, upright_above=NO_UPRIGHT, turn_search="none"),
        "ours": ours(aligner, FaceFinder(mediapipe=mp), min_confidence=0.5),
        "ours_no_rejection": ours(aligner, FaceFinder(mediapipe=mp)),
        "mp_short": ours(aligner, MediaPipeDetector("short"), upright_above=NO_UPRIGHT, turn_search="none"),
        "mp_full": ours(aligner, MediaPipeDetector("full"), upright_above=NO_UPRIGHT, turn_search="none"),
    }
    if with_dlib and (d := dlib_peer()) is not None:
        p["dlib"] = d
    if ablation:
        for name, cfg in {"short+full only": dict(tile_levels=0, pad=0, rotations="none"),
                          "tiles 0": dict(tile_levels=0), "tiles 1": dict(tile_levels=1),
                          "tiles 3": dict(tile_levels=3), "no pad": dict(pad=0.0),
                          "rot none": dict(rotations="none"), "rot always": dict(rotations="always"),
                          "min_score 0.4": dict(min_score=0.4), "min_score 0.6": dict(min_score=0.6)}.items():
            mps = MediaPipeDetector("auto", min_score=cfg.get("min_score", 0.5))
            p[f"finder {name}"] = ours(aligner, FaceFinder(cfg, mediapipe=mps))
        ff = FaceFinder(mediapipe=mp)
        p["upright never"] = ours(aligner, ff, upright_above=NO_UPRIGHT)
        p["upright always"] = ours(aligner, ff, upright_above=0.0)
        p["upright above 15"] = ours(aligner, ff, upright_above=15.0)
        p["upright above 45"] = ours(aligner, ff, upright_above=45.0)
        p["turn doubtful"] = ours(aligner, ff, turn_search="doubtful")
        p["turn none"] = ours(aligner, ff, turn_search="none")
    return p


def load_set(name: str, data: Path, limit: int | None):
    """--limit applies to the validation sets only (val_mosaic: faces used); photo splits and the
    100 no-face images always run whole."""
    if name == "noface":
        return noface_photos(100, seed=0)
    if name == "noface_report":
        return noface_photos(100, seed=1)
    if name == "val_small":  # 3000 x 2000 photos: at most SMALL_LIMIT
        return val_photos(data, name, min(limit or SMALL_LIMIT, SMALL_LIMIT))
    if name in VAL_SETS:
        return val_photos(data, name, limit)
    return load_photos(data / f"{name}.jsonl")


def run_set(predict, records) -> dict:
    from core.data import read_image

    results, ratios, t = [], [], 0.0
    for r in records:
        rgb = read_image(r.image)
        t0 = time.perf_counter()
        out = predict(rgb)
        t += time.perf_counter() - t0
        pred = [p for p, _ in out]
        m = {i for i, _, _ in match_faces(pred, r.faces)}
        ratios += [(q, i in m) for i, (_, q) in enumerate(out)]
        results.append((pred, r.faces))
    res = score_photos(results)
    res["seconds_per_photo"] = t / max(len(records), 1)
    res["photos_with_prediction"] = int(sum(bool(p) for p, _ in results))
    q = np.array([a for a, _ in ratios], np.float64)
    ok = np.array([b for _, b in ratios], bool)
    if len(q) and np.isfinite(q).any():
        res["rejection"] = {f"{th:.2f}": {"matched_kept": int((ok & (q <= th)).sum()), "matched": int(ok.sum()),
                                          "unmatched_kept": int((~ok & (q <= th)).sum()), "unmatched": int((~ok).sum())}
                            for th in RATIOS}
        res["ratio_matched_median"] = float(np.median(q[ok])) if ok.any() else None
        res["ratio_unmatched_median"] = float(np.median(q[~ok])) if (~ok).any() else None
    return res


def crop_reference(weights, data: Path, split: str, records) -> dict | None:
    """The crop protocol (core.evaluate: ground-truth-centred crops) on the same annotated faces as
    the photo protocol scores (the photo split's crops, misplaced annotations left out as there);
    None when the photos' crops are not a held-out faces68 split (photos_afw's are in train)."""
    from core.checkpoint import load_model
    from core.data import load_jsonl
    from core.evaluate import predict_records
    from core.metrics import nme
    from core.shape_prior import prior_for

    first = json.loads((data / f"{split}.jsonl").read_text().splitlines()[0])
    crops = data / f"{first.get('split_of_crops', '')}.jsonl"
    if first.get("split_of_crops") in (None, "train") or not crops.is_file():
        return None
    keep = {f"{r.source}_{i}" for r in records for i in r.ids}
    recs = [r for r in load_jsonl(crops) if Path(r.image).stem in keep]
    model, meta = load_model(weights)
    pred, gt, _ = predict_records(model, recs, prior=prior_for(weights, meta))  # as FaceAligner and core.evaluate
    e = nme(pred, gt)
    return {"faces": len(recs), "nme": float(e.mean()), "split": crops.stem}


def line(name: str, r: dict) -> str:
    if r["faces"] == 0:
        return f"{name:28s} photos {r['photos']:4d}  false faces {r['predicted']:4d} on {r['photos_with_prediction']} photos  {r['seconds_per_photo'] * 1000:7.0f} ms/photo"
    return (f"{name:28s} recall {r['recall']:7.2%}  NME {r['nme']:.2%}  FR10 {r['fr10']:6.2%}  AUC10 {r['auc10']:.3f}  "
            f"FR10+miss {r['fr10_with_misses']:6.2%}  NME+miss {r['nme_with_misses']:.2%}  unmatched {r['unmatched']:4d}  "
            f"{r['seconds_per_photo'] * 1000:6.0f} ms/photo")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--sets", nargs="+", default=["photos_afw"])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--only", nargs="*", help="run only these pipelines")
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--crop-reference", action="store_true",
                    help="also score the crop protocol on the same annotated faces (photo splits whose crops are a split)")
    args = ap.parse_args(argv)
    if args.ablation and "photos_test" in args.sets:
        print("error: ablations choose the pipeline: not on photos_test (report only)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    aligner = FaceAligner(args.weights, threads=1)
    pipes = pipelines(aligner, args.ablation, not args.no_dlib)
    if args.only:
        pipes = {k: v for k, v in pipes.items() if k in args.only}
    out = {"weights": str(aligner.weights), "runtime": f"{aligner.backend} {aligner.provider}",
           "reject_ratio": aligner.reject_ratio, "sets": {}}
    for s in args.sets:
        records = load_set(s, Path(args.data), args.limit)
        excluded = sum(len(r.excluded) for r in records)
        print(f"== {s}: {len(records)} photos, {sum(len(r.faces) for r in records)} faces"
              + (f" ({excluded} misplaced annotations excluded: core.photos.load_photos)" if excluded else ""), flush=True)
        out["sets"][s] = {}
        out.setdefault("excluded_annotations", {})[s] = excluded
        if args.crop_reference and s.startswith("photos_") and (ref := crop_reference(aligner.weights, Path(args.data), s, records)):
            out.setdefault("crop_reference", {})[s] = ref
            print(f"{'crop protocol, same faces':28s} faces {ref['faces']}  NME {ref['nme']:.2%}  ({ref['split']} crops)", flush=True)
        for name, pred in pipes.items():
            if name == "dlib" and s in DLIB_SKIP:
                continue
            r = run_set(pred, records)
            out["sets"][s][name] = {k: v for k, v in r.items() if k != "nme_per_face"}
            print(line(name, r), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
