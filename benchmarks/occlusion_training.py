"""Does a training choice make the graph head lose less under occlusion than the FC head? Graph and
FC heads are trained on the same budget, as shipped and with one change each: node dropout
(model.node_dropout: whole map-to-node nodes zeroed in training, so a node must be inferred from
the others: through its graph neighbours in the graph head, through the flattened vector in the FC
head), a 4x heavier Laplacian loss, or k=6 neighbours; then scored on the validation split held out
from train, clean and under the occlusion protocol over several seeds. Test is not used.

    python benchmarks/occlusion_training.py --data ../shared/data/faces68 [--epochs 40] [--input-size 64]

Runs go to runs/occlusion_training/<name>; results to benchmarks/results/occlusion_training.json/.md."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._runs import slug, train_on_budget  # noqa: E402
from core.evaluate import evaluate  # noqa: E402

NODE_DROPOUT = 0.3
SEEDS = range(5)  # occlusion protocol seeds
VARIANTS = {
    "graph head": ("sdfl_graph.yaml", []),
    "FC head": ("sdfl_fc.yaml", []),
    f"graph head, node dropout {NODE_DROPOUT}": ("sdfl_graph.yaml", [f"model.node_dropout={NODE_DROPOUT}"]),
    f"FC head, node dropout {NODE_DROPOUT}": ("sdfl_fc.yaml", [f"model.node_dropout={NODE_DROPOUT}"]),
    "graph head, laplacian 4": ("sdfl_graph.yaml", ["loss.laplacian=4.0"]),
    "FC head, laplacian 4": ("sdfl_fc.yaml", ["loss.laplacian=4.0"]),
    "graph head, k=6": ("sdfl_graph.yaml", ["model.k=6"]),
    "FC head, k=6": ("sdfl_fc.yaml", ["model.k=6"]),
}


def occlusion_penalty(weights: Path, val_dir: Path) -> dict:
    """Clean validation NME and the NME each occlusion seed adds to it."""
    clean = evaluate(weights, val_dir, "val")["nme"]
    added = [evaluate(weights, val_dir, "val", occlusion=s)["nme"] - clean for s in SEEDS]
    return {"val_nme": clean, "added": added, "added_mean": float(np.mean(added)),
            "added_sd": float(np.std(added, ddof=1))}


def main(argv=None) -> int:
    args, _, runs, val_dir, wall = train_on_budget(__doc__, "occlusion_training", VARIANTS, argv)
    rows = {}
    for name in VARIANTS:
        best = runs / slug(name) / "best.safetensors"
        if best.exists():
            rows[name] = occlusion_penalty(best, val_dir)
    budget = f"{args.epochs} epochs at {args.input_size} px"
    trained = f"training wall {wall / 60:.0f} min" if wall else "runs trained earlier (--skip-training)"
    lines = [f"Budget: {budget}; validation split ({len(SEEDS)} occlusion seeds); {trained}.", "",
             "| variant | val NME | NME added by occlusion (mean ± sd over seeds) |", "|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['val_nme']:.2%} | {r['added_mean']:+.2%} ± {r['added_sd']:.2%} |")
    table = "\n".join(lines)
    out = ROOT / "benchmarks" / "results"
    (out / "occlusion_training.json").write_text(json.dumps({"budget": budget, "rows": rows}, indent=1))
    (out / "occlusion_training.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
