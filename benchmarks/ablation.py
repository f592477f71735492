"""Short-budget ablation of the structure-coherent design; choices are read on the validation split
held out from train (by photo), and test is reported beside it for reference only.

    python benchmarks/ablation.py --data ../shared/data/faces68 [--epochs 12] [--input-size 128] [--parallel 2]

Every variant trains with the same budget from configs/sdfl_graph.yaml plus one override, into
runs/ablation/<name>; results go to benchmarks/results/ablation.json and ablation.md."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._runs import slug, train_on_budget  # noqa: E402
from core.evaluate import evaluate  # noqa: E402

CONFIG = "sdfl_graph.yaml"
VARIANTS = {
    "graph, soft wing, laplacian, dynamic, k=3 (reference)": (CONFIG, []),
    "FC head": (CONFIG, ["model.head=fc"]),
    "L1 instead of Soft Wing": (CONFIG, ["loss.coord=l1"]),
    "no Laplacian loss": (CONFIG, ["loss.laplacian=0"]),
    "binary adjacency": (CONFIG, ["model.adjacency=binary"]),
    "k=1": (CONFIG, ["model.k=1"]),
    "k=6": (CONFIG, ["model.k=6"]),
}


def main(argv=None) -> int:
    args, data, runs, val_dir, wall = train_on_budget(__doc__, "ablation", VARIANTS, argv)
    rows = {}
    for name in VARIANTS:
        best = runs / slug(name) / "best.safetensors"
        if not best.exists():
            continue
        val = evaluate(best, val_dir, "val")
        test = evaluate(best, data, "test")
        rows[name] = {"val_nme": val["nme"], "val_fr10": val["fr10"], "test_nme": test["nme"], "test_fr10": test["fr10"],
                      "test_auc10": test["auc10"]}
        print(f"{name:55s} val NME {val['nme']:.3%}  test NME {test['nme']:.3%}", flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"epochs": args.epochs, "input_size": args.input_size, "wall_s": round(wall), "rows": rows}
    (out / "ablation.json").write_text(json.dumps(meta, indent=1))
    lines = [f"Same budget for every row: {args.epochs} epochs at {args.input_size} px from configs/sdfl_graph.yaml "
             f"with one change each; choose on **val** (held out from train by photo); test for reference only.", "",
             "| variant | val NME | val FR@10 | test NME | test FR@10 | test AUC@10 |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['val_nme']:.2%} | {r['val_fr10']:.2%} | {r['test_nme']:.2%} | {r['test_fr10']:.2%} | {r['test_auc10']:.4f} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
