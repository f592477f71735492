"""Regenerate the README's accuracy table from the shipped weights.

    python benchmarks/accuracy.py --data ../shared/data/faces68 [--split test] [--seed 0]

Evaluates the flagship (the default) and its int8 ONNX export (the webcam's), the occlusion demo's FC
baseline (FC stages on the flagship's features), the Wasserstein heatmap head and the fast 64 px tier (int8),
every one with the shape prior its JSON names as FaceAligner runs it, and the flagship and FC baseline
without it (ablation)
under the default, synthetic-occlusion, motion-blur and webcam protocols (core.evaluate), the float models
under --occlusion-seeds occlusion seeds, how much their error ellipses grow on the points the
occluder covers (and on the visible ones), and dlib's 68-point predictor on the same crops when dlib
is installed (benchmark only: pip install dlib-bin face-recognition-models "setuptools<81").
--only scores some rows and --protocols some protocols; the table is assembled from every row's saved
results on the split.
Writes benchmarks/results/<model>_<protocol>.json, benchmarks/results/table.md and docs/ced.png."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import FAST_WEIGHTS, FC_WEIGHTS, FLAGSHIP_WEIGHTS, WASSERSTEIN_WEIGHTS, load_model  # noqa: E402
from core.data import load_jsonl  # noqa: E402
from core.evaluate import evaluate, predict_records, protocol_crops, protocol_hidden, write_ced  # noqa: E402
from core.inference import onnx_path_for  # noqa: E402
from core.landmarks import apply_affine, invert_affine  # noqa: E402
from core.metrics import ellipse_growth, summarize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DLIB_CROP = 256  # dlib sees the same canonical crop as our model, at 256 px
DLIB_NAME = "dlib 68-point predictor (peer; may have seen test photos)"
# name -> (weights, variant): None = the torch model; "int8" = <stem>.int8.onnx on ONNX Runtime;
# "mirror" = the torch model with the test-time mirror ensemble (core.evaluate.MirrorEnsemble, 2x cost);
# "noprior" = the torch model's points without the shape prior its JSON names (core.shape_prior; ablation)
MIRROR, NOPRIOR = "mirror", "noprior"
MODELS = {"flagship (default)": (FLAGSHIP_WEIGHTS, None),
          "flagship without the shape prior": (FLAGSHIP_WEIGHTS, NOPRIOR),
          "flagship + mirror ensemble (2x cost)": (FLAGSHIP_WEIGHTS, MIRROR),
          "flagship, int8 ONNX (webcam)": (FLAGSHIP_WEIGHTS, "int8"),
          "FC stages on the flagship's features (occlusion demo baseline)": (FC_WEIGHTS, None),
          "FC baseline without the shape prior": (FC_WEIGHTS, NOPRIOR),
          "Wasserstein heatmap head": (WASSERSTEIN_WEIGHTS, None),
          "fast tier, int8 ONNX (64 px)": (FAST_WEIGHTS, "int8")}


def dlib_predictor():
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    model = face_recognition_models.pose_predictor_model_location()
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(model)


def run_dlib(records, protocol: str, seed: int, peer) -> tuple[dict, float]:
    """dlib_points' predictions scored: (summarize() output, share of faces its detector found)."""
    preds, found = dlib_points(records, protocol, seed, peer)
    return summarize(preds, np.stack([r.landmarks for r in records])), found


