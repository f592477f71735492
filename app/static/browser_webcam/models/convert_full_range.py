"""Rebuilds face_detection_full_range.onnx (the in-browser detector's second model, for small and distant
faces) from the BlazeFace full-range model that the mediapipe wheel bundles, and checks its decoded
boxes against MediaPipe's own.

    pip install --no-deps --target /tmp/tfl tflite==2.18.0   # the flatbuffer reader only
    PYTHONPATH=/tmp/tfl python app/static/browser_webcam/models/convert_full_range.py

The wheel's full-range model is sparse (46 DENSIFY ops over fp16 weights), which tflite2onnx (what
convert_detector.py uses for the short-range model) cannot read, so this script translates the nine
operator types it holds directly: constants are densified (CSR on the last axis) and cast to fp32,
the graph runs in NCHW (ONNX's layout) and turns NHWC again before the two output reshapes. Input
"input" (1, 3, 192, 192) in [-1, 1]; outputs "regressors" (1, 2304, 16) and "classificators"
(1, 2304, 1), as the short-range ONNX names them. The model is MediaPipe's (Apache-2.0)."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
OUT = HERE / "face_detection_full_range.onnx"
SIZE = 192
MIN_SCORE = 0.6  # the full-range graph's own candidate threshold (its decoder drops boxes below it before NMS)
MAX_BOX_ERROR_PX = 1.0
ACTIVATIONS = {0: None, 1: "Relu"}  # tflite ActivationFunctionType: NONE, RELU
OUTPUT_NAMES = {"Identity": "regressors", "Identity_1": "classificators"}


def source() -> Path:
    import mediapipe

    return Path(mediapipe.__file__).parent / "modules" / "face_detection" / "face_detection_full_range_sparse.tflite"


def anchors() -> np.ndarray:
    """One anchor per cell of the 48 x 48 stride-4 grid (MediaPipe's full-range SSD options)."""
    fm = SIZE // 4
    return np.array([((x + 0.5) / fm, (y + 0.5) / fm) for y in range(fm) for x in range(fm)])


def _index_vector(table, kind: int) -> np.ndarray:
    import tflite

    vec = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64)


def densify(tensor, values: np.ndarray) -> np.ndarray:
    """A tflite sparse constant -> its dense array; this model's format: every axis dense but the last,
    which is CSR (segments per row of the leading axes, column indices, values in row order)."""
    sp, shape = tensor.Sparsity(), tuple(tensor.ShapeAsNumpy())
    dims = [sp.DimMetadata(d) for d in range(sp.DimMetadataLength())]
    if list(sp.TraversalOrderAsNumpy()) != list(range(len(shape))) or sp.BlockMapLength() \
            or any(d.Format() != 0 for d in dims[:-1]) or dims[-1].Format() != 1:
        raise NotImplementedError(f"{tensor.Name()}: sparsity format not handled")
    seg = _index_vector(dims[-1].ArraySegments(), dims[-1].ArraySegmentsType())
    idx = _index_vector(dims[-1].ArrayIndices(), dims[-1].ArrayIndicesType())
    rows = int(np.prod(shape[:-1]))
    dense = np.zeros((rows, shape[-1]), values.dtype)
    for r in range(rows):
        dense[r, idx[seg[r]:seg[r + 1]]] = values[seg[r]:seg[r + 1]]
    return dense.reshape(shape)


