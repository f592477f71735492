"""Which layers int8 may touch: a shipped model's validation NME (clean, occlusion seed 0, blur seed 0)
in torch, as its shipped int8 export, and re-quantised with more layers in scope (core.export_onnx's
quantized_scope plus --add), with both int8 files timed in ONNX Runtime (1 thread, batch 1, 5
interleaved rounds). Validation only (the split held out from train); the shipped files are not touched.

    python benchmarks/int8_scope.py --data ../shared/data/faces68 [--stems sdfl_fast sdfl_flagship]
        [--add /model/attention/]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--stems", nargs="+", default=["sdfl_fast", "sdfl_flagship"])
    ap.add_argument("--add", nargs="+", default=["/model/attention/"], help="ONNX node-name prefixes to add")
    args = ap.parse_args(argv)
    import onnxruntime as ort
    import torch

    from core.bench_speed import interleaved
    from core.checkpoint import load_model, training_data_config
    from core.data import train_val_split
    from core.evaluate import OnnxModel, predict_records
    from core.export_onnx import calibration_crops, quantize_int8, quantized_scope
    from core.metrics import nme

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    for stem in args.stems:
        w = ROOT / "weights" / f"{stem}.safetensors"
        model, meta = load_model(w)
        model.eval()
        _, records = train_val_split(training_data_config(meta), args.data)
        tmp = Path(tempfile.mkdtemp(prefix="int8_scope_"))
        for suffix in (".safetensors", ".json", ".onnx"):
            shutil.copy(w.with_suffix(suffix), tmp / f"{stem}{suffix}")
        crops = calibration_crops(args.data, model.cfg.input_size, training_data_config(meta))
        wider = tmp / f"{stem}.int8.onnx"
        quantize_int8(tmp / f"{stem}.onnx", wider, crops, quantized_scope(model.cfg.head) + tuple(args.add))
        x = np.random.default_rng(0).random((1, 3, model.cfg.input_size, model.cfg.input_size), dtype=np.float32)
        rows = [("torch fp32", model, None),
                ("int8 as shipped", OnnxModel(w, "int8", model.cfg), w.with_suffix(".int8.onnx")),
                ("int8 + " + " ".join(args.add), OnnxModel(tmp / f"{stem}.safetensors", "int8", model.cfg), wider)]
        sessions = {name: ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
                    for name, _, f in rows if f is not None}
        ms = {k: statistics.median(v) for k, v in interleaved(
            {k: (lambda sess: lambda: sess.run(None, {"image": x}))(sess) for k, sess in sessions.items()},
            rounds=5, runs=60, warmup=10).items()}
        for name, m, _ in rows:
            with torch.inference_mode():
                figs = [100 * float(np.mean(nme(*predict_records(m, records, **kw)[:2])))
                        for kw in ({}, {"occlusion": 0}, {"blur": 0})]
            timing = f"  {ms[name]:.3f} ms/face" if name in ms else ""
            print(f"{stem:14s} {name:28s} validation clean / occluded / blurred "
                  f"{figs[0]:.3f} / {figs[1]:.3f} / {figs[2]:.3f} %{timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