def dlib_points(records, protocol: str, seed: int, peer) -> tuple[np.ndarray, float]:
    """dlib on each face's canonical crop: its own HOG detector, or, where it finds no face, the
    square around the crop's central face region (counted in `dlib_detected`): ((F, 68, 2) points in
    the records' images, share of faces its detector found)."""
    dlib, det, pred = peer
    preds, found = [], 0
    for crop, m in protocol_crops(records, DLIB_CROP, **({} if protocol == "default" else {protocol: seed})):
        rects = det(crop, 1)
        c = DLIB_CROP / 2
        if rects:
            found += 1
            rect = min(rects, key=lambda b: (b.center().x - c) ** 2 + (b.center().y - c) ** 2)
        else:
            h = DLIB_CROP / 1.3 / 2
            rect = dlib.rectangle(int(c - h), int(c - h), int(c + h), int(c + h))
        shape = pred(crop, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        preds.append(apply_affine(invert_affine(m), pts))
    return np.stack(preds), found / len(records)


def fmt(r: dict) -> str:
    cal = r.get("calibration")
    cal_s = f"{cal['inside_1sigma']:.1%} / {cal['inside_2sigma']:.1%}" if cal else "-"
    return (f"{r['nme']:.2%} | {r['fr10']:.2%} | {r['auc10']:.4f} | {r['nme_normal']:.2%} | "
            f"{r['nme_tangent']:.2%} | {cal_s}")


def occlusion_added(w, args, first: float, base: float, variant: dict) -> dict:
    """Occluded NME for `args.occlusion_seeds` protocol seeds (the first one is the table's) and what
    each adds to the default-protocol NME. One seed draws one ellipse per face, so a difference
    between two models' added NME smaller than its spread over seeds is noise."""
    occ = [first] + [evaluate(w, args.data, args.split, occlusion=args.seed + i, **variant)["nme"]
                     for i in range(1, args.occlusion_seeds)]
    return {"default": base, "occlusion": occ, "added": [o - base for o in occ]}


def ellipse_growth_under_occlusion(weights, records, seed: int) -> dict:
    """How much the model's ellipses grow under the occlusion protocol (seed), on the points the
    occluder covers and on the visible ones (core.metrics.ellipse_growth)."""
    model, _ = load_model(weights)
    _, _, clean = predict_records(model, records)
    _, _, occluded = predict_records(model, records, occlusion=seed)
    return ellipse_growth(clean, occluded, protocol_hidden(records, model.cfg.input_size, seed))


def stem_of(w, precision) -> str:
    return Path(w).stem + (f"_{precision}" if precision else "")


def evaluate_kw(precision) -> dict:
    """core.evaluate.evaluate's options for a row's variant (MODELS)."""
    onnx = precision not in (None, MIRROR, NOPRIOR)
    return {"precision": precision if onnx else None, "mirror": precision == MIRROR,
            "shape_prior": precision != NOPRIOR}


PROTOCOLS = ("default", "occlusion", "blur", "camera")


def protocols(args, chosen: bool = True) -> dict:
    """Each protocol's core.evaluate options; chosen: only those --protocols names (the table reads all)."""
    every = {"default": {}, "occlusion": {"occlusion": args.seed}, "blur": {"blur": args.seed},
             "camera": {"camera": args.seed}}
    return {k: v for k, v in every.items() if not chosen or k in args.protocols}


def score_model(name: str, w, precision, args, records) -> None:
    """Every protocol for one model, written to benchmarks/results/<stem>_<protocol>.json, plus (float
    models) the occlusion seeds and the ellipse growth in <stem>_occlusion_extra.json."""
    variant = evaluate_kw(precision)
    onnx = variant["precision"] is not None
    if not Path(w).is_file() or (onnx and not onnx_path_for(w, precision).is_file()):
        print(f"{name}: {w} ({precision or 'torch'}) not found, row left out", file=sys.stderr)
        return
    stem, rows = stem_of(w, precision), {}
    for proto, kw in protocols(args).items():
        t = time.time()
        r = evaluate(w, args.data, args.split, **variant, **kw)
        rows[proto] = r
        (RESULTS / f"{stem}_{proto}.json").write_text(json.dumps({"name": name, **r}, indent=1))
        print(f"{name:36s} {proto:9s} NME {r['nme']:.4%} FR10 {r['fr10']:.2%} AUC10 {r['auc10']:.4f} "
              f"({time.time() - t:.0f} s)", flush=True)
    if precision in (None, NOPRIOR) and "occlusion" in rows:
        extra = {"split": args.split, "seed": args.seed}
        if args.occlusion_seeds > 0:
            extra["seeds"] = occlusion_added(w, args, rows["occlusion"]["nme"], rows["default"]["nme"], variant)
        if "calibration" in rows["occlusion"] and precision is None:
            extra["ellipse_growth"] = ellipse_growth_under_occlusion(w, records, args.seed)
        (RESULTS / f"{stem}_occlusion_extra.json").write_text(json.dumps(extra, indent=1))


def saved(stem: str, proto: str, split: str) -> dict | None:
    f = RESULTS / f"{stem}_{proto}.json"
    r = json.loads(f.read_text()) if f.is_file() else None
    return r if r and r.get("split") == split else None


def write_table(args) -> str:
    """benchmarks/results/table.md and docs/ced.png from the saved results of every row on this split."""
    order = [(n, stem_of(w, p)) for n, (w, p) in MODELS.items()] + [(DLIB_NAME, "dlib")]
    results, extras = {}, {}
    for name, stem in order:
        for proto in protocols(args, chosen=False):
            r = saved(stem, proto, args.split)
            if r:
                results[(name, proto)] = r
        f = RESULTS / f"{stem}_occlusion_extra.json"
        if f.is_file() and (name, "default") in results:
            e = json.loads(f.read_text())
            if e.get("split") == args.split:
                extras[name] = e
    if not results:
        return f"no saved results for split {args.split!r}"
    n = next(iter(results.values()))["n"]
    lines = [f"Split `{args.split}` ({n} faces), protocol seed {args.seed}.", "",
             "| model | protocol | NME | FR@10 | AUC@10 | NME normal | NME tangent | inside 1σ / 2σ ellipse |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, proto), r in results.items():
        lines.append(f"| {name} | {proto} | {fmt(r)} |")
    for name, e in extras.items():
        if "seeds" in e:
            added = e["seeds"]["added"]
            sd = np.std(added, ddof=1) if len(added) > 1 else 0.0
            lines.append(f"\n{name}: occlusion adds {np.mean(added):+.2%} ± {sd:.2%} NME (mean ± sd over "
                         f"{len(added)} seeds)")
        if "ellipse_growth" in e:
            g = e["ellipse_growth"]
            lines.append(f"  ellipses under occlusion / clean (median per point): covered points "
                         f"x{g['marked']:.2f}, visible points x{g['others']:.2f}")
    table = "\n".join(lines)
    (RESULTS / "table.md").write_text(table + "\n")
    ced = {f"{n} [{p}]": r for (n, p), r in results.items()
           if p in ("default", "occlusion") and "int8" not in n and "mirror" not in n and "without" not in n}
    (ROOT / "docs").mkdir(exist_ok=True)
    write_ced(ced, ROOT / "docs" / "ced.png")
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0, help="seed of the occlusion, blur and camera protocols")
    ap.add_argument("--occlusion-seeds", type=int, default=5, metavar="N",
                    help="occlusion seeds seed..seed+N-1 for the mean added NME of the float models")
    ap.add_argument("--only", nargs="+", metavar="STEM",
                    help="score these rows only (e.g. sdfl_flagship sdfl_flagship_int8 dlib); the table reads "
                         "the other rows from their saved results")
    ap.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS),
                    help="score these protocols only (the table reads the others from their saved results)")
    ap.add_argument("--no-dlib", action="store_true")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = load_jsonl(Path(args.data) / f"{args.split}.jsonl")
    for name, (w, precision) in MODELS.items():
        if not args.only or stem_of(w, precision) in args.only:
            score_model(name, w, precision, args, records)
    peer = None if args.no_dlib or (args.only and "dlib" not in args.only) else dlib_predictor()
    if peer is not None:
        for proto in protocols(args):
            r, found = run_dlib(records, proto, args.seed, peer)
            r["dlib_detected"] = found
            (RESULTS / f"dlib_{proto}.json").write_text(json.dumps({"name": DLIB_NAME, "split": args.split, **r},
                                                                   indent=1))
            print(f"dlib {proto:9s} NME {r['nme']:.4%} FR10 {r['fr10']:.2%} (dlib detector found {found:.1%})",
                  flush=True)
    print(write_table(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
