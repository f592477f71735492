"""Coordinate graph head vs the heatmap family vs the heatmap-to-graph hybrid, on one short budget.

    python benchmarks/heatmap_family.py --data ../shared/data/faces68 [--epochs 12] [--input-size 128] [--parallel 2]

Every variant trains from its config in configs/ with the same budget (epochs, input size, batch,
data: faces68 train minus the validation split) into runs/heatmap_family/<name>. Heatmap models are
then read out three ways (soft-argmax, GET_MAX = arg-max + sub-pixel shift, GET_BC = barycentre
around the peak) without retraining. Every (model, read-out) is scored on val (the only split a
choice may use) and on test under the default, occlusion and blur protocols, with region-wise
landmark failure rates (share of points with error > 10 % of the inter-ocular distance).
Writes benchmarks/results/heatmap_family.json and heatmap_family.md."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._runs import slug, train_on_budget  # noqa: E402
from core.checkpoint import load_model  # noqa: E402
from core.data import load_jsonl  # noqa: E402
from core.evaluate import crop_to_image, protocol_batches  # noqa: E402
from core.heatmaps import READOUTS, heatmap_to_crop, readout  # noqa: E402
from core.metrics import summarize  # noqa: E402

VARIANTS = {
    "coordinate graph head (shipped design)": ("sdfl_graph.yaml", []),
    "heatmap, L2, sigma 1": ("heatmap_awing.yaml", ["loss.heatmap=l2", "loss.heatmap_sigma=1.0"]),
    "heatmap, L2, sigma 3": ("heatmap_awing.yaml", ["loss.heatmap=l2", "loss.heatmap_sigma=3.0"]),
    "heatmap, Wasserstein, sigma 1": ("heatmap_wasserstein.yaml", ["loss.heatmap_sigma=1.0"]),
    "heatmap, Wasserstein, sigma 3": ("heatmap_wasserstein.yaml", []),
    "heatmap, ADNet (AWing, sigma 1.5)": ("heatmap_awing.yaml", []),
    "hybrid heatmap -> graph": ("hybrid.yaml", []),
}
REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
           "mouth": range(48, 68)}
PROTOCOLS = {"default": {}, "occlusion": {"occlusion": 0}, "blur": {"blur": 0}}
FAIL_AT = "0.10"


def region_failure(res: dict) -> dict[str, float]:
    lfr = np.asarray(res["landmark_failure_rate"][FAIL_AT])
    return {name: float(lfr[list(idx)].mean()) for name, idx in REGIONS.items()}


@torch.inference_mode()
def predictions(model, records, readouts: list[str], **protocol) -> dict[str, np.ndarray]:
    """Image-pixel predictions per read-out from one forward pass per batch: "direct" = the model's
    own coordinates; a read-out name = that read-out applied to the attended landmark heatmaps."""
    size = model.cfg.input_size
    preds: dict[str, list] = {ro: [] for ro in readouts}
    for out, mats in protocol_batches(model, records, **protocol):
        for ro in readouts:
            if ro == "direct":
                coords = out["coords"]
            else:
                z = out["heatmaps"]
                coords = heatmap_to_crop(readout(z, ro), size, size // z.shape[-1])
            preds[ro] += crop_to_image(coords, mats, size)
    return {ro: np.stack(p) for ro, p in preds.items()}


def score(weights: Path, val: list, test: list, readouts: list[str]) -> tuple[dict[str, dict], str]:
    """Per read-out: val NME and test metrics under every protocol; and the read-out the model was
    trained with."""
    model, _ = load_model(weights)
    rows = {ro: {} for ro in readouts}
    gt_val, gt_test = np.stack([r.landmarks for r in val]), np.stack([r.landmarks for r in test])
    for ro, p in predictions(model, val, readouts).items():
        rows[ro]["val_nme"] = summarize(p, gt_val)["nme"]
    for name, kw in PROTOCOLS.items():
        for ro, p in predictions(model, test, readouts, **kw).items():
            r = summarize(p, gt_test)
            rows[ro][name] = {"nme": r["nme"], "fr10": r["fr10"], "auc10": r["auc10"], "nme_normal": r["nme_normal"],
                              "nme_tangent": r["nme_tangent"], "region_failure": region_failure(r),
                              "landmark_failure_rate": r["landmark_failure_rate"][FAIL_AT]}
    return rows, model.cfg.readout


def markdown(meta: dict) -> str:
    rows = meta["rows"]
    lines = [f"Same budget for every row: {meta['epochs']} epochs at {meta['input_size']} px, batch 32, faces68 train "
             "minus the validation split; choose on **val**, test for reference only. Occlusion/blur: "
             "synthetic protocols, seed 0. Failure by region: share of points with error > 10 % inter-ocular "
             "(test, default protocol).", "",
             "| model | read-out | val NME | test NME | FR@10 | AUC@10 | occlusion NME | blur NME | "
             "jaw | brows | nose | eyes | mouth |", "|" + "---|" * 13]
    for key, r in rows.items():
        d = r["default"]
        rf = d["region_failure"]
        lines.append(f"| {r['model']} | {r['readout']} | {r['val_nme']:.2%} | {d['nme']:.2%} | {d['fr10']:.1%} | "
                     f"{d['auc10']:.3f} | {r['occlusion']['nme']:.2%} | {r['blur']['nme']:.2%} | "
                     + " | ".join(f"{rf[k]:.1%}" for k in REGIONS) + " |")
    best = min(rows.values(), key=lambda r: r["val_nme"])
    lines += ["", f"Best on val: {best['model']} ({best['readout']}), val NME {best['val_nme']:.2%}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, data, runs, val_dir, wall = train_on_budget(__doc__, "heatmap_family", VARIANTS, argv)
    val, test = load_jsonl(val_dir / "val.jsonl"), load_jsonl(data / "test.jsonl")
    rows = {}
    for name, (config, _) in VARIANTS.items():
        best = runs / slug(name) / "best.safetensors"
        if not best.exists():
            print(f"{name}: no checkpoint in {best.parent}", flush=True)
            continue
        # read-outs are swapped only on pure heatmap heads (the hybrid's graph was trained on its own)
        heatmap_head = config.startswith("heatmap")
        scores, trained = score(best, val, test, list(READOUTS) if heatmap_head else ["direct"])
        for ro, row in scores.items():
            label = f"{ro} (trained)" if ro == trained else ro
            row = {"model": name, "readout": label, **row}
            rows[f"{name} / {label}"] = row
            print(f"{name:40s} {label:22s} val {row['val_nme']:.3%}  test {row['default']['nme']:.3%}  "
                  f"occl {row['occlusion']['nme']:.3%}  blur {row['blur']['nme']:.3%}", flush=True)
    meta = {"epochs": args.epochs, "input_size": args.input_size, "wall_s": round(wall), "rows": rows}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "heatmap_family.json").write_text(json.dumps(meta, indent=1))
    md = markdown(meta)
    (out / "heatmap_family.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
