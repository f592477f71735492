"""Inference API on tiny random models: Face/FaceAligner with given boxes, crop/uncrop maths,
detectors on the astronaut photo, input validation and the CLI (video mode: tests/test_video_mode.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core import images
from core.detectors import HaarDetector, MediaPipeDetector, MP_SHORT_CALIBRATION, box_iou
from core.images import load_image
from core.inference import Face, FaceAligner, warp_crop
from core.overlays import graph_edges
from core.landmarks import CROP_SCALE, apply_affine, crop_from_box, crop_matrix, invert_affine

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "app" / "examples" / "astronaut.jpg"
FACE_BOX = np.array([180.0, 95.0, 268.0, 180.0])  # roughly the astronaut's landmark box
RING = 0.25


@pytest.fixture(scope="module")
def aligner(tiny_weights):
    return FaceAligner(tiny_weights, backend="torch", detector="none", threads=1)


# eye centres of the plain ring sit at mean angles 38.5 and 44.5 (x 2 pi / 68): their line is level,
# left to right, when the ring turns the angle between them to the top (y down: -90 degrees)
RING_PHASE = -np.pi / 2 - 2 * np.pi * 41.5 / 68
UNIT_RING = np.stack([np.cos(2 * np.pi * np.arange(68) / 68 + RING_PHASE), np.sin(2 * np.pi * np.arange(68) / 68 + RING_PHASE)], 1)
UNIT_RING /= np.ptp(UNIT_RING, 0).max() / 2  # its landmark box: a square of side 2 exactly


class CentroidRunner:
    """Stands in for the model: the landmarks on a circle of radius RING (crop units) around the
    intensity centroid of the crop, covariance 1 crop pixel^2. Makes the crop -> image mapping
    checkable in pixels. The ring is turned so that its eye points (36-41, 42-47) lie level, as a
    model's upright face does (video mode turns its crops by that eye line)."""

    outputs = ["coords", "adjacency", "cov"]

    def __init__(self, size, ring=None):
        self.size, self.ring = size, RING if ring is None else ring

    def __call__(self, x):
        w = x[:, 0].astype(np.float64)
        u = np.arange(self.size, dtype=np.float64)
        tot = w.sum((1, 2))
        cx, cy = (w.sum(1) * u).sum(1) / tot, (w.sum(2) * u).sum(1) / tot
        b = x.shape[0]
        ring = self.ring * UNIT_RING
        coords = np.stack([cx, cy], 1)[:, None] / self.size + ring
        cov = np.broadcast_to(np.eye(2) / self.size ** 2, (b, 68, 2, 2)).copy()
        return {"coords": coords.astype(np.float32), "adjacency": np.full((b, 68, 68), 1 / 68, np.float32),
                "cov": cov.astype(np.float32)}


def blob_image(h, w, x, y, sigma=5.0):
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return np.repeat((g * 255).round().astype(np.uint8)[:, :, None], 3, 2)


# --- API on the tiny model ----------------------------------------------------------------------
def test_face_api_with_boxes(aligner, astronaut):
    faces = aligner.predict(astronaut, boxes=[FACE_BOX])
    assert len(faces) == 1
    f = faces[0]
    assert isinstance(f, Face)
    assert f.landmarks.shape == (68, 2) and f.landmarks.dtype == np.float32
    assert f.covariance.shape == (68, 2, 2) and f.covariance.dtype == np.float32
    assert f.adjacency.shape == (68, 68) and f.adjacency.dtype == np.float32
    assert np.allclose(f.box, FACE_BOX) and f.score == 1.0
    # adjacency: rows sum to 1 over the sparse neighbourhood, zero elsewhere
    assert np.allclose(f.adjacency.sum(1), 1, atol=1e-5)
    assert np.all(f.adjacency[aligner.neighbours == 0] < 1e-6)
    assert aligner.neighbours.shape == (68, 68) and set(np.unique(aligner.neighbours)) <= {0.0, 1.0}
    assert aligner.input_size == 64 and aligner.provider == "torch-cpu" and aligner.device_name
    # landmarks land near the box (random model ~ mean shape of the crop)
    c = f.landmarks.mean(0)
    assert FACE_BOX[0] < c[0] < FACE_BOX[2] and FACE_BOX[1] < c[1] < FACE_BOX[3]
    # covariance symmetric positive definite in pixels^2
    assert np.allclose(f.covariance, f.covariance.transpose(0, 2, 1), atol=1e-3)
    assert (np.linalg.eigvalsh(f.covariance.astype(np.float64)) > 0).all()
    d = json.loads(json.dumps(f.to_dict()))
    assert set(d) == {"box", "score", "confidence", "landmarks", "covariance"} and len(d["landmarks"]) == 68
    assert "adjacency" in f.to_dict(adjacency=True)
    assert len(graph_edges(aligner.neighbours)) > 68


