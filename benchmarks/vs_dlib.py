"""Our int8 models against dlib's 68-point shape predictor per face, timed in turn within every round
(core.bench_speed.interleaved), so a slow spell of the host falls on all of them: issue 14's speed
targets (flagship int8 <= 2x dlib, fast tier no slower than dlib) as ratios per round.

    python benchmarks/vs_dlib.py [--weights W ...] [--rounds 15] [--runs 100] [--json out.json]

Per round and callable: the median of --runs calls. Ours: the int8 ONNX model alone (ONNX Runtime,
1 thread, batch 1, as `python -m core.bench_speed`'s row) and the shape prior's fit on its outputs
(numpy, one BLAS thread); dlib: its predictor on the same face in core.bench_speed's frame."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.bench_speed import dlib_predictor, interleaved, make_frame  # noqa: E402
from core.checkpoint import FLAGSHIP_WEIGHTS, WEIGHTS_DIR, read_meta  # noqa: E402
from core.inference import FaceAligner  # noqa: E402
from core.shape_prior import prior_for  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", nargs="+", default=[str(FLAGSHIP_WEIGHTS), str(WEIGHTS_DIR / "sdfl_fast.safetensors")])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    frame = make_frame()
    box = FaceAligner(FLAGSHIP_WEIGHTS, backend="onnx", threads=1).predict(frame)[0].box
    fns = {"dlib": dlib_predictor(frame, box)[0]}
    for w in args.weights:
        fa = FaceAligner(w, backend="onnx", detector="none", threads=1, precision="int8", shape_prior=False)
        x = np.random.default_rng(0).random((1, 3, fa.input_size, fa.input_size), dtype=np.float32)
        out = fa.runner(x)
        prior = prior_for(w, read_meta(w))
        name = Path(w).stem
        fns[f"{name} int8"] = lambda fa=fa, x=x: fa.runner(x)
        fns[f"{name} prior"] = lambda p=prior, o=out: p.refine(o["coords"], o["cov"])
    times = interleaved(fns, args.rounds, args.runs)
    res = {"rounds": args.rounds, "runs": args.runs, "ms_per_round": times, "median_ms": {}, "ratio_to_dlib": {}}
    for k, v in times.items():
        res["median_ms"][k] = round(statistics.median(v), 3)
    print(f"{args.rounds} interleaved rounds of {args.runs} calls; medians per round (ms):")
    for k, v in res["median_ms"].items():
        print(f"  {k:28s} {v:7.3f}  (rounds {min(times[k]):.3f}-{max(times[k]):.3f})")
    for w in args.weights:
        name = Path(w).stem
        model = np.array(times[f"{name} int8"]) / np.array(times["dlib"])
        both = (np.array(times[f"{name} int8"]) + np.array(times[f"{name} prior"])) / np.array(times["dlib"])
        res["ratio_to_dlib"][name] = {"model": round(float(np.median(model)), 2),
                                      "model_and_prior": round(float(np.median(both)), 2),
                                      "model_and_prior_range": [round(float(v), 2) for v in (both.min(), both.max())]}
        print(f"{name}: int8 model / dlib {np.median(model):.2f}x, with the prior {np.median(both):.2f}x "
              f"(rounds {both.min():.2f}-{both.max():.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
