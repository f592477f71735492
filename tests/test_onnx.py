"""ONNX export of the tiny models: torch and ONNX Runtime agree; FaceAligner picks the backend."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from core.checkpoint import load_model
from core.export_onnx import CHECK_TOLERANCE, compare, export, main
from core.inference import FaceAligner, onnx_path_for

torch.set_num_threads(1)
BOX = [20.0, 30.0, 90.0, 100.0]


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    """The tiny graph model copied to a fresh folder with its <stem>.onnx next to it."""
    d = tmp_path_factory.mktemp("onnx")
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_weights.with_suffix(suffix), d / f"tiny{suffix}")
    weights = d / "tiny.safetensors"
    assert main(["--weights", str(weights)]) == 0  # CLI: default out = <stem>.onnx
    return weights


def test_torch_and_onnx_agree(exported):
    import onnxruntime as ort

    model, _ = load_model(exported)
    onnx_file = onnx_path_for(exported)
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["coords", "adjacency", "cov"]
    for b in (1, 3):  # dynamic batch axis
        x = torch.rand(b, 3, 64, 64, generator=torch.Generator().manual_seed(b))
        with torch.inference_mode():
            ref = model(x)
        coords, adj, cov = sess.run(None, {"image": x.numpy()})
        assert coords.shape == (b, 68, 2) and adj.shape == (b, 68, 68) and cov.shape == (b, 68, 2, 2)
        assert np.abs(coords - ref["coords"].numpy()).max() < CHECK_TOLERANCE  # crop units
        assert np.abs(adj - ref["adjacency"].numpy()).max() < 1e-4
        assert np.abs(cov - ref["cov"].numpy()).max() < 1e-5


def test_fc_model_exports(tiny_fc_weights, tmp_path):
    model, _ = load_model(tiny_fc_weights)
    out = export(model, tmp_path / "fc.onnx")
    diff = compare(model, out)
    assert diff["coords"] < CHECK_TOLERANCE and diff["adjacency"] < 1e-6


def test_aligner_backends(exported):
    img = np.random.default_rng(0).integers(0, 256, (120, 140, 3), dtype=np.uint8)
    onnx = FaceAligner(exported, detector="none", threads=1)  # auto: the .onnx exists
    assert onnx.backend == "onnx" and onnx.provider == "CPUExecutionProvider" and onnx.device_name
    assert onnx.runner.session.get_session_options().intra_op_num_threads == 1
    ref = FaceAligner(exported, backend="torch", detector="none", threads=1)
    a = onnx.predict(img, boxes=[BOX, [40, 10, 130, 100]])
    b = ref.predict(img, boxes=[BOX, [40, 10, 130, 100]])
    side = 1.3 * 90  # px per crop unit of the larger box
    for fa, fb in zip(a, b):
        assert np.abs(fa.landmarks - fb.landmarks).max() < CHECK_TOLERANCE * side
        assert np.abs(fa.adjacency - fb.adjacency).max() < 1e-4


def test_stale_or_missing_onnx(exported, tmp_path):
    onnx_file = onnx_path_for(exported)
    st = os.stat(onnx_file)
    try:
        os.utime(onnx_file, (st.st_atime, st.st_mtime - 3600))  # older than the weights
        with pytest.warns(UserWarning, match="older"):
            fa = FaceAligner(exported, detector="none")
        assert fa.backend == "torch"
    finally:
        os.utime(onnx_file, (st.st_atime, st.st_mtime))
    lonely = tmp_path / "lonely.safetensors"
    shutil.copy(exported, lonely)
    shutil.copy(exported.with_suffix(".json"), tmp_path / "lonely.json")
    assert FaceAligner(lonely, detector="none").backend == "torch"
    with pytest.raises(FileNotFoundError, match="lonely.onnx"):
        FaceAligner(lonely, backend="onnx", detector="none")


def test_json_and_onnx_alone_are_a_model(exported, tmp_path):
    """What a Space ships (no safetensors): ONNX Runtime runs it, the app's weights check accepts it,
    and asking for torch says which file is missing."""
    from app.state import missing_weights

    for suffix in (".json", ".onnx"):
        shutil.copy(exported.with_suffix(suffix), tmp_path / f"bare{suffix}")
    bare = tmp_path / "bare.safetensors"
    img = np.zeros((120, 120, 3), np.uint8)
    faces = FaceAligner(bare, detector="none").predict(img, boxes=[BOX])
    ref = FaceAligner(exported, detector="none").predict(img, boxes=[BOX])
    assert np.abs(faces[0].landmarks - ref[0].landmarks).max() < 1e-4
    assert missing_weights(bare) == [] and missing_weights(tmp_path / "none.safetensors") == [
        str(tmp_path / "none.safetensors"), str(tmp_path / "none.json")]
    with pytest.raises(FileNotFoundError, match="bare.safetensors"):
        FaceAligner(bare, backend="torch", detector="none")


# ---------------------------------------------------------------- int8 (static quantization, conv feature layers)
@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    from synth_faces import write_split

    root = tmp_path_factory.mktemp("calib")
    write_split(root, n=12, seed=3)
    assert main(["--weights", str(exported), "--int8", str(root)]) == 0
    return onnx_path_for(exported, "int8")


def test_int8_quantizes_the_conv_feature_layers_only(quantized):
    import onnx

    from core.export_onnx import BACKBONE_SCOPE, FEATURE_SCOPES, quantized_scope

    scope = quantized_scope("graph")
    assert scope == quantized_scope("fc") == (BACKBONE_SCOPE, *FEATURE_SCOPES)
    graph = onnx.load(str(quantized)).graph
    nodes, weights = graph.node, {t.name for t in graph.initializer}
    q = [n.name for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert q, "no quantized layer"
    convs_in = [n for n in nodes if n.op_type == "Conv" and n.name.startswith(scope)]
    # every backbone / fusion / CBAM / map-to-node conv reads int8 weights; no adjacency, graph or
    # covariance layer's weight is (it may read a dequantized activation: map-to-node's output)
    int8_weights = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    assert all(c.input[1] in int8_weights for c in convs_in)
    assert {p for p in scope if any(c.name.startswith(p) for c in convs_in)} == set(scope)
    outside = [n for n in nodes if n.op_type in ("Conv", "MatMul", "Gemm") and not n.name.startswith(scope)]
    assert outside and all(n.input[1] not in int8_weights for n in outside)


def _int8_export_nodes(weights, tmp_path):
    """Export `weights` with --int8 (8 synthetic calibration faces); its int8 graph's nodes, the outputs of
    its DequantizeLinear nodes (int8 weights feed a layer through one) and its Conv nodes."""
    import onnx

    from synth_faces import write_split

    root = tmp_path / "calib"
    write_split(root, n=8, seed=4)
    assert main(["--weights", str(weights), "--int8", str(root)]) == 0
    nodes = onnx.load(str(onnx_path_for(weights, "int8"))).graph.node
    dq_out = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"}
    return nodes, dq_out, [n for n in nodes if n.op_type == "Conv"]


def test_int8_heatmap_head_quantizes_backbone_and_decoder(tiny_heatmap_weights, tmp_path):

    from core.export_onnx import BACKBONE_SCOPE, DECODER_SCOPE, quantized_scope

    assert quantized_scope("heatmap") == (BACKBONE_SCOPE, DECODER_SCOPE)
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_heatmap_weights.with_suffix(suffix), tmp_path / f"hm{suffix}")
    weights = tmp_path / "hm.safetensors"
    nodes, dq_out, convs = _int8_export_nodes(weights, tmp_path)
    inside = [n for n in convs if n.name.startswith((BACKBONE_SCOPE, DECODER_SCOPE))]
    assert any(n.name.startswith(DECODER_SCOPE) for n in inside)
    assert all(n.input[1] in dq_out for n in inside)
    outside = [n for n in convs if n not in inside]  # the anisotropic attention's 1x1 heatmap conv
    assert outside and all(n.input[1] not in dq_out for n in outside)


def test_int8_stays_close_to_fp32(exported, quantized):
    model, _ = load_model(exported)
    diff = compare(model, quantized)
    assert diff["coords"] < 0.02  # crop units; the shipped model: validation NME 4.01 % -> 4.03 %


def test_aligner_int8(exported, quantized):
    img = np.random.default_rng(0).integers(0, 256, (120, 140, 3), dtype=np.uint8)
    fa = FaceAligner(exported, detector="none", precision="int8", threads=1)
    assert fa.backend == "onnx" and fa.precision == "int8"
    assert fa.runner.path == quantized
    ref = FaceAligner(exported, backend="torch", detector="none", threads=1)
    a, b = fa.predict(img, boxes=[BOX]), ref.predict(img, boxes=[BOX])
    assert np.abs(a[0].landmarks - b[0].landmarks).max() < 0.02 * 1.3 * 70
    with pytest.raises(ValueError, match="ONNX Runtime"):
        FaceAligner(exported, backend="torch", detector="none", precision="int8")
    with pytest.raises(ValueError, match="precision"):
        FaceAligner(exported, detector="none", precision="fp16")


def test_int8_missing_file_names_the_command(exported, tmp_path):
    lonely = tmp_path / "lonely.safetensors"
    shutil.copy(exported, lonely)
    shutil.copy(exported.with_suffix(".json"), tmp_path / "lonely.json")
    with pytest.raises(FileNotFoundError, match=r"lonely\.int8\.onnx.*--int8"):
        FaceAligner(lonely, detector="none", precision="int8")


def test_int8_bad_calibration_data_exit_2(exported, tmp_path, capsys):
    assert main(["--weights", str(exported), "--out", str(tmp_path / "x.onnx"), "--int8", str(tmp_path / "none")]) == 2
    assert "calibration data" in capsys.readouterr().err


def test_app_webcam_runs_int8_when_it_exists(exported, quantized, tiny_fc_weights):
    from app.ui import load_models

    m = load_models(exported, tiny_fc_weights, detector="none", threads=1, webcam_slots=1)
    assert [a.precision for a in m.video] == ["int8"] and m.graph.precision == m.fc.precision == "fp32"
    m = load_models(exported, tiny_fc_weights, detector="none", threads=1, webcam_slots=1, backend="torch")
    assert m.video[0].precision == "fp32" and m.video[0].backend == "torch"


def test_evaluate_scores_the_onnx_exports(exported, quantized, tmp_path):
    from core.evaluate import evaluate
    from synth_faces import write_split

    write_split(tmp_path, n=4, split="test", seed=5)
    ref = evaluate(exported, tmp_path, "test")
    fp32 = evaluate(exported, tmp_path, "test", precision="fp32")
    int8 = evaluate(exported, tmp_path, "test", precision="int8")
    assert ref["runtime"] == "torch" and fp32["runtime"] == "onnxruntime fp32" and int8["runtime"] == "onnxruntime int8"
    assert fp32["nme"] == pytest.approx(ref["nme"], abs=1e-4)
    assert int8["nme"] == pytest.approx(ref["nme"], rel=0.1)
    assert "calibration" in int8  # the covariance output comes through
    with pytest.raises(ValueError, match="read-out"):
        evaluate(exported, tmp_path, "test", precision="int8", readout="get_bc")


def test_exports_get_the_usual_file_permissions(exported, quantized):
    umask = os.umask(0)
    os.umask(umask)
    for f in (onnx_path_for(exported), quantized, exported):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f  # not mkstemp's 0600


def test_profile_onnx_accounts_for_the_exported_models_nodes(exported, capsys):
    """benchmarks/profile_onnx.py: kernel time per operator type sums to the per-node total, the graph's
    convolutions are among the operators; a missing file is a message and exit code 2, not a traceback."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from profile_onnx import main as profile_main, profile

    by_op, by_node, nodes = profile(str(onnx_path_for(exported)), threads=1, runs=3)
    assert nodes == len(by_node) > 10 and "Conv" in by_op
    assert abs(sum(by_op.values()) - sum(by_node.values())) < 1e-6 * sum(by_op.values()) + 1e-9
    assert profile_main([str(onnx_path_for(exported)), "--runs", "2", "--top", "3"]) == 0
    assert "profiled ms per run" in capsys.readouterr().out
    assert profile_main([str(exported.parent / "missing.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_int8_hybrid_head_also_quantizes_the_attention_conv(tmp_path):
    """The hybrid head's int8 export: backbone, decoder and the attention's heatmap conv take int8
    weights; the graph stages' layers stay float."""

    from conftest import TINY_CONFIG, synthetic_shapes
    from core.checkpoint import save_weights
    from core.config import ModelConfig
    from core.export_onnx import ATTENTION_SCOPE, BACKBONE_SCOPE, DECODER_SCOPE, quantized_scope
    from core.graph import neighbourhood
    from core.models import build_model

    assert quantized_scope("hybrid") == (BACKBONE_SCOPE, DECODER_SCOPE, ATTENTION_SCOPE)
    shapes = synthetic_shapes()
    cfg = ModelConfig(**{**TINY_CONFIG, "head": "hybrid", "readout": "get_bc"})
    torch.manual_seed(0)
    weights = tmp_path / "hy.safetensors"
    save_weights(weights, build_model(cfg, neighbourhood(shapes, cfg.k), shapes.mean(0)).eval(),
                 {"train_data": "synthetic"})
    nodes, dq_out, convs = _int8_export_nodes(weights, tmp_path)
    attention = [n for n in convs if n.name.startswith(ATTENTION_SCOPE)]
    assert attention and all(n.input[1] in dq_out for n in attention)
    linear = [n for n in nodes if n.op_type in ("MatMul", "Gemm") and "/stages." in n.name]
    assert linear and all(n.input[1] not in dq_out for n in linear)