def test_several_faces_batched(aligner, astronaut):
    boxes = [FACE_BOX, FACE_BOX + [200, 200, 200, 200], FACE_BOX + [-150, 250, -150, 250]]
    calls = []
    run = aligner.runner.__call__

    class Spy:
        outputs = aligner.runner.outputs

        def __call__(self, x):
            calls.append(x.shape[0])
            return run(x)

    real, aligner.runner = aligner.runner, Spy()
    try:
        faces = aligner.predict(astronaut, boxes=np.array(boxes))
    finally:
        aligner.runner = real
    assert len(faces) == 3 and calls == [3, 3]  # one batch per pass
    single = aligner.predict(astronaut, boxes=boxes[1])[0]
    assert np.allclose(single.landmarks, faces[1].landmarks, atol=1e-3)
    assert aligner.predict(astronaut, boxes=np.zeros((0, 4))) == []


def test_fc_model_uniform_adjacency(tiny_fc_weights, astronaut):
    fa = FaceAligner(tiny_fc_weights, backend="torch", detector="none")
    f = fa.predict(astronaut, boxes=FACE_BOX)[0]
    m = fa.neighbours
    assert np.allclose(f.adjacency, m / m.sum(1, keepdims=True), atol=1e-6)


def test_missing_weights_names_path(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        FaceAligner(missing)
    with pytest.raises(ValueError, match="backend"):
        FaceAligner(missing, backend="tensorflow")


def test_default_weights_path_in_error(monkeypatch, tmp_path):
    import core.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "DEFAULT_WEIGHTS", tmp_path / "sdfl_graph.safetensors")
    with pytest.raises(FileNotFoundError, match="sdfl_graph.safetensors"):
        FaceAligner()


def test_bad_boxes(aligner, astronaut):
    for bad in ([1, 2, 3], [[10, 10, 5, 20]], [[0, 0, np.nan, 5]]):
        with pytest.raises(ValueError, match="box"):
            aligner.predict(astronaut, boxes=bad)


# --- crop / uncrop maths ------------------------------------------------------------------------
def test_integer_shift_moves_landmarks_exactly(aligner, astronaut):
    """Zero-padding the image by (tx, ty) and shifting the box alike gives identical crops, so the
    landmarks must move by exactly (tx, ty)."""
    tx, ty = 37, 21
    padded = np.zeros((astronaut.shape[0] + ty, astronaut.shape[1] + tx, 3), np.uint8)
    padded[ty:, tx:] = astronaut
    a = aligner.predict(astronaut, boxes=FACE_BOX)[0]
    b = aligner.predict(padded, boxes=FACE_BOX + [tx, ty, tx, ty])[0]
    assert np.abs(b.landmarks - a.landmarks - [tx, ty]).max() < 1e-3
    assert np.abs(b.covariance - a.covariance).max() < 1e-3


def test_crop_uncrop_with_centroid_model(aligner):
    """A blob at a known sub-pixel position is found there (pixel centres at integers), and the
    covariance scales with (side / S)^2."""
    x, y = 141.3, 97.6
    img = blob_image(240, 320, x, y)
    real, aligner.runner = aligner.runner, CentroidRunner(aligner.input_size)
    try:
        for box in ([120, 80, 170, 120], [100, 50, 190, 140]):
            f = aligner.predict(img, boxes=box)[0]
            assert np.abs(f.landmarks.mean(0) - [x, y]).max() < 0.05
            # the final crop (pass 2) has side 2 x the ring's extent in pixels
            side = np.ptp(f.landmarks[:, 0]) / (2 * RING)
            side1 = crop_from_box(box)[2]
            assert abs(side - CROP_SCALE * 2 * RING * side1) < 1e-3 * side1
            assert np.allclose(f.covariance[0], np.eye(2) * (side / aligner.input_size) ** 2, rtol=1e-3, atol=1e-6)
    finally:
        aligner.runner = real


def test_mirror_ensemble_keeps_the_crop_geometry(aligner, tiny_weights):
    """FaceAligner(mirror=True) wraps its runner in core.mirror.MirrorRunner; around the centroid model
    the averaged answer still sits on the blob (the mirror image's answer maps back to the same pixels)."""
    from core.mirror import MirrorRunner

    x, y = 141.3, 97.6
    img = blob_image(240, 320, x, y)
    real, aligner.runner = aligner.runner, MirrorRunner(CentroidRunner(aligner.input_size), aligner.input_size)
    try:
        f = aligner.predict(img, boxes=[120, 80, 170, 120])[0]
        assert np.abs(f.landmarks.mean(0) - [x, y]).max() < 0.05
    finally:
        aligner.runner = real
    mirrored = FaceAligner(tiny_weights, backend="torch", detector="none", threads=1, mirror=True)
    assert isinstance(mirrored.runner, MirrorRunner) and mirrored.provider == aligner.provider
    face = mirrored.predict(img, boxes=[120, 80, 170, 120])[0]
    assert face.landmarks.shape == (68, 2) and np.isfinite(face.landmarks).all()


