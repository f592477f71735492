"""Inference API: detect faces, crop them the way the model was trained, run the landmark model
(ONNX Runtime or torch), map the results back to original-image pixels; optional video tracking
and One-Euro smoothing.

    from core import FaceAligner
    fa = FaceAligner()                       # core.checkpoint.DEFAULT_WEIGHTS, ONNX when exported
    for face in fa.predict("photo.jpg"):     # path or uint8 array (RGB; color="bgr" for OpenCV)
        face.landmarks                       # (68, 2) original-image pixels

Crops: the detector gives an estimate of the landmark box (core.detectors); pass 1 crops around
it, pass 2 re-crops around the landmark box predicted by pass 1 (exactly the training convention:
square, side CROP_SCALE x the larger side, centred on the box) and predicts again. All faces of an
image go through the model in one batch per pass. In video mode a face tracked from the previous
frame is cropped around its previous landmarks and needs only one pass (core.tracking)."""
from __future__ import annotations

import threading
import warnings
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detectors import Detection, HaarDetector, MediaPipeDetector
from .image_faces import (DEFAULT_MIN_CONFIDENCE, FaceList, max_drift_for, predict_image, ratio_at, reject_ratio_for,
                          run_crops)
from .images import decode_image
from .landmarks import apply_affine, crop_matrix, invert_affine, warp_crop  # noqa: F401 (warp_crop re-exported)
from .mirror import MirrorRunner
from .shape_prior import ShapePriorRunner, prior_for
from .runners import (OnnxRunner, TorchRunner, cpu_name, has_tensors_or_onnx, onnx_current, onnx_path_for,  # noqa: F401 (re-exported)
                      torch_installed)
from .tracking import TrackingConfig, VideoTracker, box_crop

REFINE_PASSES = 2  # image mode: detector crop, then a re-crop around the predicted landmarks
DEFAULT_MAX_FACES = 32  # faces per image (most confident first); FaceList.truncated says when more were found
USER_BOX_SCORE = 1.0  # score reported for faces whose boxes the caller gave
BACKENDS = ("auto", "onnx", "torch")
PRECISIONS = ("fp32", "int8")  # int8: <stem>.int8.onnx (core.export_onnx --int8), ONNX Runtime only


@dataclass
class Face:
    box: np.ndarray  # (4,) x0, y0, x1, y1 original-image pixels (detector's landmark-box estimate, or tracked box)
    score: float  # detector score (tracked faces: the score carried from the last detection)
    landmarks: np.ndarray  # (68, 2) float32, original-image pixels, pixel centres at integers
    covariance: np.ndarray | None  # (68, 2, 2) float32 pixels^2; None without an uncertainty head
    adjacency: np.ndarray  # (68, 68) float32 per-image edge weights (rows sum to 1 over the neighbourhood)
    track_id: int | None = None  # video mode: the same id while the same face is followed
    confidence: float | None = None  # image mode: the model's own evidence of a face (core.image_faces), 0..1
    raw_landmarks: np.ndarray | None = None  # image mode with a shape prior: the model's own points before it

    def to_dict(self, adjacency: bool = False) -> dict:
        """JSON-ready dict: box, score, confidence, landmarks, covariance (lists); adjacency only if asked."""
        d = {"box": [float(v) for v in self.box], "score": float(self.score),
             "confidence": None if self.confidence is None else round(float(self.confidence), 4),
             "landmarks": np.asarray(self.landmarks, dtype=np.float64).round(3).tolist(),
             "covariance": None if self.covariance is None
             else np.asarray(self.covariance, dtype=np.float64).round(4).tolist()}
        if self.track_id is not None:
            d["track_id"] = int(self.track_id)
        if adjacency:
            d["adjacency"] = np.asarray(self.adjacency, dtype=np.float64).round(5).tolist()
        return d

    def to_file_pixels(self, scale: float) -> "Face":
        """This face, found on an image decoded reduced by `scale` (core.images.decode_image), in the
        file's pixels: x_file = scale (x + 0.5) - 0.5, covariance x scale^2."""
        if scale == 1.0:
            return self

        def px(p):
            return None if p is None else (scale * (np.asarray(p, np.float64) + 0.5) - 0.5).astype(np.float32)
        return dataclasses.replace(
            self, box=scale * (np.asarray(self.box, np.float64) + 0.5) - 0.5, landmarks=px(self.landmarks),
            raw_landmarks=px(self.raw_landmarks), covariance=None if self.covariance is None
            else (np.asarray(self.covariance) * scale * scale).astype(np.float32))


