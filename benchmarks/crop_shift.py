"""How much of a model's error depends on where the crop falls: validation faces (the split held out
from `train`; never `test`) cropped around the ground-truth landmark box as the protocol does, then

- one pass (the protocol), two and three passes (re-cropped around the previous pass's landmarks,
  as image and video mode do), the mean of the first two;
- the mean over that crop and crops shifted by --shift of the box side left, right, up and down.

    python benchmarks/crop_shift.py --data ../shared/data/faces68 [--weights W] [--precision int8] [--shift 0.04]

Prints the NME (inter-ocular, %) of each. Validation only: the figures are for choosing, not reporting."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import DEFAULT_WEIGHTS  # noqa: E402
from core.config import DataConfig  # noqa: E402
from core.data import read_image, train_val_split  # noqa: E402
from core.inference import FaceAligner  # noqa: E402
from core.metrics import landmark_errors  # noqa: E402

SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    ap.add_argument("--shift", type=float, default=0.04, help="share of the landmark box side")
    args = ap.parse_args(argv)
    _, val = train_val_split(DataConfig(), args.data)
    al = FaceAligner(args.weights, detector="none", backend="onnx", threads=1, precision=args.precision)

    def run(img, box, passes):
        al.refine_passes = passes
        return al.predict(img, boxes=[box])[0].landmarks.astype(np.float64)

    preds: dict[str, list] = {k: [] for k in ("1 pass", "2 passes", "3 passes", "mean of passes 1-2",
                                               f"mean of 5 crops (shift {args.shift:g})")}
    gts = []
    for r in val:
        img, g = read_image(r.image), np.asarray(r.landmarks, np.float64)
        box = np.r_[g.min(0), g.max(0)]
        side = box[2:] - box[:2]
        p1, p2, p3 = (run(img, box, k) for k in (1, 2, 3))
        shifted = [run(img, box + np.r_[d, d] * args.shift * np.r_[side, side], 1) for d in map(np.array, SHIFTS)]
        for key, p in zip(preds, (p1, p2, p3, (p1 + p2) / 2, (p1 + sum(shifted)) / (1 + len(shifted)))):
            preds[key].append(p)
        gts.append(g)
    gt = np.stack(gts)
    print(f"{len(val)} validation faces, {Path(args.weights).name} ({args.precision})")
    for key, p in preds.items():
        print(f"{key:32s} NME {100 * landmark_errors(np.stack(p), gt).mean():.3f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
