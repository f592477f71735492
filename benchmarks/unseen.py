"""Faces from another source than training: the shipped models and dlib's predictor on faces68
`extra` (YouTube-Faces video frames of 347 people; no shipped model was trained on this split, nor,
as far as its documentation says, was dlib's 300-W predictor). Default
protocol (crop around the labelled landmarks); the labels are integer and noisier than 300-W's
(data README), so absolute NMEs are higher for every model: compare rows, not with the test table.

    python benchmarks/unseen.py --data ../shared/data/faces68 [--split extra] [--no-dlib] [--holdout 0.3]

--holdout F scores only the identities that a config with data.extra_holdout F (split seed 0) keeps
out of training (core.data.split_by_photo), so models trained on the rest of `extra` compare with
the others on people none of them saw. --convention (with --holdout) also scores each model in the
split's own annotation convention: core.metrics.convention_offsets fitted on the other identities'
faces (per model, each in its predictions' face frame), applied to the held-out ones (docs/BENCHMARKS.md).
Writes benchmarks/results/unseen_<split>[_holdout<F>][_convention].json / .md."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.accuracy import RESULTS, dlib_points, dlib_predictor, fmt  # noqa: E402
from core.checkpoint import FAST_WEIGHTS, FC_WEIGHTS, FLAGSHIP_WEIGHTS, WASSERSTEIN_WEIGHTS  # noqa: E402
from core.data import load_jsonl, split_by_photo  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.metrics import convention_offsets, failure_rate, in_convention, nme, summarize  # noqa: E402

MODELS = {"flagship (default)": FLAGSHIP_WEIGHTS, "FC stages on the flagship's features (baseline)": FC_WEIGHTS,
          "Wasserstein heatmap head": WASSERSTEIN_WEIGHTS, "fast tier (64 px)": FAST_WEIGHTS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--split", default="extra")
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="models whose name contains one of these words")
    ap.add_argument("--holdout", type=float, default=0.0, help="score only the held-out identities (see above)")
    ap.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH", help="more checkpoints to score")
    ap.add_argument("--convention", action="store_true", help="also score in the split's convention (see above)")
    args = ap.parse_args(argv)
    if args.convention and not args.holdout:
        ap.error("--convention fits on the identities --holdout leaves out of the scored part: give --holdout")
    every = load_jsonl(Path(args.data) / f"{args.split}.jsonl")
    fit, records = split_by_photo(every, args.holdout, 0) if args.holdout else ([], every)
    tag = f"{args.split}_holdout{args.holdout:g}" if args.holdout else args.split
    tag += "_convention" if args.convention else ""
    rows, offsets = {}, {}
    models = {n: w for n, w in MODELS.items() if not args.only or any(o in n for o in args.only)}
    models.update(dict(w.split("=", 1) for w in args.weights))
    for name, w in models.items():
        t = time.time()
        rows[name] = evaluate(w, args.data, args.split, records=records, keep_points=args.convention)
        if args.convention:
            fitted = evaluate(w, args.data, args.split, records=fit, keep_points=True)
            offsets[name] = convention_offsets(fitted["points"], [r.landmarks for r in fit])
        r = rows[name]
        print(f"{name:36s} NME {r['nme']:.4%} FR10 {r['fr10']:.2%} ({time.time() - t:.0f} s)", flush=True)
    gt = [r.landmarks for r in records]
    peer = None if args.no_dlib else dlib_predictor()
    if peer is not None:
        pts, found = dlib_points(records, "default", 0, peer)
        name = "dlib 68-point predictor (peer)"
        rows[name] = {**summarize(pts, gt), "points": pts, "dlib_detected": found, "split": args.split,
                      "protocol": "default"}
        if args.convention:
            offsets[name] = convention_offsets(dlib_points(fit, "default", 0, peer)[0], [r.landmarks for r in fit])
    for name, o in offsets.items():  # the held-out faces' points moved into the split's convention
        per_face = nme(in_convention(rows[name]["points"], o), gt)
        rows[name]["in_convention"] = {"nme": float(per_face.mean()), "fr10": failure_rate(per_face),
                                       "fitted_on_faces": len(fit), "offsets": o.round(5).tolist()}
    for r in rows.values():  # which faces: the app's benchmark tab shows the whole split, not a held-out part
        r["holdout"] = args.holdout or None
    n = next(iter(rows.values()))["n"]
    held = f", the {args.holdout:.0%} of its identities held out by data.extra_holdout" if args.holdout else ""

    def conv(r: dict) -> str:
        c = r.get("in_convention")
        return f" | {c['nme']:.2%} / {c['fr10']:.2%}" if c else (" | -" if args.convention else "")

    lines = [f"Split `{args.split}`{held} ({n} faces), default protocol."
             + (f" In its convention: offsets fitted on the other {len(fit)} faces." if args.convention else ""), "",
             "| model | NME | FR@10 | AUC@10 | NME normal | NME tangent | inside 1σ / 2σ ellipse |"
             + (" NME / FR@10 in the split's convention |" if args.convention else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if args.convention else "")]
    lines += [f"| {name} | {fmt(r)}{conv(r)} |" for name, r in rows.items()]
    table = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    kept = {name: {k: v for k, v in r.items() if k not in ("nme_per_face", "points")} for name, r in rows.items()}
    (RESULTS / f"unseen_{tag}.json").write_text(json.dumps(kept, indent=1))
    (RESULTS / f"unseen_{tag}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