def convert(path: Path):
    """The tflite model at path -> an onnx.ModelProto (see the module docstring)."""
    import onnx
    import tflite
    from onnx import helper, numpy_helper

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    g = model.Subgraphs(0)
    ops = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    dtypes = {0: np.float32, 1: np.float16, 2: np.int32}
    const: dict[int, np.ndarray] = {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        if t.Buffer() and not isinstance(raw, int) and len(raw):
            v = np.frombuffer(raw.tobytes(), dtypes[t.Type()])
            const[i] = densify(t, v) if t.Sparsity() is not None else v.reshape(tuple(t.ShapeAsNumpy()))
    nodes, inits, name = [], [], lambda i: g.Tensors(i).Name().decode()

    def init(arr, label):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), label))
        return label

    def act(out_name, code, node_inputs, op_type, **attrs):
        if ACTIVATIONS[code] is None:
            nodes.append(helper.make_node(op_type, node_inputs, [out_name], **attrs))
        else:
            nodes.append(helper.make_node(op_type, node_inputs, [out_name + "_pre"], **attrs))
            nodes.append(helper.make_node(ACTIVATIONS[code], [out_name + "_pre"], [out_name]))

    image = name(g.Inputs(0))
    nodes.append(helper.make_node("Identity", ["input"], [image]))
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = ops[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        out = op.Outputs(0)
        if kind in ("DENSIFY", "DEQUANTIZE"):  # constants: folded here
            const[out] = const[ins[0]].astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opt = (tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)()
            opt.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            w = const[ins[1]]  # conv (O, H, W, I); depthwise (1, H, W, C)
            w = w.transpose(0, 3, 1, 2) if kind == "CONV_2D" else w.transpose(3, 0, 1, 2)
            kh, kw = w.shape[2:]
            if opt.Padding() == tflite.Padding.SAME:
                if opt.StrideH() != 1 or opt.StrideW() != 1:
                    raise NotImplementedError(f"operator {k}: SAME padding with stride > 1")
                pads = [(kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2]
            else:
                pads = [0, 0, 0, 0]
            group = w.shape[0] if kind == "DEPTHWISE_CONV_2D" else 1
            act(name(out), opt.FusedActivationFunction(),
                [name(ins[0]), init(w, name(ins[1]) + "_w"), init(const[ins[2]], name(ins[2]) + "_b")], "Conv",
                strides=[opt.StrideH(), opt.StrideW()], pads=pads, group=group, kernel_shape=[kh, kw])
        elif kind == "ADD":
            opt = tflite.AddOptions()
            opt.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            act(name(out), opt.FusedActivationFunction(), [name(ins[0]), name(ins[1])], "Add")
        elif kind == "PAD":
            p = const[ins[1]].reshape(4, 2)[[0, 3, 1, 2]]  # NHWC -> NCHW
            nodes.append(helper.make_node("Pad", [name(ins[0]), init(np.r_[p[:, 0], p[:, 1]].astype(np.int64),
                                                                        name(out) + "_pads")], [name(out)]))
        elif kind == "RESIZE_BILINEAR":
            opt = tflite.ResizeBilinearOptions()
            opt.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            mode = ("align_corners" if opt.AlignCorners() else "half_pixel" if opt.HalfPixelCenters()
                    else "asymmetric")
            hw = const[ins[1]].astype(np.int64)
            sizes = init(np.r_[1, g.Tensors(out).ShapeAsNumpy()[3], hw].astype(np.int64), name(out) + "_sizes")
            nodes.append(helper.make_node("Resize", [name(ins[0]), "", "", sizes], [name(out)], mode="linear",
                                          coordinate_transformation_mode=mode))
        elif kind == "DEPTH_TO_SPACE":
            opt = tflite.DepthToSpaceOptions()
            opt.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            nodes.append(helper.make_node("DepthToSpace", [name(ins[0])], [name(out)], blocksize=opt.BlockSize(),
                                          mode="DCR"))
        elif kind == "RESHAPE":  # the output heads: back to NHWC first, then tflite's shape
            nhwc = name(out) + "_nhwc"
            nodes.append(helper.make_node("Transpose", [name(ins[0])], [nhwc], perm=[0, 2, 3, 1]))
            shape = init(np.asarray(g.Tensors(out).ShapeAsNumpy(), np.int64), name(out) + "_shape")
            nodes.append(helper.make_node("Reshape", [nhwc, shape], [OUTPUT_NAMES.get(name(out), name(out))]))
        else:
            raise NotImplementedError(f"operator {k}: {kind}")
    outputs = [helper.make_tensor_value_info(OUTPUT_NAMES[name(g.Outputs(i))], onnx.TensorProto.FLOAT,
                                             [int(d) for d in g.Tensors(g.Outputs(i)).ShapeAsNumpy()])
               for i in range(g.OutputsLength())]
    graph = helper.make_graph(nodes, "blazeface_full_range",
                              [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                              outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="convert_full_range.py",
                          ir_version=8)  # what ONNX Runtime Web 1.23 reads (the installed onnx writes newer)
    onnx.checker.check_model(m)
    return m


def main() -> int:
    import onnx
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    from convert_detector import compare, examples

    onnx.save(convert(source()), str(OUT))
    session = ort.InferenceSession(str(OUT), providers=["CPUExecutionProvider"])
    images = []
    for name, rgb in examples():
        small = cv2.resize(rgb, (rgb.shape[1] // 3, rgb.shape[0] // 3))  # a distant face in a webcam frame
        images += [(name, img) for img in (rgb, cv2.resize(rgb, (640, 480)),
                                           np.pad(small, ((160, 160), (240, 240), (0, 0))))]
    result = compare(session, 1, images, size=SIZE, anchor_xy=anchors(), min_score=MIN_SCORE)
    if result is None:
        return 1
    worst, compared = result
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB); {compared} boxes, largest difference from "
          f"MediaPipe: {worst:.2f} px")
    return 0 if worst <= MAX_BOX_ERROR_PX and compared else 1


if __name__ == "__main__":
    sys.exit(main())
