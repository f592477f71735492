"""Export a landmark model to ONNX (dynamic batch axis; input `image` (B, 3, S, S) RGB in [0, 1];
outputs `coords`, `adjacency` and, with an uncertainty head, `cov`), then check it against torch
with ONNX Runtime.

    python -m core.export_onnx --weights weights/sdfl_flagship.safetensors --out weights/sdfl_flagship.onnx
        [--int8 ../shared/data/faces68]   # also <stem>.int8.onnx, calibrated on training faces

int8: static post-training quantization (ONNX Runtime, QDQ, per-channel int8 weights, uint8
activations, min-max ranges over CALIB_FACES training crops) of the layers under
quantized_scope(head): the convolutional feature layers: the backbone, plus the multi-scale fusion,
CBAM and map-to-node of a graph/FC head or the FPN decoder of a heatmap head (and the attention's
heatmap conv of a hybrid head). The adjacency, graph and covariance layers stay float, where int8
costs accuracy (graph head,
validation NME of the first shipped graph head: fp32 4.01 %, backbone 4.03 %, + fusion/CBAM/
map-to-node 4.04 %, every layer 4.86 %; fast 64 px graph head: 5.18 % fp32, 5.19 % int8; Wasserstein heatmap head: all
layers 3.86 -> 5.14 %, backbone 3.87 %, backbone + decoder 3.87 % and 1.2x faster).

FaceAligner(backend="auto") uses `<stem>.onnx` next to `<stem>.safetensors` when it exists.
Uses torch's TorchScript-based exporter (dynamo=False; needs no onnxscript and no network)."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import atomic_write

OPSET = 17
CHECK_TOLERANCE = 1e-3  # crop units: torch vs ONNX Runtime coords must agree this well
CHECK_BATCHES = (1, 3)
BACKBONE_SCOPE = "/model/backbone/"  # ONNX node-name prefixes of the layers int8 quantization touches
DECODER_SCOPE = "/model/decoder/"  # heatmap head's FPN decoder
ATTENTION_SCOPE = "/model/attention/"  # the anisotropic attention's heatmap conv (hybrid head: int8 too)
FEATURE_SCOPES = ("/model/fusion/", "/model/cbam/", "/model/to_nodes/")  # graph / FC heads' convs before the nodes
CALIB_FACES = 128  # training faces whose crops set the int8 activation ranges


class _Outputs(torch.nn.Module):
    """dict output -> tuple (coords, adjacency[, cov]) for the exporter."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        out = self.model(image)
        return tuple(out[k] for k in ("coords", "adjacency", "cov") if k in out)


