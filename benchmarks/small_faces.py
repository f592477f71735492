"""NME against face size on the validation split: each validation photo is shrunk (INTER_AREA) until
the landmark box's larger side is S px, then scored with the default crop protocol
(core.evaluate.predict_records: warp_crop enlarges it to the model input, as the app does).
Validation only (the split held out of train by photo, seed 0), so it may choose between checkpoints.

    nice -n 10 python benchmarks/small_faces.py CHECKPOINT [CHECKPOINT ...] [--sides 100 60 40]

S = native keeps the stored size (landmark box ~205 px: every training crop is shrunk)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import load_model  # noqa: E402
from core.config import DataConfig  # noqa: E402
from core.data import Record, read_image, train_val_split  # noqa: E402
from core.evaluate import predict_records  # noqa: E402
from core.landmarks import landmark_box  # noqa: E402
from core.metrics import nme  # noqa: E402

SIDES = (100, 60, 40)


def shrunk(img: np.ndarray, gt: np.ndarray, side: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its landmarks scaled so the landmark box's larger side is `side` px (None: as stored)."""
    if side is None:
        return img, gt
    b = landmark_box(gt)
    f = side / max(b[2] - b[0], b[3] - b[1])
    size = (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), (gt + 0.5) * f - 0.5


def nme_at(model, records: list[Record], side: float | None) -> float:
    """Mean NME of the crop protocol (core.evaluate.predict_records) on the records' faces at `side`."""
    small = [Record(*shrunk(read_image(r.image), r.landmarks.astype(np.float64), side), r.photo, r.source)
             for r in records]
    pred, gt, _ = predict_records(model, small)
    return float(nme(pred, gt).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--sides", type=float, nargs="+", default=list(SIDES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    _, val = train_val_split(DataConfig(), args.data)
    faces = [Record(read_image(r.image), r.landmarks, r.photo, r.source) for r in val]  # decoded once
    sides = [None, *args.sides]
    print(f"{len(faces)} validation faces; NME at landmark-box side (px)")
    print("| checkpoint | " + " | ".join("native" if s is None else f"{s:g}" for s in sides) + " |")
    print("|---|" + "---|" * len(sides))
    for path in args.checkpoints:
        model, _ = load_model(path)
        print(f"| {path} | " + " | ".join(f"{nme_at(model, faces, s):.2%}" for s in sides) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
