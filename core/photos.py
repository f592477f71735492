"""Photo protocol: the whole pipeline (detector -> crop -> model -> rejection) on whole photos with
every annotated face (faces68 `photos_*.jsonl`), scored against the annotations.

    python -m core.evaluate --data ../shared/data/faces68 --split photos_test --protocol photos --json out.json

Matching (`match_faces`): each prediction and each annotation is reduced to its landmark box
(bounding box of the 68 points); pairs are taken greedily, highest box IoU first, each prediction
and annotation at most once, and only while IoU >= MATCH_IOU. (Greedy-by-IoU equals the optimal
assignment whenever every face overlaps at most one candidate above the threshold, as in these
photos.) Reported:
- recall: matched annotations / annotations;
- nme, fr10, auc10 over matched faces (inter-ocular NME, as core.metrics);
- fr10_with_misses, auc10_with_misses: every missed annotation counts as a failure (NME = inf);
  nme_with_misses: mean NME where a missed face counts MISS_NME (the failure threshold);
- excluded: annotations the file places on the wrong spot, left out of every figure (below);
- unmatched: predictions matching no annotation. Not errors: annotations do not cover every face
  of a photo (AFW annotates only some people); they are listed per photo for inspection.

Placement check (`load_photos`): a record names the split holding its faces' crops
(`split_of_crops`) and its scale from the original photo. Each face's crop record says which
original image it was cut from (`original.size`); when that size, scaled, is not the photo's
size, the face was labelled on another original (HELEN ships one per face, cropped and scaled
differently) and the file's landmarks for it sit in the wrong place: 32 of photos_test's 554
annotations, the second to fifth faces of 22 HELEN group photos, are such (some land on another
person's face, some beside one). They are excluded: they are not errors of any method, and scoring
them would charge a correct prediction for the label's offset."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .data import DataError, read_image
from .metrics import FAILURE_THRESHOLDS, auc, failure_rate, nme

MATCH_IOU = 0.3  # a prediction finds an annotated face when their landmark boxes overlap this much
MISS_NME = 0.10  # nme_with_misses: a missed face counts the failure threshold
PLACEMENT_TOLERANCE_PX = 2.0  # a face's original image, scaled, matches the photo's size within this
SIZE_BINS = (0, 24, 40, 64, 128, 256, 10 ** 9)  # recall_by_size: landmark-box larger side, px


@dataclass
class PhotoRecord:
    image: Path | np.ndarray  # file, or the RGB photo itself (generated validation photos)
    photo: str
    source: str
    faces: list[np.ndarray]  # (68, 2) per annotated face, stored-image pixels
    ids: list[str]
    excluded: tuple[str, ...] = ()  # ids of annotations the file misplaces (placement check), left out


def load_photos(path: str | Path, check_placement: bool = True) -> list[PhotoRecord]:
    """Read a faces68 whole-photo jsonl (image paths resolved against its folder). With
    check_placement, annotations that fail the placement check (module docstring) are moved from
    `faces` to `excluded`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"photo split not found: {path}")
    out, crop_sizes = [], {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
            faces = [np.asarray(f["landmarks"], np.float64) for f in o["faces"]]
            ids = [str(f.get("id", i)) for i, f in enumerate(o["faces"])]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n}: not a whole-photo record ({e})") from e
        if any(f.shape != (68, 2) for f in faces):
            raise DataError(f"{path}:{n}: landmarks must be 68 (x, y) pairs")
        split, bad = o.get("split_of_crops"), set()
        if check_placement and split and "scale_from_original" in o and "size" in o:
            if split not in crop_sizes:
                crop_sizes[split] = _original_sizes(path.parent / f"{split}.jsonl")
            bad = misplaced(o, crop_sizes[split])
        keep = [k for k, i in enumerate(ids) if i not in bad]
        out.append(PhotoRecord(path.parent / o["image"], str(o.get("photo", n)), str(o.get("source", "")),
                               [faces[k] for k in keep], [ids[k] for k in keep], tuple(i for i in ids if i in bad)))
    return out


def _original_sizes(crops: Path) -> dict[str, tuple[float, float]]:
    """Crop-record stem (e.g. "helen_30427236_2") -> its original image's (w, h); {} when absent."""
    if not crops.is_file():
        return {}
    sizes = {}
    for line in crops.read_text().splitlines():
        if line.strip():
            o = json.loads(line)
            if "original" in o:
                sizes[Path(o["image"]).stem] = tuple(map(float, o["original"]["size"]))
    return sizes


def misplaced(photo: dict, sizes: dict[str, tuple[float, float]]) -> set[str]:
    """Ids of a whole-photo record's faces whose crop came from another original: its size x the
    photo's scale_from_original is not the photo's size (within PLACEMENT_TOLERANCE_PX). Faces
    without a crop record are kept (nothing to check)."""
    w, h = map(float, photo["size"])
    s = float(photo["scale_from_original"])
    bad = set()
    for f in photo["faces"]:
        size = sizes.get(f"{photo.get('source', '')}_{f.get('id')}")
        if size is not None and max(abs(size[0] * s - w), abs(size[1] * s - h)) > PLACEMENT_TOLERANCE_PX:
            bad.add(str(f["id"]))
    return bad


