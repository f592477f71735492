"""What cheaper heads would cost, before training them: the fast tier's model with one config change at a
time (random weights, exported and int8-quantised as shipped, activation ranges from random crops), timed
in ONNX Runtime (1 thread, batch 1) in rounds interleaved with the shipped int8 models and dlib's
predictor (docs/FLAGSHIP.md, "Left": the fast tier's speed).

    python benchmarks/fast_head_speed.py [--old OLD.int8.onnx] [--rounds 5]

Prints the median per-face time of each model and its ratio to the first reference (--old, e.g. session
11's tier from commit da7c418, or the shipped fast tier) and to dlib. Timing only: accuracy needs training."""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {  # model config changes to the shipped fast tier
    "channels 64": {"channels": 64},
    "whole-crop nodes": {"node_features": "whole"},
    "channels 64, whole-crop nodes": {"channels": 64, "node_features": "whole"},
    "channels 64, heatmap stride 8": {"channels": 64, "heatmap_stride": 8},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="weights/sdfl_fast.safetensors")
    ap.add_argument("--old", help="another int8 ONNX model to time beside (the reference for the ratios)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    import onnxruntime as ort
    import torch

    from core.bench_speed import interleaved
    from core.checkpoint import load_model
    from core.export_onnx import export, quantize_int8, quantized_scope
    from core.models import build_model
    from core.runners import onnx_path_for

    torch.set_num_threads(1)
    base, _ = load_model(args.weights)
    s = base.cfg.input_size
    files = {"shipped": str(onnx_path_for(args.weights, "int8"))}
    if args.old:
        files = {"old": args.old, **files}
    tmp = tempfile.mkdtemp(prefix="fast_heads_")
    crops = np.random.default_rng(0).random((16, 3, s, s), dtype=np.float32)
    for name, change in VARIANTS.items():
        model = build_model(dataclasses.replace(base.cfg, **change), base.neighbours.numpy(), base.mean_shape.numpy())
        fp32 = export(model.eval(), os.path.join(tmp, "m.onnx"))
        files[name] = str(quantize_int8(fp32, os.path.join(tmp, f"{len(files)}.int8.onnx"), crops,
                                        quantized_scope(base.cfg.head)))
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    x = np.random.default_rng(1).random((1, 3, s, s), dtype=np.float32)
    runs = {k: (lambda sess: lambda: sess.run(None, {"image": x}))(
        ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])) for k, f in files.items()}
    try:
        import dlib
        import face_recognition_models

        pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        img = (np.random.default_rng(2).random((256, 256)) * 255).astype(np.uint8)
        runs["dlib predictor"] = lambda: pred(img, dlib.rectangle(60, 60, 196, 196))
    except ImportError:
        print("dlib not installed: no dlib row", file=sys.stderr)
    times = interleaved(runs, args.rounds, runs=100, warmup=20)
    ref = next(iter(times))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        vs_dlib = f"  x{med[k] / med['dlib predictor']:.2f} dlib" if "dlib predictor" in med else ""
        print(f"{k:32s} {med[k]:6.3f} ms  x{med[k] / med[ref]:.2f} {ref}{vs_dlib}  rounds {[round(t, 3) for t in v]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