def test_reduced_decode_maps_to_file_pixels(aligner, tmp_path, monkeypatch):
    """A file decoded at half resolution (large-file path) still reports file pixels."""
    x, y = 301.4, 188.7
    img = blob_image(480, 640, x, y, sigma=8.0)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), img)
    monkeypatch.setattr(images, "DECODE_MAX_PIXELS", 100_000)  # 640x480 now counts as large
    rgb, scale = images.decode_image(path)
    assert rgb.shape == (240, 320, 3) and scale == 2.0
    real, aligner.runner = aligner.runner, CentroidRunner(aligner.input_size)
    try:
        f = aligner.predict(path, boxes=[x - 40, y - 40, x + 40, y + 40])[0]
    finally:
        aligner.runner = real
    assert np.abs(f.landmarks.mean(0) - [x, y]).max() < 0.3
    assert np.abs(f.box - [x - 40, y - 40, x + 40, y + 40]).max() < 1e-6


def test_closed_form_invert_affine_matches_lapack():
    for angle, flip in ((0.0, False), (23.0, True)):
        m = crop_matrix(123.4, 56.7, 89.1, 192, angle, flip)
        r_inv = np.linalg.inv(m[:, :2])
        reference = np.hstack([r_inv, (-r_inv @ m[:, 2])[:, None]])
        assert np.allclose(invert_affine(m), reference, rtol=1e-12, atol=1e-12)


def test_warp_crop_antialias_keeps_geometry():
    """The INTER_AREA path for large faces keeps the image->crop mapping of the plain warp."""
    x, y = 1203.4, 815.2
    img = blob_image(1600, 2000, x, y, sigma=30.0)
    m = crop_matrix(*crop_from_box((x - 300, y - 300, x + 300, y + 300)), out_size=64)  # ~12x shrink
    crop = warp_crop(img, m, 64)[:, :, 0].astype(np.float64)
    u = np.arange(64)
    c = np.array([(crop.sum(0) * u).sum(), (crop.sum(1) * u).sum()]) / crop.sum()
    assert np.abs(c - apply_affine(m, np.array([x, y]))).max() < 0.1


# --- detectors ----------------------------------------------------------------------------------
def test_mediapipe_finds_astronaut(astronaut):
    det = MediaPipeDetector()
    dets = det.detect(astronaut)
    assert len(dets) == 1 and dets[0].score > 0.7 and dets[0].source == "mediapipe_short"
    assert box_iou(dets[0].box, FACE_BOX) > 0.6
    assert np.allclose(dets[0].box, MP_SHORT_CALIBRATION.apply(dets[0].raw_box))
    # also on a BGR-loaded, downscaled-for-detection large copy
    big = cv2.resize(astronaut, (2048, 2048))
    dets_big = det.detect(big)
    assert len(dets_big) == 1 and box_iou(dets_big[0].box / 4, FACE_BOX) > 0.5
    det.close()


def test_mediapipe_both_models_merge_one_face(astronaut):
    """Video mode's detector runs both BlazeFace models: each finds the astronaut, NMS keeps one box, the
    higher-scored model's; an unknown model name is refused."""
    det = MediaPipeDetector(model="both")
    raw = [det.detect_raw(astronaut, sel) for sel in (0, 1)]
    assert all(len(r) == 1 for r in raw)
    dets = det.detect(astronaut)
    best = max((0, 1), key=lambda sel: raw[sel][0][1])
    assert len(dets) == 1 and dets[0].source == ("mediapipe_short", "mediapipe_full")[best]
    assert dets[0].score == raw[best][0][1] and box_iou(dets[0].box, FACE_BOX) > 0.6
    det.close()
    with pytest.raises(ValueError, match="model must be one of"):
        MediaPipeDetector(model="nearest")


def test_haar_finds_astronaut(astronaut):
    dets = HaarDetector().detect(astronaut)
    assert len(dets) >= 1 and box_iou(dets[0].box, FACE_BOX) > 0.4


def test_aligner_with_detector(tiny_weights, astronaut):
    fa = FaceAligner(tiny_weights, backend="torch", threads=1)
    faces = fa.predict(astronaut)
    assert len(faces) == 1 and box_iou(faces[0].box, FACE_BOX) > 0.6 and 0 < faces[0].score <= 1
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    same = fa.predict(bgr, color="bgr")
    assert np.allclose(same[0].landmarks, faces[0].landmarks, atol=1e-4)
    assert fa.predict(ASTRONAUT)[0].landmarks.shape == (68, 2)  # path input (JPEG re-decoded alike)
    assert len(fa.get_landmarks(astronaut)) == 1
    # the boxes a call returned reproduce its crops
    again = fa.predict(astronaut, boxes=[f.box for f in faces])
    assert np.allclose(again[0].landmarks, faces[0].landmarks, atol=1e-4)


