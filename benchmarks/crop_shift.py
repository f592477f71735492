"""How much of a model's error depends on where the crop falls: validation faces (the split held out
from `train`; never `test`) cropped around the ground-truth landmark box as the protocol does, then

- one pass (the protocol), two and three passes (re-cropped around the previous pass's landmarks,
  as image and video mode do), the mean of the first two;
- the mean over that crop and crops shifted by --shift of the box side left, right, up and down;
- with --grid N: the crop moved by k / N of a decoder cell (HEATMAP_STRIDE crop pixels) in x and y,
  k = 0..N-1: NME and mean error per sub-cell phase, and of the mean over the N x N crops;
- with --photos SETS (benchmarks.photo_sets.VAL_SETS, e.g. val,val_rot90,val_small): image mode on
  those whole validation photos, its final landmarks (pass 2) against the mean of pass 1 and pass 2.

    python benchmarks/crop_shift.py --data ../shared/data/faces68 [--weights W] [--precision int8] [--shift 0.04]
    python benchmarks/crop_shift.py --data ../shared/data/faces68 --grid 4
    python benchmarks/crop_shift.py --data ../shared/data/faces68 --photos val,val_tight,val_rot90,val_mosaic,val_small

Prints the NME (inter-ocular, %) of each. Validation only: the figures are for choosing, not reporting."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import DEFAULT_WEIGHTS, read_meta, training_data_config  # noqa: E402
from core.data import read_image, train_val_split  # noqa: E402
from core.inference import FaceAligner  # noqa: E402
from core.metrics import interocular, landmark_errors, nme  # noqa: E402
from core.landmarks import crop_from_box  # noqa: E402
from core.photos import match_faces  # noqa: E402

SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))
HEATMAP_STRIDE = 4  # crop pixels per decoder cell (the shipped models' heatmap_stride)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    ap.add_argument("--shift", type=float, default=0.04, help="share of the landmark box side")
    ap.add_argument("--grid", type=int, default=0, help="sub-cell phases per axis (0: off)")
    ap.add_argument("--photos", default="",
                    help="comma-separated validation photo sets: image mode, pass 2 vs mean of 1-2")
    args = ap.parse_args(argv)
    if args.photos:
        return photo_passes(args)
    _, val = train_val_split(training_data_config(read_meta(args.weights)), args.data)  # the weights' own split
    al = FaceAligner(args.weights, detector="none", backend="onnx", threads=1, precision=args.precision)
    if args.grid:
        return grid_phases(al, val, args.grid)

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


def grid_phases(al, val, n: int) -> int:
    """The protocol's crop moved by (i, j) / n of a decoder cell: where the face falls on the stride grid."""
    al.refine_passes = 1
    gt = np.stack([np.asarray(r.landmarks, np.float64) for r in val])
    imgs = [read_image(r.image) for r in val]
    iod = interocular(gt)[:, None, None]
    preds = {}
    for i in range(n):
        for j in range(n):
            out = []
            for img, g in zip(imgs, gt):
                box = np.r_[g.min(0), g.max(0)]
                d = np.array([i, j]) / n * HEATMAP_STRIDE * crop_from_box(box)[2] / al.input_size  # image pixels
                out.append(al.predict(img, boxes=[box + np.r_[d, d]])[0].landmarks.astype(np.float64))
            preds[i, j] = np.stack(out)
            bias = ((preds[i, j] - gt) / iod).mean((0, 1))  # mean error, inter-ocular units
            print(f"phase ({i}/{n}, {j}/{n}) of a cell: NME {100 * nme(preds[i, j], gt).mean():.3f} %, "
                  f"mean error x {100 * bias[0]:+.3f} y {100 * bias[1]:+.3f} % IOD", flush=True)
    print(f"mean over the {n * n} crops: NME {100 * nme(np.mean(list(preds.values()), 0), gt).mean():.3f} %")
    return 0


def photo_passes(args) -> int:
    """Image mode (FaceAligner defaults) on validation photo sets: pass 2 vs the mean of passes 1 and 2."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from photo_sets import val_photos

    al = FaceAligner(args.weights, backend="onnx", threads=1, precision=args.precision)
    for kind in args.photos.split(","):
        errs: dict[str, list] = {"pass 2 (today)": [], "mean of passes 1-2": []}
        for ph in val_photos(Path(args.data), kind):
            img = ph.image if isinstance(ph.image, np.ndarray) else read_image(ph.image)
            al.refine_passes = 2
            p2 = [f.landmarks for f in al.predict(img)]
            al.refine_passes = 1
            p1 = [f.landmarks for f in al.predict(img)]
            mean = [p.copy() for p in p2]
            for i, j, _ in match_faces(p2, p1):
                mean[i] = (p2[i] + p1[j]) / 2
            for key, preds in zip(errs, (p2, mean)):
                m = match_faces(preds, ph.faces)
                if m:
                    pred, gt = np.stack([preds[i] for i, _, _ in m]), np.stack([ph.faces[j] for _, j, _ in m])
                    errs[key] += nme(pred, gt).tolist()
        print(kind, ", ".join(f"{k}: NME {100 * np.mean(v):.3f} % ({len(v)} faces)" for k, v in errs.items()),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
