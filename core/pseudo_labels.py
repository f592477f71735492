"""Pseudo-labels for unlabelled photos from a teacher with a mirror ensemble (docs/FLAGSHIP.md).

    python -m core.pseudo_labels --data ../shared/data/faces68 --split unlabelled --out runs/pseudo/unlabelled.jsonl

The teacher (the package default unless --weights) runs the whole image pipeline on each photo and on its
mirror image. The face nearest the photo centre is kept when both runs found it and

    flip disagreement  e = mean_i |p_i - m(q)_i| / d   <= max_flip_error
    uncertainty        r = median_i sigma_i / d        <= max_sigma_ratio   (core.image_faces.uncertainty_ratio)

with p the prediction, q the mirror image's prediction mapped back (m: x -> W - 1 - x, points permuted by
MIRROR_PERMUTATION), sigma_i the calibrated standard deviation and d the inter-ocular distance. The label is
(p + m(q)) / 2. Records point at the images by absolute path, so the file can live outside the data folder;
a training config adds it with `data.pseudo_labels` (weight `data.pseudo_weight`).

With --split of labelled faces (e.g. the validation split, `--split train --val-only`) the report also gives
the NME of kept and dropped faces against their labels: how the thresholds separate good labels from bad."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ConfigError, DataConfig
from .data import DataError, Record, load_jsonl, read_image, split_by_photo, train_val_split
from .image_faces import median_sigma, uncertainty_ratio
from .landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from .metrics import nme
from .mirror import mirror_points

MAX_FLIP_ERROR = 0.025  # mean mirror disagreement / inter-ocular (validation: 20 faces, the one at 9.6 % NME had 0.039)
MAX_SIGMA_RATIO = 0.03  # median predicted sigma / inter-ocular (the image pipeline rejects at 0.06)


@dataclass
class Label:
    points: np.ndarray  # (68, 2) mean of the two predictions, image pixels
    flip_error: float
    sigma_ratio: float

    def sure(self, max_flip_error: float = MAX_FLIP_ERROR, max_sigma_ratio: float = MAX_SIGMA_RATIO) -> bool:
        return self.flip_error <= max_flip_error and self.sigma_ratio <= max_sigma_ratio


def _central(faces, shape) -> object | None:
    if not faces:
        return None
    centre = np.array([shape[1], shape[0]], np.float64) / 2
    return min(faces, key=lambda f: np.linalg.norm(np.asarray(f.landmarks, np.float64).mean(0) - centre))


def label_image(aligner, img: np.ndarray) -> Label | None:
    """The mirror-ensemble label of the face nearest the centre of `img`, or None when either run misses it."""
    a = _central(aligner.predict(img), img.shape)
    b = _central(aligner.predict(np.ascontiguousarray(img[:, ::-1])), img.shape)
    if a is None or b is None or a.covariance is None:
        return None
    p, q = np.asarray(a.landmarks, np.float64), mirror_points(np.asarray(b.landmarks, np.float64), img.shape[1] - 1)
    d = max(float(np.linalg.norm(p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER])), 1e-6)
    sigma = float(median_sigma(np.asarray(a.covariance, np.float64)))
    return Label((p + q) / 2, float(np.linalg.norm(p - q, axis=1).mean() / d), uncertainty_ratio(p, sigma))


def label_records(aligner, records: list[Record], max_flip_error: float, max_sigma_ratio: float,
                  progress=None) -> tuple[list[dict], dict]:
    """(kept records as JSON dicts, summary); the summary has kept/dropped NME when records have labels."""
    kept, errs = [], {"kept": [], "dropped": []}
    missed = 0
    for i, r in enumerate(records):
        lab = label_image(aligner, read_image(r.image))
        if lab is None:
            missed += 1
            continue
        ok = lab.sure(max_flip_error, max_sigma_ratio)
        if r.landmarks is not None:
            errs["kept" if ok else "dropped"].append(float(nme(lab.points[None], r.landmarks[None])[0]))
        if ok:
            kept.append({"image": str(Path(r.image).resolve()), "photo": r.photo, "source": f"pseudo:{r.source}",
                         "landmarks": np.round(lab.points, 3).tolist(), "flip_error": round(lab.flip_error, 5),
                         "sigma_ratio": round(lab.sigma_ratio, 5)})
        if progress:
            progress(i + 1, len(records), len(kept))
    summary = {"faces": len(records), "kept": len(kept), "no_face": missed,
               "max_flip_error": max_flip_error, "max_sigma_ratio": max_sigma_ratio}
    for k, v in errs.items():
        if v:
            summary[f"nme_{k}"] = {"n": len(v), "mean": float(np.mean(v)), "max": float(np.max(v))}
    return kept, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="faces68 folder")
    ap.add_argument("--split", default="unlabelled")
    ap.add_argument("--val-only", action="store_true", help="with --split train: the validation split held out by photo")
    ap.add_argument("--out", required=True, help="JSON lines of the kept labels (summary beside it, .summary.json)")
    ap.add_argument("--weights", default=None, help="teacher (default: the package default)")
    ap.add_argument("--max-flip-error", type=float, default=MAX_FLIP_ERROR)
    ap.add_argument("--max-sigma-ratio", type=float, default=MAX_SIGMA_RATIO)
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="label only the identities that a training config's data.extra_holdout of the same share "
                         "keeps in training (split by `photo`, seed 0), so benchmarks/unseen.py --holdout stays unseen")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)
    from .inference import FaceAligner
    try:
        if args.val_only:
            records = train_val_split(DataConfig(root=args.data, train_split=args.split))[1]
        else:
            records = load_jsonl(Path(args.data) / f"{args.split}.jsonl", require_landmarks=False)
            if not 0.0 <= args.holdout < 1.0:
                raise ValueError(f"--holdout must be in [0, 1), got {args.holdout}")
            records = split_by_photo(records, args.holdout, DataConfig.split_seed)[0] if args.holdout else records
        aligner = FaceAligner(args.weights)
    except (DataError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = records[: args.limit] if args.limit else records

    def progress(i, n, k):
        if i % 100 == 0 or i == n:
            print(f"{i}/{n} photos, {k} kept", flush=True)

    kept, summary = label_records(aligner, records, args.max_flip_error, args.max_sigma_ratio, progress)
    summary["teacher"] = str(aligner.weights)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(k) + "\n" for k in kept))
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