@contextlib.contextmanager
def static_shapes_for_export():
    """The legacy exporter cannot export adaptive pooling / interpolation to traced sizes (as
    core.models.scc computes them from feature shapes). For the fixed input size the sizes are
    constants: during export, scc sees an F whose adaptive_avg_pool2d becomes avg_pool2d with a
    constant kernel and whose interpolate gets int sizes. Same numbers; scc itself is unchanged."""
    from .models import scc

    def pool(x, size):
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh, ow = (int(v) for v in (size if isinstance(size, (tuple, list, torch.Size)) else (size, size)))
        if h % oh or w % ow:
            return F.adaptive_avg_pool2d(x, (oh, ow))
        return F.avg_pool2d(x, (h // oh, w // ow))

    def interpolate(x, size=None, **kw):
        if size is not None:
            size = tuple(int(v) for v in size) if isinstance(size, (tuple, list, torch.Size)) else int(size)
        return F.interpolate(x, size=size, **kw)

    shim = types.SimpleNamespace(**{k: getattr(F, k) for k in dir(F) if not k.startswith("__")})
    shim.adaptive_avg_pool2d, shim.interpolate = pool, interpolate
    old = scc.F
    scc.F = shim
    try:
        yield
    finally:
        scc.F = old


def export(model, out: str | Path, opset: int = OPSET) -> Path:
    """Write `out` (atomically) from an eval-mode LandmarkModel on the CPU."""
    out = Path(out)
    model = model.cpu().eval()
    wrapper = _Outputs(model).eval()  # eval wrapper: export restores this mode on every submodule
    names = ["coords", "adjacency"] + (["cov"] if model.cfg.uncertainty else [])
    s = model.cfg.input_size
    dummy = torch.rand(2, 3, s, s)

    def write(tmp):
        with static_shapes_for_export(), warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about the int() sizes, legacy-exporter notice
            torch.onnx.export(wrapper, (dummy,), tmp, dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=names, dynamic_axes={k: {0: "batch"} for k in ["image", *names]},
                              do_constant_folding=True)
        import onnx

        onnx.checker.check_model(onnx.load(tmp))

    atomic_write(out, write)
    return out


def quantized_scope(head: str) -> tuple[str, ...]:
    """ONNX node-name prefixes quantized for a model head: the backbone, plus the fusion / CBAM /
    map-to-node layers of a graph or FC head, the FPN decoder of a heatmap head, or the decoder and the
    attention's heatmap conv of a hybrid head (the adjacency, graph, ring-sampling and read-out layers
    stay float). The hybrid's attention in int8 (session 20, `python benchmarks/int8_scope.py`):
    validation NME +0.002 / +0.006 points (flagship / fast tier), 6-9 % less time per face."""
    return {"heatmap": (BACKBONE_SCOPE, DECODER_SCOPE), "hybrid": (BACKBONE_SCOPE, DECODER_SCOPE, ATTENTION_SCOPE),
            "graph": (BACKBONE_SCOPE, *FEATURE_SCOPES),
            "fc": (BACKBONE_SCOPE, *FEATURE_SCOPES)}.get(head, (BACKBONE_SCOPE,))


def quantize_int8(onnx_file: str | Path, out: str | Path, crops: np.ndarray,
                  scope: tuple[str, ...] = (BACKBONE_SCOPE,)) -> Path:
    """Write `out` (atomically): `onnx_file` with the layers whose node names start with one of
    `scope` statically quantized to int8, activation ranges from `crops` ((K, 3, S, S) float32 in
    [0, 1], training images only)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    crops = np.asarray(crops, dtype=np.float32)
    if crops.ndim != 4 or crops.shape[1] != 3 or len(crops) == 0:
        raise ValueError(f"calibration crops must have shape (K>0, 3, S, S), got {crops.shape}")

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(crops)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x[None]}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".int8.") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(onnx_file), str(pre), skip_symbolic_shape=True)
        keep_float = [n.name for n in onnx.load(str(pre)).graph.node if not n.name.startswith(tuple(scope))]

        def write(path):
            with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                warnings.simplefilter("ignore")
                quantize_static(str(pre), path, _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
            onnx.checker.check_model(onnx.load(path))

        atomic_write(out, write)
    return out


def calibration_crops(data: str | Path, size: int, dc, n: int = CALIB_FACES, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) default-protocol crops of faces drawn from the training part of data
    config `dc` (the checkpoint's: core.checkpoint.training_data_config), read from `data`; never
    its validation part, never test."""
    from .data import train_val_split
    from .evaluate import protocol_crops

    train, _ = train_val_split(dc, data)
    idx = np.random.default_rng(seed).permutation(len(train))[:n]
    crops = [c for c, _ in protocol_crops([train[i] for i in sorted(idx)], size)]
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def compare(model, onnx_file: str | Path, batches=CHECK_BATCHES, seed: int = 0) -> dict[str, float]:
    """Max |torch - ORT| per output over random inputs of the given batch sizes (CPU provider)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    s = model.cfg.input_size
    g = torch.Generator().manual_seed(seed)
    worst = {k: 0.0 for k in names}
    for b in batches:
        x = torch.rand(b, 3, s, s, generator=g)
        with torch.inference_mode():
            ref = model.eval()(x)
        for k, v in zip(names, sess.run(names, {"image": x.numpy()})):
            worst[k] = max(worst[k], float(np.abs(v - ref[k].numpy()).max()))
    return worst


def main(argv=None) -> int:
    from .checkpoint import CheckpointError, DEFAULT_WEIGHTS, load_model, training_data_config

    ap = argparse.ArgumentParser(description="Export a landmark model to ONNX.")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="<stem>.safetensors (with <stem>.json)")
    ap.add_argument("--out", default="", help="output .onnx (default: <stem>.onnx next to the weights)")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--int8", metavar="DATA", help="also write <out stem>.int8.onnx, calibrated on DATA's training "
                    "faces (faces68 format)")
    args = ap.parse_args(argv)
    try:
        model, meta = load_model(args.weights, "cpu")
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .inference import onnx_path_for

    out = Path(args.out) if args.out else onnx_path_for(args.weights)
    export(model, out, args.opset)
    diff = compare(model, out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); max |torch - onnxruntime|: "
          + ", ".join(f"{k} {v:.2e}" for k, v in diff.items()))
    if diff["coords"] > CHECK_TOLERANCE:
        print(f"error: coords differ by more than {CHECK_TOLERANCE} crop units", file=sys.stderr)
        return 1
    if args.int8:
        from .config import ConfigError
        from .data import DataError

        try:
            crops = calibration_crops(args.int8, model.cfg.input_size, training_data_config(meta))
        except (DataError, OSError, ConfigError) as e:
            print(f"error: int8 calibration data: {e}", file=sys.stderr)
            return 2
        q = quantize_int8(out, out.with_suffix(".int8.onnx"), crops, quantized_scope(model.cfg.head))
        diff = compare(model, q)
        print(f"wrote {q} ({q.stat().st_size / 2**20:.1f} MiB, {len(crops)} calibration faces); "
              f"max |torch - int8|: coords {diff['coords']:.2e} crop units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
