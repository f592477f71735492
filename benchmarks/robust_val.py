"""Checkpoints on the validation split (held out from `train`; never `test`), clean and under the
synthetic occlusion, motion-blur and webcam (core.camera) protocols (core.protocols), for choosing
between training runs whose aim is robustness. Prints one row per checkpoint: NME (inter-ocular, %)
clean, occluded, blurred and as a webcam frame (each the mean over --seeds), and what occlusion and blur add.

    python benchmarks/robust_val.py --data ../shared/data/faces68 --weights A.safetensors B.safetensors
        [--seeds 3] [--json out.json]

Validation only: the figures are for choosing, not reporting."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import DEFAULT_WEIGHTS, load_model, training_data_config  # noqa: E402
from core.data import train_val_split  # noqa: E402
from core.evaluate import predict_records  # noqa: E402
from core.metrics import nme  # noqa: E402
from core.shape_prior import prior_for  # noqa: E402


def score(weights: str, data: str, seeds: int, shape_prior: bool = True) -> dict[str, float]:
    """NME (%) of one checkpoint on the validation split of the data it was trained with (rebuilt from
    its config, as core.calibrate does): clean, occluded, blurred, camera (means over seeds 0..seeds-1);
    with the shape prior its JSON names, if any (core.shape_prior), unless shape_prior is False."""
    model, meta = load_model(weights)
    model.eval()
    _, records = train_val_split(training_data_config(meta), data)
    prior = prior_for(weights, meta) if shape_prior else None  # predict_records skips it without "cov"

    def run(**kw) -> float:
        pred, gt, _ = predict_records(model, records, prior=prior, **kw)
        return 100 * float(np.mean(nme(pred, gt)))

    with torch.inference_mode():
        clean = run()
        occluded = float(np.mean([run(occlusion=s) for s in range(seeds)]))
        blurred = float(np.mean([run(blur=s) for s in range(seeds)]))
        cam = float(np.mean([run(camera=s) for s in range(seeds)]))
    return {"faces": len(records), "clean": clean, "occluded": occluded, "blurred": blurred, "camera": cam,
            "occlusion_adds": occluded - clean, "blur_adds": blurred - clean}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--weights", nargs="+", default=[str(DEFAULT_WEIGHTS)])
    ap.add_argument("--seeds", type=int, default=3, help="protocol seeds per corruption")
    ap.add_argument("--no-shape-prior", action="store_true", help="without the shape prior a checkpoint's JSON names")
    ap.add_argument("--json", default="", help="also write the rows here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = {}
    print(f"each checkpoint's validation split; occlusion, blur, camera: mean over seeds 0-{args.seeds - 1}")
    print(f"{'checkpoint':60s} {'faces':>5s} {'clean':>7s} {'occluded':>9s} {'blurred':>8s} {'camera':>7s} "
          f"{'occl. adds':>10s} {'blur adds':>9s}")
    for w in args.weights:
        r = rows[w] = score(w, args.data, args.seeds, not args.no_shape_prior)
        print(f"{w[-60:]:60s} {r['faces']:5d} {r['clean']:7.3f} {r['occluded']:9.3f} {r['blurred']:8.3f} "
              f"{r['camera']:7.3f} "
              f"{r['occlusion_adds']:+10.3f} {r['blur_adds']:+9.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
