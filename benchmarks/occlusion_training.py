"""Does a training choice make the graph head lose less under occlusion than the FC head? Graph and FC
heads are trained on the same budget, as shipped and with one change each: a 4x heavier Laplacian
loss, k=6 neighbours, heavier occlusion augmentation and a second training seed; then scored on the validation
split held out from train, clean and under the occlusion protocol over several seeds. The NME
occlusion adds is split into the part added on the points the occluder covers and the part added on
the visible ones. Test is not used.

    python benchmarks/occlusion_training.py --data ../shared/data/faces68 [--epochs 40] [--input-size 64]
        [--only graph_head fc_head ...] [--device cuda --workers 5 --parallel 3]

Runs go to runs/occlusion_training/<name> (--only trains those variants; every run found there is
scored); results to benchmarks/results/occlusion_training_<size>px.json/.md. The model switches this
benchmark also tried (node dropout, undirected edges, per-node edge reliability, a virtual node) left
the model after it (core.config.ModelConfig.RETIRED); their figures stay in those results files and
docs/EXPERIMENTS.md."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._runs import slug, train_on_budget  # noqa: E402
from core.checkpoint import load_model  # noqa: E402
from core.data import load_jsonl  # noqa: E402
from core.evaluate import predict_records, protocol_hidden  # noqa: E402
from core.metrics import landmark_errors  # noqa: E402

SEEDS = range(5)  # occlusion protocol seeds
VARIANTS = {
    "graph head": ("sdfl_graph.yaml", []),
    "FC head": ("sdfl_fc.yaml", []),
    "graph head, laplacian 4": ("sdfl_graph.yaml", ["loss.laplacian=4.0"]),
    "FC head, laplacian 4": ("sdfl_fc.yaml", ["loss.laplacian=4.0"]),
    "graph head, k=6": ("sdfl_graph.yaml", ["model.k=6"]),
    "FC head, k=6": ("sdfl_fc.yaml", ["model.k=6"]),
    "graph head, occlusion augmentation 0.8": ("sdfl_graph.yaml", ["augment.occlusion=0.8"]),
    "FC head, occlusion augmentation 0.8": ("sdfl_fc.yaml", ["augment.occlusion=0.8"]),
    "graph head, training seed 1": ("sdfl_graph.yaml", ["seed=1"]),
    "FC head, training seed 1": ("sdfl_fc.yaml", ["seed=1"]),
}


def occlusion_penalty(weights: Path, val_dir: Path, device: str = "cpu") -> dict:
    """Clean validation NME and the NME each occlusion seed adds to it, split into the part added on
    the points the occluder covers and the part added on the visible ones (the two sum to the whole)."""
    model, _ = load_model(weights, device)
    records, size = load_jsonl(val_dir / "val.jsonl"), model.cfg.input_size
    pred, gt, _ = predict_records(model, records, device=device)
    clean = landmark_errors(pred, gt)  # (faces, points) / inter-ocular distance
    added, on_hidden = [], []
    for s in SEEDS:
        pred, _, _ = predict_records(model, records, occlusion=s, device=device)
        diff = landmark_errors(pred, gt) - clean
        hidden = protocol_hidden(records, size, s)
        added.append(float(diff.mean()))
        on_hidden.append(float((diff * hidden).sum() / diff.size))
    return {"val_nme": float(clean.mean()), "added": added, "added_mean": float(np.mean(added)),
            "added_sd": float(np.std(added, ddof=1)), "added_on_hidden": float(np.mean(on_hidden)),
            "added_on_visible": float(np.mean(added) - np.mean(on_hidden))}


def score_runs(variants: dict, runs: Path, val_dir: Path, device: str) -> dict:
    """occlusion_penalty of every variant trained in `runs` (not only those --only trained now)."""
    rows = {}
    for name in variants:
        best = runs / slug(name) / "best.safetensors"
        if best.exists():
            rows[name] = occlusion_penalty(best, val_dir, device)
    return rows


def write_penalty_table(rows: dict, budget: str, wall: float, stem: str) -> str:
    """Print and write benchmarks/results/<stem>.json/.md: validation NME and the NME occlusion adds
    (covered / visible points) per variant."""
    trained = f"training wall {wall / 60:.0f} min" if wall else "runs trained earlier (--skip-training)"
    lines = [f"Budget: {budget}; validation split ({len(SEEDS)} occlusion seeds); {trained}.", "",
             "| variant | val NME | NME added by occlusion (mean ± sd over seeds) | of which on covered points "
             "| on visible points |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['val_nme']:.2%} | {r['added_mean']:+.2%} ± {r['added_sd']:.2%} "
                     f"| {r['added_on_hidden']:+.2%} | {r['added_on_visible']:+.2%} |")
    table = "\n".join(lines)
    out = ROOT / "benchmarks" / "results"
    (out / f"{stem}.json").write_text(json.dumps({"budget": budget, "rows": rows}, indent=1))
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    return table


def run_penalty_benchmark(doc: str, name: str, variants: dict, argv, budget: str) -> int:
    """Train `variants` on the short budget, score them clean and occluded on validation, and write
    benchmarks/results/<name>_<size>px.md; `budget` is formatted with the parsed args ({args.epochs} ...)."""
    args, _, runs, val_dir, wall = train_on_budget(doc, name, variants, argv)
    rows = score_runs(variants, runs, val_dir, args.device)
    write_penalty_table(rows, budget.format(args=args), wall, f"{name}_{args.input_size}px")
    return 0


def main(argv=None) -> int:
    return run_penalty_benchmark(__doc__, "occlusion_training", VARIANTS, argv, "{args.epochs} epochs at {args.input_size} px")


if __name__ == "__main__":
    sys.exit(main())