def landmark_box(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, np.float64)
    return np.r_[p.min(0), p.max(0)]


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_faces(pred: list[np.ndarray], gt: list[np.ndarray], min_iou: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of predicted to annotated landmark sets by landmark-box IoU:
    (pred index, gt index, IoU) pairs, highest IoU first, IoU >= min_iou."""
    pb, gb = [landmark_box(p) for p in pred], [landmark_box(g) for g in gt]
    pairs = sorted(((box_iou(a, b), i, j) for i, a in enumerate(pb) for j, b in enumerate(gb)), reverse=True)
    used_p, used_g, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        out.append((i, j, iou))
    return out


def score_photos(results: list[tuple[list[np.ndarray], list[np.ndarray]]], threshold: float = 0.10) -> dict:
    """results: per photo (predicted landmark sets, annotated landmark sets). Metrics as fractions."""
    matched_nme, n_gt, n_pred, unmatched, per_photo, sizes = [], 0, 0, 0, [], []
    for pred, gt in results:
        m = match_faces(pred, gt)
        found = {j for _, j, _ in m}
        sizes += [(float(np.ptp(np.asarray(g), 0).max()), j in found) for j, g in enumerate(gt)]
        e = nme(np.stack([pred[i] for i, _, _ in m]), np.stack([gt[j] for _, j, _ in m])) if m else np.zeros(0)
        matched_nme += e.tolist()
        n_gt, n_pred, unmatched = n_gt + len(gt), n_pred + len(pred), unmatched + len(pred) - len(m)
        per_photo.append({"faces": len(gt), "predicted": len(pred), "matched": len(m),
                          "nme": [round(float(v), 5) for v in e]})
    me = np.asarray(matched_nme)
    misses = n_gt - len(me)
    with_miss = np.r_[me, np.full(misses, np.inf)]
    res = {"photos": len(results), "faces": n_gt, "predicted": n_pred, "matched": int(len(me)),
           "recall": len(me) / max(n_gt, 1), "missed": int(misses), "unmatched": int(unmatched),
           "nme": float(me.mean()) if len(me) else float("nan"),
           "nme_median": float(np.median(me)) if len(me) else float("nan"),
           "fr10": failure_rate(me, threshold) if len(me) else float("nan"),
           "auc10": auc(me, threshold) if len(me) else 0.0,
           "nme_with_misses": float(np.r_[me, np.full(misses, MISS_NME)].mean()) if n_gt else float("nan"),
           "fr10_with_misses": failure_rate(with_miss, threshold) if n_gt else float("nan"),
           "auc10_with_misses": auc(with_miss, threshold) if n_gt else 0.0,
           "failure_rates_with_misses": {f"{t:.2f}": failure_rate(with_miss, t) for t in FAILURE_THRESHOLDS},
           "recall_by_size": recall_by_size(sizes), "match_iou": MATCH_IOU, "miss_nme": MISS_NME, "nme_per_face": me.tolist(), "per_photo": per_photo}
    return res


def recall_by_size(sizes: list[tuple[float, bool]]) -> dict:
    """{"lo-hi px": [found, faces]} over SIZE_BINS of the annotated landmark box's larger side."""
    out = {}
    for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
        sel = [f for s, f in sizes if lo <= s < hi]
        if sel:
            out[f"{lo}-{hi if hi < 10 ** 9 else 'inf'}"] = [int(sum(sel)), len(sel)]
    return out


Predictor = Callable[[np.ndarray], list[np.ndarray]]  # RGB photo -> (68, 2) landmarks per face found


def run_photos(predict: Predictor, records: list[PhotoRecord], progress: bool = False) -> tuple[dict, list]:
    """Run `predict` on every photo; (score_photos result + seconds per photo, raw per-photo output)."""
    results, t = [], 0.0
    for k, r in enumerate(records):
        rgb = read_image(r.image)
        t0 = time.perf_counter()
        pred = [np.asarray(p, np.float64) for p in predict(rgb)]
        t += time.perf_counter() - t0
        results.append((pred, r.faces))
        if progress and (k + 1) % 50 == 0:
            print(f"  {k + 1}/{len(records)} photos", flush=True)
    res = score_photos(results)
    for pp, r in zip(res["per_photo"], records):
        pp["photo"] = r.photo
        if r.excluded:
            pp["excluded"] = list(r.excluded)
    res["excluded"] = int(sum(len(r.excluded) for r in records))
    res["seconds_per_photo"] = t / max(len(records), 1)
    return res, results


def aligner_predictor(aligner) -> Predictor:
    """A FaceAligner (image mode) as a photo-protocol predictor."""
    return lambda rgb: [f.landmarks for f in aligner.predict(rgb)]


def evaluate_photos(weights=None, data: str | Path = "", split: str = "photos_test", device: str = "cpu",
                    max_faces: int | None = None) -> dict:
    """The photo protocol with FaceAligner defaults (its detection stage and rejection)."""
    from .inference import FaceAligner

    kw = {} if max_faces is None else {"max_faces": max_faces}
    aligner = FaceAligner(weights, device=device, **kw)
    records = load_photos(Path(data) / f"{split}.jsonl")
    res, _ = run_photos(aligner_predictor(aligner), records)
    res.update({"split": split, "data": str(data), "protocol": "photos", "weights": str(aligner.weights),
                "runtime": f"{aligner.backend} {aligner.provider}", "max_faces": aligner.max_faces})
    return res