def _box_array(boxes) -> np.ndarray:
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"boxes must be numbers, shape (K, 4): {e}") from e
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim == 1 and b.size == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) as x0, y0, x1, y1; got {b.shape}")
    if not np.isfinite(b).all() or (b[:, 2] <= b[:, 0]).any() or (b[:, 3] <= b[:, 1]).any():
        raise ValueError("boxes must be finite with x1 > x0 and y1 > y0")
    return b


# --- the aligner --------------------------------------------------------------------------------
class FaceAligner:
    """68-point face alignment on images or video frames. See the module docstring.

    weights: `<stem>.safetensors` (+ `<stem>.json`); None = core.checkpoint.DEFAULT_WEIGHTS.
    backend: "auto" (ONNX Runtime when `<stem>.onnx` exists and is not older than the weights,
    else torch), "onnx" or "torch". precision: "fp32" or "int8" (`<stem>.int8.onnx`, the
    convolutional layers quantized: core.export_onnx.quantized_scope; ONNX Runtime only: 1.3-2.4x
    faster per face on a CPU at 1 thread, for 0.01-0.02 points of NME).
    device: "cpu", "cuda", "cuda:N" or "auto" (CUDA if available).
    detector: "mediapipe", "haar", "none" (boxes must be given) or any object with
    `detect(rgb) -> list[Detection]`. video: track faces from frame to frame and smooth landmarks.
    threads: intra-op threads (ORT session; torch: process-wide set_num_threads); 0 = default.
    max_faces: at most this many faces per image (image mode: the most confident; the returned
    FaceList has truncated=True when faces were left out). min_confidence: image mode drops faces
    whose Face.confidence (core.image_faces) is below this, video mode loses a track there (and looks
    for the face again); 0 keeps all. finder: options of the
    image-mode detection stage (core.face_finder.FinderConfig, dict or object) for
    detector="mediapipe"; video mode uses MediaPipeDetector("both").
    tracking: video-mode parameters (core.tracking.TrackingConfig, or a mapping of its fields).
    mirror: every crop also goes through the model mirrored and the two answers are averaged
    (core.mirror; twice the model time, test NME 3.30 -> 3.25 % for the flagship).
    shape_prior: move the points to their MAP estimate under the shape prior the model's JSON names
    (core.shape_prior: the statistical shape of the training faces, weighed against each point's
    covariance, so points the model is unsure of follow the others); False: the model's points as they come."""

    def __init__(self, weights: str | Path | None = None, backend: str = "auto", device: str = "cpu",
                 detector="mediapipe", video: bool = False, threads: int = 0, max_faces: int = DEFAULT_MAX_FACES,
                 precision: str = "fp32", min_confidence: float = DEFAULT_MIN_CONFIDENCE, finder=None,
                 tracking: TrackingConfig | dict | None = None, mirror: bool = False, shape_prior: bool = True):
        from .checkpoint import DEFAULT_WEIGHTS, read_meta, stem_paths

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not (device in ("cpu", "cuda", "auto") or device.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
        if isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) or max_faces < 1:
            raise ValueError(f"max_faces must be an integer >= 1, got {max_faces!r}")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        self.min_confidence, self._finder_config = float(min_confidence), finder
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "int8" and backend == "torch":
            raise ValueError("precision='int8' runs on ONNX Runtime: use backend='onnx' or 'auto'")
        st_path, js_path = stem_paths(weights if weights else DEFAULT_WEIGHTS)
        onnx_file = onnx_path_for(st_path, precision)
        if not has_tensors_or_onnx(st_path, precision, backend):
            raise FileNotFoundError(f"model weights not found: {st_path} (train a model, or pass weights=...)")
        if not js_path.is_file():
            raise FileNotFoundError(f"model metadata not found: {js_path} (it belongs next to {st_path.name})")
        self.weights = st_path
        self.meta = read_meta(st_path)
        self.input_size = int(self.meta["input_size"])
        self.neighbours = np.asarray(self.meta["neighbours"], dtype=np.float32)
        self.num_landmarks = int(self.meta.get("num_landmarks", self.neighbours.shape[0]))
        use_onnx = backend == "onnx" or precision == "int8"
        if use_onnx and not onnx_file.is_file():
            how = " --int8 DATA" if precision == "int8" else ""
            raise FileNotFoundError(f"ONNX model not found: {onnx_file} (python -m core.export_onnx --weights "
                                    f"{st_path} --out {onnx_path_for(st_path)}{how})")
        stale = onnx_file.is_file() and not onnx_current(st_path, precision)
        if precision == "int8" and stale:
            warnings.warn(f"{onnx_file} is older than {st_path.name}: re-export it (python -m core.export_onnx --int8)")
        if backend == "auto" and precision == "fp32" and onnx_file.is_file():
            if stale and torch_installed():
                warnings.warn(f"{onnx_file} is older than {st_path.name}: using torch (re-export to use ONNX)")
            else:  # current, or the only runtime there is (an ONNX-only install, e.g. a Space)
                use_onnx = True
        self.runner = None
        if use_onnx:
            try:
                self.runner = OnnxRunner(onnx_file, device, threads)
            except (ValueError, ImportError) as e:
                if backend == "onnx" or precision == "int8":
                    raise
                warnings.warn(f"ONNX backend unavailable ({e}); using torch")
        if self.runner is None:
            self.runner = TorchRunner(st_path, device, threads)
            self.backend = "torch"
        else:
            self.backend = "onnx"
            shape = self.runner.input_shape
            if isinstance(shape[-1], int) and shape[-1] != self.input_size:
                raise ValueError(f"{onnx_file}: input size {shape[-1]} but {js_path.name} says {self.input_size}")
        self.precision, self.mirror = precision, bool(mirror)
        if self.mirror:  # test-time mirror ensemble: twice the model time, ~0.1 points of NME (docs/FLAGSHIP.md)
            self.runner = MirrorRunner(self.runner, self.input_size)
        # the model's points fused with the shape prior its JSON names (core.shape_prior)
        self.shape_prior = prior_for(st_path, self.meta) if shape_prior and "cov" in self.runner.outputs else None
        if self.shape_prior is not None:
            self.runner = ShapePriorRunner(self.runner, self.shape_prior)
        self.provider: str = self.runner.provider
        self.device_name: str = self.runner.device_name
        self.has_uncertainty = "cov" in self.runner.outputs
        # image mode: sigma / inter-ocular at confidence 0.5 (core.image_faces); None = no rejection
        self.reject_ratio = reject_ratio_for(st_path, self.meta) if self.has_uncertainty else None
        self.max_drift = max_drift_for(self.meta)  # image mode's stability check (core.image_faces)
        self.max_faces, self.video = max_faces, video
        if isinstance(tracking, dict):
            from .config import from_dict

            tracking = from_dict(TrackingConfig, tracking, "tracking")
        if tracking is not None and not isinstance(tracking, TrackingConfig):
            raise ValueError(f"tracking must be a TrackingConfig or a mapping, got {type(tracking).__name__}")
        self.tracking = tracking or TrackingConfig()
        self.refine_passes = REFINE_PASSES  # model passes for a detector box (1 = no re-crop)
        self._detector_spec = detector
        self._detector = None
        self._lock = threading.RLock()
        self.reset()

    @property
    def fps(self) -> float:
        """Video mode: frame rate assumed when predict() gets no timestamp."""
        return self.tracking.fps

    @fps.setter
    def fps(self, value: float) -> None:
        self._set_tracking(fps=float(value))

    @property
    def redetect_every(self) -> int:
        """Video mode: the detector runs at least every this many frames."""
        return self.tracking.redetect_every

    @redetect_every.setter
    def redetect_every(self, value: int) -> None:
        self._set_tracking(redetect_every=int(value))

    def _set_tracking(self, **changes) -> None:
        with self._lock:
            self.tracking = dataclasses.replace(self.tracking, **changes)
            self._video.cfg = self.tracking

    @property
    def dynamic_adjacency(self) -> bool:
        """True when Face.adjacency is predicted per image (ModelConfig.dynamic_adjacency); otherwise
        it is the model's fixed, row-normalised neighbourhood."""
        from .checkpoint import model_config

        return model_config(self.meta, self.weights).dynamic_adjacency

    # -- detection -----------------------------------------------------------------------------
    @property
    def detector(self):
        """The face detector, built on first use (so box-only use never imports mediapipe)."""
        if self._detector is None:
            spec = self._detector_spec
            if spec == "mediapipe" and not self.video:
                from .face_finder import FaceFinder

                self._detector = FaceFinder(self._finder_config)
            elif spec == "mediapipe":
                self._detector = MediaPipeDetector("both")
            elif spec == "haar":
                self._detector = HaarDetector()
            elif spec in (None, "none"):
                raise ValueError("this FaceAligner has no detector (detector='none'): pass boxes=")
            elif hasattr(spec, "detect"):
                self._detector = spec
            else:
                raise ValueError("detector must be 'mediapipe', 'haar', 'none' or an object with detect(); "
                                 f"got {spec!r}")
        return self._detector

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        dets = sorted(self.detector.detect(rgb), key=lambda d: -d.score)
        return dets[: self.max_faces]

    # -- model ---------------------------------------------------------------------------------
    def _run(self, img: np.ndarray, boxes: list[np.ndarray]) -> dict[str, np.ndarray]:
        """_run_crops on the axis-aligned training-convention crops around landmark-box estimates."""
        return self._run_crops(img, [box_crop(b) for b in boxes])

    def _run_crops(self, img: np.ndarray, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        """core.image_faces.run_crops on crops [cx, cy, side, angle] (the square turned by -angle, as
        core.tracking.in_crop): pts, cov in image pixels, sigma (K,) median std in crop units."""
        mats = [crop_matrix(c[0], c[1], c[2], out_size=self.input_size, angle_deg=-c[3]) for c in crops]
        return run_crops(self, img, mats, crop_units=True)

    # -- public --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget video tracking and smoothing state (call between videos)."""
        with self._lock:
            self._video = VideoTracker(self._run_crops, self._detect, self.tracking, self.max_faces,
                                       max_ratio=ratio_at(self.min_confidence, self.reject_ratio))
            self._shape = None

    def predict(self, image, boxes=None, color: str = "rgb", *, timestamp: float | None = None) -> list[Face]:
        """Faces in `image` (path, bytes, PIL image or uint8/uint16/float array; `color` = channel
        order of an array). boxes: optional (K, 4) face boxes x0, y0, x1, y1 in image pixels (e.g.
        the `box` of earlier Faces; any box close to the landmark box works) to skip detection.
        Returns [] when there is no face. Video mode: `timestamp` in seconds (default 1 / fps steps)."""
        img, scale = decode_image(image, color)
        user = None if boxes is None else (_box_array(boxes) + 0.5) / scale - 0.5  # -> decoded pixels
        if self.video:
            with self._lock:
                faces = self._predict_video(img, user, timestamp)
        else:
            faces = self._predict_image(img, user)
        out = FaceList(f.to_file_pixels(scale) for f in faces)  # reduced decode of a large file: file pixels
        out.truncated = bool(getattr(faces, "truncated", False))
        return out

    def get_landmarks(self, image, color: str = "rgb") -> list[np.ndarray]:
        """face-alignment style: a (68, 2) array per face."""
        return [f.landmarks for f in self.predict(image, color=color)]

    def _faces(self, res, boxes, scores, pts=None) -> list[Face]:
        out = []
        for i, (b, s) in enumerate(zip(boxes, scores)):
            cov = None if res["cov"] is None else res["cov"][i].astype(np.float32)
            p = res["pts"][i] if pts is None else pts[i]
            out.append(Face(np.asarray(b, dtype=np.float64), float(s), p.astype(np.float32), cov, res["adj"][i]))
        return out

    def _predict_image(self, img, user) -> FaceList:
        """Detection stage (or the caller's boxes) -> upright two-pass crops -> confidence -> max_faces
        (core.image_faces). Boxes the caller gave keep the axis-aligned two-pass crops and are never
        rejected (they still get a confidence)."""
        if user is not None:
            dets = [Detection(b, USER_BOX_SCORE, b.copy(), "user") for b in user]
            # the caller's boxes: the crops of before (axis-aligned, no turn search), never rejected
            return predict_image(self, img, dets, self.max_faces, 0.0, self.refine_passes, upright_above=np.inf,
                                 reject_ratio=self.reject_ratio, turn_search="none")
        dets = self.detector.detect(img)
        return predict_image(self, img, dets, self.max_faces, self.min_confidence, self.refine_passes,
                             reject_ratio=self.reject_ratio, max_drift=self.max_drift)

    def _predict_video(self, img, user, timestamp) -> list[Face]:
        if self._shape is not None and img.shape != self._shape:
            self.reset()  # another video (or resolution): start over
        self._shape = img.shape
        dets = None if user is None else [Detection(b, USER_BOX_SCORE, b.copy(), "user") for b in user[: self.max_faces]]
        out = []
        for tr, r, shown in self._video.step(img, timestamp, dets):
            cov = None if r["cov"] is None else r["cov"].astype(np.float32)
            out.append(Face(r["crop_box"].copy(), float(tr.score), np.asarray(shown, np.float32), cov, r["adj"], tr.id))
        return out


_ALIGNERS: dict[tuple, FaceAligner] = {}


def get_landmarks(image, weights: str | Path | None = None, color: str = "rgb", **kwargs) -> list[np.ndarray]:
    """face-alignment style convenience: (68, 2) landmarks per face, original-image pixels. The
    FaceAligner is built once per (weights, options) and cached."""
    key = (str(weights), tuple(sorted(kwargs.items())))
    if key not in _ALIGNERS:
        _ALIGNERS[key] = FaceAligner(weights, **kwargs)
    return _ALIGNERS[key].get_landmarks(image, color=color)


__all__ = ["Face", "FaceAligner", "get_landmarks", "cpu_name", "warp_crop", "onnx_path_for", "onnx_current",
           "PRECISIONS"]
