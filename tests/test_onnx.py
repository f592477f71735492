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
