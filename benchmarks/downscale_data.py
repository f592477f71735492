"""Write a copy of faces68 splits with every image scaled so that its longer side is at most SIZE px
(JPEG quality 92) and the landmarks scaled with it (pixel centres kept: x' = (x + 0.5) s - 0.5).
Used to ship the training split to a lent GPU machine under its 64 MiB transfer limit (384 px:
41 MB for train).

    python benchmarks/downscale_data.py --data ../shared/data/faces68 --out .gpu/faces68 [--size 384] [--splits train]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

JPEG_QUALITY = 92


def downscale_split(data: Path, out: Path, split: str, size: int, limit: int = 0, quality: int = JPEG_QUALITY) -> int:
    """Write the first `limit` faces of `split` (0 = all) at most `size` px, JPEG `quality`; returns how many."""
    src = data / f"{split}.jsonl"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found")
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with src.open() as f, (out / f"{split}.jsonl").open("w") as g:
        for line in f:
            if not line.strip():
                continue
            if limit and n >= limit:
                break
            rec = json.loads(line)
            img = cv2.imread(str(data / rec["image"]), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"cannot read {data / rec['image']}")
            h, w = img.shape[:2]
            s = min(1.0, size / max(h, w))
            dst = out / rec["image"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else img
            cv2.imwrite(str(dst), small, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if rec.get("landmarks") is not None:
                scale = np.array([small.shape[1] / w, small.shape[0] / h])
                rec["landmarks"] = ((np.asarray(rec["landmarks"]) + 0.5) * scale - 0.5).round(3).tolist()
            rec.pop("original", None)  # its crop matrix refers to the full-size image
            g.write(json.dumps(rec) + "\n")
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--splits", nargs="+", default=["train"])
    args = ap.parse_args(argv)
    for split in args.splits:
        print(f"{split}: {downscale_split(Path(args.data), Path(args.out), split, args.size)} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
