"""Regenerate the README's accuracy table from the shipped weights.

    python benchmarks/accuracy.py --data ../shared/data/faces68 [--split test] [--seed 0]

Evaluates the default model (Wasserstein heatmap head) and its int8 ONNX export, the app's
graph-head / FC-head pair (same budget), the graph model's int8 export the webcam runs and the fast
64 px graph head (fp32, int8) under the default, synthetic-occlusion and motion-blur protocols
(core.evaluate), the float models under --occlusion-seeds occlusion seeds, how much their error
ellipses grow on the points the occluder covers (and on the visible ones), and dlib's 68-point
predictor on the same crops when dlib is installed (benchmark only: pip install dlib-bin
face-recognition-models "setuptools<81").
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

from core.checkpoint import DEFAULT_WEIGHTS, FAST_WEIGHTS, FC_WEIGHTS, GRAPH_WEIGHTS, load_model  # noqa: E402
from core.data import load_jsonl  # noqa: E402
from core.evaluate import evaluate, predict_records, protocol_crops, protocol_hidden, write_ced  # noqa: E402
from core.inference import onnx_path_for  # noqa: E402
from core.landmarks import apply_affine, invert_affine  # noqa: E402
from core.metrics import ellipse_growth, summarize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DLIB_CROP = 256  # dlib sees the same canonical crop as our model, at 256 px


def dlib_predictor():
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


def run_dlib(records, protocol: str, seed: int, peer) -> tuple[dict, float]:
    """dlib on each face's canonical crop: its own HOG detector, or, where it finds no face, the
    square around the crop's central face region (counted in `dlib_detected`)."""
    dlib, det, pred = peer
    preds, found = [], 0
    occlusion = seed if protocol == "occlusion" else None
    blur = seed if protocol == "blur" else None
    for crop, m in protocol_crops(records, DLIB_CROP, occlusion, blur):
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
    gt = np.stack([r.landmarks for r in records])
    return summarize(np.stack(preds), gt), found / len(records)


def fmt(r: dict) -> str:
    cal = r.get("calibration")
    cal_s = f"{cal['inside_1sigma']:.1%} / {cal['inside_2sigma']:.1%}" if cal else "-"
    return (f"{r['nme']:.2%} | {r['fr10']:.2%} | {r['auc10']:.4f} | {r['nme_normal']:.2%} | "
            f"{r['nme_tangent']:.2%} | {cal_s}")


def occlusion_seeds(models: dict, results: dict, args) -> dict[str, dict]:
    """Per float model: occluded NME for `args.occlusion_seeds` protocol seeds (the first one is
    the table's) and what each adds to the default-protocol NME. One seed draws one ellipse per
    face, so a difference between two models' added NME smaller than its spread over seeds is noise."""
    out = {}
    if args.occlusion_seeds < 1:
        return out
    for name, (w, precision) in models.items():
        if precision or (name, "default") not in results:
            continue
        base = results[(name, "default")]["nme"]
        occ = [results[(name, "occlusion")]["nme"]] + [
            evaluate(w, args.data, args.split, occlusion=args.seed + i)["nme"] for i in range(1, args.occlusion_seeds)]
        out[name] = {"default": base, "occlusion": occ, "added": [o - base for o in occ]}
    return out


