"""Rebuilds face_detection_short_range.onnx (the in-browser face detector) from the BlazeFace
short-range model that the mediapipe wheel bundles, and checks it against core.detectors.

    pip install --no-deps --target /tmp/t2o tflite2onnx==0.4.1 tflite==2.18.0   # converter only
    PYTHONPATH=/tmp/t2o python app/static/browser_webcam/models/convert_detector.py

Why ONNX and not @mediapipe/tasks-vision: the page then needs one runtime (ONNX Runtime Web, which
it loads for the landmark model anyway) instead of a second ~10 MB WASM; and tasks-vision's
FaceDetector wants a model with TFLite metadata (input normalisation), which the wheel's
legacy-graph model lacks. The check decodes the ONNX outputs as app/static/browser_webcam/detector.js
does (anchors, sigmoid, weighted NMS, letterbox) and compares the boxes with MediaPipe's own on
the example images. The model is MediaPipe's (Apache-2.0)."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
OUT = HERE / "face_detection_short_range.onnx"
SIZE = 128
MAX_BOX_ERROR_PX = 1.0


def source() -> Path:
    import mediapipe

    return Path(mediapipe.__file__).parent / "modules" / "face_detection" / "face_detection_short_range.tflite"


def anchors() -> np.ndarray:
    return np.array([((x + 0.5) / fm, (y + 0.5) / fm) for fm, n in ((16, 2), (8, 6))
                     for y in range(fm) for x in range(fm) for _ in range(n)])


def decode(session, rgb: np.ndarray, size: int = SIZE, anchor_xy: np.ndarray | None = None,
           min_score: float = 0.5) -> list[tuple[np.ndarray, float]]:
    """Raw boxes (image pixels, centres at integers) and scores of a BlazeFace ONNX model with a
    size x size input (anchor_xy: its anchor centres; default the short-range model's), as detector.js
    computes them."""
    h, w = rgb.shape[:2]
    s = min(size / w, size / h)
    pl, pt = (size - w * s) / 2, (size - h * s) / 2
    x = cv2.warpAffine(rgb, np.array([[s, 0, pl], [0, s, pt]]), (size, size), flags=cv2.INTER_LINEAR)
    x = (x.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None]
    reg, cls = (v[0] for v in session.run(["regressors", "classificators"], {"input": x}))
    score = 1 / (1 + np.exp(-np.clip(cls[:, 0], -100, 100)))
    a = anchors() if anchor_xy is None else anchor_xy
    cands = []
    for i in np.where(score >= min_score)[0]:
        cx, cy = reg[i, 0] / size + a[i, 0], reg[i, 1] / size + a[i, 1]
        bw, bh = reg[i, 2] / size, reg[i, 3] / size
        cands.append((float(score[i]), np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])))
    cands.sort(key=lambda c: -c[0])

    def iou(p, q):
        ix = max(0, min(p[2], q[2]) - max(p[0], q[0]))
        iy = max(0, min(p[3], q[3]) - max(p[1], q[1]))
        i = ix * iy
        u = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - i
        return i / u if u > 0 else 0

    out = []
    while cands:
        grp = [c for c in cands if iou(cands[0][1], c[1]) > 0.3]
        cands = [c for c in cands if iou(cands[0][1], c[1]) <= 0.3]
        wts = np.array([c[0] for c in grp])
        b = (wts[:, None] * np.array([c[1] for c in grp])).sum(0) / wts.sum()
        nx = (b[[0, 2]] * size - pl) / (w * s) * w - 0.5
        ny = (b[[1, 3]] * size - pt) / (h * s) * h - 0.5
        out.append((np.array([nx[0], ny[0], nx[1], ny[1]]), grp[0][0]))
    return out


def compare(session, selection: int, images, **decode_kw) -> tuple[float, int] | None:
    """(largest box difference in px, boxes compared) between decode(session, ...) and MediaPipe's own model
    `selection` (0 short, 1 full range) on (name, rgb) images; None (and a message) when a box count differs."""
    from core.detectors import MediaPipeDetector

    mp = MediaPipeDetector(model=("short", "full")[selection])
    worst, compared = 0.0, 0
    for name, img in images:
        ours, theirs = decode(session, img, **decode_kw), mp.detect_raw(img, selection)
        if len(ours) != len(theirs):
            print(f"{name} {img.shape}: {len(ours)} boxes, MediaPipe {len(theirs)}")
            return None
        for (b, _), (c, _) in zip(sorted(ours, key=lambda t: t[0][0]), sorted(theirs, key=lambda t: t[0][0])):
            worst, compared = max(worst, float(np.abs(b - c).max())), compared + 1
    return worst, compared


def examples() -> list[tuple[str, np.ndarray]]:
    """The app's example photos (RGB)."""
    return [(name, cv2.cvtColor(cv2.imread(str(ROOT / "app" / "examples" / name)), cv2.COLOR_BGR2RGB))
            for name in ("astronaut.jpg", "two_faces.jpg")]


def main() -> int:
    import onnxruntime as ort
    import tflite2onnx

    sys.path.insert(0, str(ROOT))
    tflite2onnx.convert(str(source()), str(OUT))
    session = ort.InferenceSession(str(OUT), providers=["CPUExecutionProvider"])
    result = compare(session, 0, [(n, img) for n, rgb in examples() for img in (rgb, cv2.resize(rgb, (640, 480)))])
    if result is None:
        return 1
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB); largest box difference from MediaPipe: {result[0]:.2f} px")
    return 0 if result[0] <= MAX_BOX_ERROR_PX else 1


if __name__ == "__main__":
    sys.exit(main())
