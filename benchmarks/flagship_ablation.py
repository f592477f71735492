"""What the flagship's parts buy, on one short budget: local vs whole-crop node features, graph vs FC
stages on the same local nodes, and the refinement stage. Every variant is configs/sdfl_flagship.yaml
(warm start from the shipped Wasserstein head's backbone/decoder/attention, as the flagship) with one
change, trained on the same budget and scored on the validation split held out from train, clean and
under the occlusion protocol (NME added, split into covered and visible points). Test is not used.

    python benchmarks/flagship_ablation.py --data ../shared/data/faces68 [--epochs 4] [--input-size 128]

Runs go to runs/flagship_ablation/<name>; results to benchmarks/results/flagship_ablation_<size>px.json/.md."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.occlusion_training import run_penalty_benchmark  # noqa: E402

CONFIG = "sdfl_flagship.yaml"
PSEUDO_LABELS = ROOT / "runs" / "pseudo" / "unlabelled.jsonl"
VARIANTS = {
    "flagship (local nodes, graph stages, 1 refinement)": (CONFIG, []),
    "whole-crop nodes (SCC map-to-node)": (CONFIG, ["model.node_features=whole"]),
    "FC stages on the same local nodes": (CONFIG, ["model.stage_head=fc"]),
    "no refinement stage": (CONFIG, ["model.refine_stages=0"]),
    "flagship, training seed 1 (the spread between runs)": (CONFIG, ["seed=1"]),
    # made first by: python -m core.pseudo_labels --data ../shared/data/faces68 --split unlabelled --out runs/pseudo/unlabelled.jsonl
    "+ pseudo-labelled LFW faces (flagship teacher)": (CONFIG, [f"data.pseudo_labels={PSEUDO_LABELS}"]),
}
ABLATION_EPOCHS, ABLATION_INPUT = 4, 128  # 128 px: the warm-started frozen features are the 128-px model's (at 64 px every variant scored 10-14 %)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--epochs" not in argv:
        argv += ["--epochs", str(ABLATION_EPOCHS)]
    if "--input-size" not in argv:
        argv += ["--input-size", str(ABLATION_INPUT)]
    variants = dict(VARIANTS)
    if not PSEUDO_LABELS.is_file():
        print(f"{PSEUDO_LABELS} not found (python -m core.pseudo_labels ...): the pseudo-label row is left out",
              file=sys.stderr)
        variants = {k: v for k, v in variants.items() if "pseudo" not in k}
    return run_penalty_benchmark(__doc__, "flagship_ablation", variants, argv,
                                 "{args.epochs} epochs at {args.input_size} px, warm start as the flagship")


if __name__ == "__main__":
    sys.exit(main())