def ellipse_growth_under_occlusion(weights, records, seed: int) -> dict:
    """How much the model's ellipses grow under the occlusion protocol (seed), on the points the
    occluder covers and on the visible ones (core.metrics.ellipse_growth)."""
    model, _ = load_model(weights)
    _, _, clean = predict_records(model, records)
    _, _, occluded = predict_records(model, records, occlusion=seed)
    return ellipse_growth(clean, occluded, protocol_hidden(records, model.cfg.input_size, seed))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0, help="seed of the occlusion and blur protocols")
    ap.add_argument("--occlusion-seeds", type=int, default=5, metavar="N",
                    help="occlusion seeds seed..seed+N-1 for the mean added NME of the float models")
    ap.add_argument("--no-dlib", action="store_true")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # name -> (weights, precision): None = the torch model; "int8" = <stem>.int8.onnx on ONNX Runtime
    models = {"Wasserstein heatmap head (default)": (DEFAULT_WEIGHTS, None),
              "Wasserstein heatmap head, int8 ONNX": (DEFAULT_WEIGHTS, "int8"),
              "graph head (app)": (GRAPH_WEIGHTS, None), "FC head (baseline)": (FC_WEIGHTS, None),
              "graph head, int8 ONNX (webcam)": (GRAPH_WEIGHTS, "int8"),
              "fast graph head (64 px)": (FAST_WEIGHTS, None),
              "fast graph head, int8 ONNX": (FAST_WEIGHTS, "int8")}
    protocols = {"default": {}, "occlusion": {"occlusion": args.seed}, "blur": {"blur": args.seed}}
    results: dict[tuple[str, str], dict] = {}
    for name, (w, precision) in models.items():
        if not Path(w).is_file() or (precision and not onnx_path_for(w, precision).is_file()):
            print(f"skip {name}: {w} ({precision or 'torch'}) not found", file=sys.stderr)
            continue
        for proto, kw in protocols.items():
            t = time.time()
            r = evaluate(w, args.data, args.split, precision=precision, **kw)
            results[(name, proto)] = r
            stem = Path(w).stem + (f"_{precision}" if precision else "")
            (RESULTS / f"{stem}_{proto}.json").write_text(json.dumps({"name": name, **r}, indent=1))
            print(f"{name:36s} {proto:9s} NME {r['nme']:.4%} FR10 {r['fr10']:.2%} AUC10 {r['auc10']:.4f} "
                  f"({time.time() - t:.0f} s)", flush=True)
    records = load_jsonl(Path(args.data) / f"{args.split}.jsonl")
    peer = None if args.no_dlib else dlib_predictor()
    if peer is not None:
        for proto in protocols:
            r, found = run_dlib(records, proto, args.seed, peer)
            r["dlib_detected"] = found
            results[("dlib 68-point predictor (peer)", proto)] = r
            (RESULTS / f"dlib_{proto}.json").write_text(json.dumps({"name": "dlib", **r}, indent=1))
            print(f"dlib {proto:9s} NME {r['nme']:.4%} FR10 {r['fr10']:.2%} (dlib detector found {found:.1%})", flush=True)
    lines = [f"Split `{args.split}` ({next(iter(results.values()))['n']} faces), protocol seed {args.seed}.", "",
             "| model | protocol | NME | FR@10 | AUC@10 | NME normal | NME tangent | inside 1σ / 2σ ellipse |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, proto), r in results.items():
        lines.append(f"| {name} | {proto} | {fmt(r)} |")
    for name in models:
        if (name, "default") in results and (name, "occlusion") in results:
            d, o = results[(name, "default")]["nme"], results[(name, "occlusion")]["nme"]
            lines.append(f"\n{name}: occlusion adds {o - d:+.2%} NME ({o / d:.2f}x)")
    seeds = occlusion_seeds(models, results, args)
    if seeds:
        (RESULTS / "occlusion_seeds.json").write_text(json.dumps(seeds, indent=1))
        lines.append(f"\nOcclusion over seeds {args.seed}..{args.seed + args.occlusion_seeds - 1}, NME added "
                     "to the default protocol (mean ± sd over seeds):")
        for name, r in seeds.items():
            added = r["added"]
            sd = np.std(added, ddof=1) if len(added) > 1 else 0.0
            lines.append(f"- {name}: {np.mean(added):+.2%} ± {sd:.2%}")
    growth = {name: ellipse_growth_under_occlusion(w, records, args.seed) for name, (w, precision) in models.items()
              if not precision and (name, "occlusion") in results and "calibration" in results[(name, "occlusion")]}
    if growth:
        (RESULTS / "ellipse_growth.json").write_text(json.dumps(growth, indent=1))
        lines.append(f"\nEllipse size under occlusion (seed {args.seed}) / clean, median per point:")
        for name, g in growth.items():
            lines.append(f"- {name}: covered points x{g['marked']:.2f}, visible points x{g['others']:.2f}")
    table = "\n".join(lines)
    (RESULTS / "table.md").write_text(table + "\n")
    print(table)
    ced = {f"{n} [{p}]": r for (n, p), r in results.items() if p in ("default", "occlusion") and "int8" not in n}
    (ROOT / "docs").mkdir(exist_ok=True)
    write_ced(ced, ROOT / "docs" / "ced.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