def test_no_face_returns_empty(tiny_weights):
    fa = FaceAligner(tiny_weights, backend="torch", threads=1)
    assert fa.predict(np.full((240, 320, 3), 128, np.uint8)) == []
    assert fa.predict(np.zeros((64, 64), np.uint8)) == []


# --- input validation ---------------------------------------------------------------------------
def test_bad_inputs_raise_value_error(tmp_path, aligner):
    txt = tmp_path / "notes.jpg"
    txt.write_text("not an image at all")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(txt)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(ASTRONAUT.read_bytes()[:20000])
    with pytest.raises(ValueError, match="truncated"):
        load_image(trunc)
    with pytest.raises(ValueError, match="not found"):
        load_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_image(empty)
    with pytest.raises(ValueError, match="too small"):
        load_image(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        load_image(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((32, 32, 2), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(np.full((32, 32, 3), 200.0))
    with pytest.raises(ValueError, match="too large"):
        load_image(np.broadcast_to(np.uint8(0), (20000, 10000)))
    with pytest.raises(ValueError, match="unsupported"):
        load_image(12345)
    with pytest.raises(ValueError, match="color"):
        load_image(np.zeros((32, 32, 3), np.uint8), color="hsv")
    with pytest.raises(ValueError):
        aligner.predict(txt, boxes=FACE_BOX)  # the aligner passes the ValueError on


def test_accepted_formats(tmp_path):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    assert (load_image(rgb[:, :, ::-1], color="bgr") == rgb).all()
    rgba = np.concatenate([rgb, np.full((32, 48, 1), 7, np.uint8)], 2)
    assert (load_image(rgba) == rgb).all()
    gray = np.full((32, 48), 90, np.uint8)
    assert load_image(gray).shape == (32, 48, 3) and (load_image(gray) == 90).all()
    assert (load_image(gray[:, :, None]) == 90).all()
    assert (load_image(np.full((32, 48), 65535, np.uint16)) == 255).all()
    assert (load_image(rgb.astype(np.uint16) * 257) == rgb).all()
    assert (load_image(rgb / 255.0) == rgb).all()
    # files: 16-bit PNG, RGBA PNG, grayscale JPEG
    cv2.imwrite(str(tmp_path / "a16.png"), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    assert (load_image(tmp_path / "a16.png") == rgb).all()
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba[:, :, [2, 1, 0, 3]])
    assert (load_image(tmp_path / "rgba.png") == rgb).all()
    cv2.imwrite(str(tmp_path / "g16.png"), np.full((32, 48), 65535, np.uint16))
    assert (load_image(tmp_path / "g16.png") == 255).all()
    cv2.imwrite(str(tmp_path / "g.jpg"), gray)
    assert np.abs(load_image(tmp_path / "g.jpg").astype(int) - 90).max() <= 2
    assert load_image(ASTRONAUT.read_bytes()).shape == (512, 512, 3)


def shifted(img, dx):
    return cv2.warpAffine(img, np.float64([[1, 0, dx], [0, 1, 0]]), (img.shape[1], img.shape[0]))


# --- CLI and packaging --------------------------------------------------------------------------
def test_cli_images_and_video(tiny_weights, tmp_path, astronaut):
    from core.predict import main

    src = tmp_path / "in"
    src.mkdir()
    (src / "face.jpg").write_bytes(ASTRONAUT.read_bytes())
    (src / "broken.jpg").write_text("nope")
    w = cv2.VideoWriter(str(src / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for i in range(4):
        w.write(cv2.resize(shifted(astronaut, 3 * i), (256, 256))[:, :, ::-1])
    w.release()
    out = tmp_path / "out"
    rc = main([str(src), "--out", str(out), "--weights", str(tiny_weights), "--backend", "torch", "--threads", "1"])
    assert rc == 0
    info = json.loads((out / "face.json").read_text())
    assert len(info["faces"]) == 1 and len(info["faces"][0]["landmarks"]) == 68
    assert (out / "face.annotated.jpg").is_file() and not (out / "broken.json").exists()
    lines = (out / "clip.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(len(json.loads(ln)["faces"]) == 1 for ln in lines)
    assert (out / "clip.annotated.mp4").is_file()


def test_import_core_is_light():
    code = "import sys, core; assert 'torch' not in sys.modules and 'mediapipe' not in sys.modules; core.FaceAligner"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
