"""The Gradio app: webcam, upload, occlusion-robustness and benchmark tabs, plus the JSON API
endpoint `/landmarks`.

Models load once, in `load_models()` (or are passed in), and every handler runs under
`torch.inference_mode()`. `build_demo()` returns a `gr.Blocks` with its queue configured;
`launch()` starts it with the upload-size limit. Tests build it with tiny random weights:

    demo = build_demo(graph_weights=tiny, fc_weights=tiny_fc)
    launch(demo, port=0, prevent_thread_lock=True); ...; demo.close()
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
import types
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the app

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import torch  # noqa: E402

from core import overlays as ov  # noqa: E402
from app import browser_webcam  # noqa: E402
from core.checkpoint import FAST_WEIGHTS, FC_WEIGHTS, GRAPH_WEIGHTS  # noqa: E402
from core.images import fit_within  # noqa: E402
from core.metrics import interocular as _interocular  # noqa: E402

from . import plots, webcam  # noqa: E402
from .errors import public_reason  # noqa: E402
from .faces_limit import DEFAULT_MAX_FACES, truncation_fields, truncation_note  # noqa: E402

log = logging.getLogger("sdfl.app")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
RESULTS_DIR = ROOT / "benchmarks" / "results"
ASTRONAUT = EXAMPLES_DIR / "astronaut.jpg"
TWO_FACES = EXAMPLES_DIR / "two_faces.jpg"

MAX_PIXELS = 50_000_000  # refuse larger images: passed to core.images.decode_image, whose header check quotes it
MAX_FILE_SIZE = "25mb"  # upload limit, Blocks.launch(max_file_size=...)
DISPLAY_MAX_SIDE = 1600  # annotated images are drawn on a copy at most this large
OCCLUSION_VIEW_SIDE = 800  # the occlusion views zoom on the faces: at most (and at least half) this large
OCCLUSION_WORK_SIDE = 1600  # the occlusion demo works on a copy at most this large (px reported in file pixels)
STATE_TTL = 1800  # s: per-session results (display copies) are dropped after this
# Upload-tab model choice: the graph head (per-image edges; also the webcam, the occlusion demo and
# the API) or, when loaded, the package default (core.checkpoint.DEFAULT_WEIGHTS, most accurate).
MODEL_GRAPH, MODEL_ACCURATE = "graph", "accurate"
MODEL_CHOICES = [("Graph head: per-image edges, most robust to occlusion", MODEL_GRAPH),
                 ("Wasserstein heatmap head: most accurate", MODEL_ACCURATE)]
STREAM_TIME_LIMIT = 90  # s of webcam streaming per session before it must restart
STREAM_EVERY = 0.1  # s between webcam frames sent to the server
WEBCAM_SLOTS = 2  # concurrent webcam streams (one video-mode aligner each)
CONCURRENCY = 2  # default concurrency limit of the queue
QUEUE_MAX = 64  # queued requests beyond this are refused ("queue full")

OVERLAY_CHOICES = [("Landmarks", "points"), ("Adjacency graph", "graph"), ("Error ellipses (1σ, 2σ)", "ellipses"),
                   ("Numbers", "numbers"), ("Face box", "box"), ("Contours", "curves")]
OCCLUDERS = ["box", "ellipse", "random"]
FILLS = ["gray", "black", "noise"]


class UserInputError(ValueError):
    """Bad input from a user: shown as a readable message, never a traceback."""


# ----------------------------------------------------------------------------- models


@dataclass
class Models:
    """The aligners the app serves: the graph-head model for photos and the API, the FC-head
    baseline for the occlusion comparison, a pool of video-mode graph aligners for webcams, and
    optionally a second photo model (`accurate`: the package default) the upload tab can switch to."""

    graph: Any
    fc: Any
    video: list[Any]
    graph_weights: str = ""
    fc_weights: str = ""
    accurate: Any = None
    accurate_weights: str = ""
    locks: dict[int, threading.Lock] = field(default_factory=dict)

    def lock(self, aligner) -> threading.Lock:
        """One lock per aligner instance: a detector/session object is not assumed thread-safe."""
        return self.locks.setdefault(id(aligner), threading.Lock())

    @property
    def device(self) -> str:
        name = getattr(self.graph, "device_name", "?")
        provider = getattr(self.graph, "provider", "")
        return f"{name} ({provider})" if provider else str(name)


def missing_weights(*paths) -> list[str]:
    """The weight files among `paths` (stems or .safetensors paths; empty ones skipped) that do not exist."""
    from core.checkpoint import stem_paths

    missing = []
    for p in filter(None, paths):
        st, js = stem_paths(p)
        missing += [str(f) for f in (st, js) if not f.is_file()]
    return missing


def load_models(graph_weights=None, fc_weights=None, *, accurate_weights=None, webcam_weights=None,
                backend: str = "auto", device: str = "cpu", detector: str = "mediapipe", threads: int = 0,
                max_faces: int = DEFAULT_MAX_FACES, webcam_slots: int = WEBCAM_SLOTS, webcam_precision: str = "auto") -> Models:
    """Load every aligner once. Raises core.checkpoint.CheckpointError / ValueError on missing or
    broken weights (launch_app.py turns that into a message and a non-zero exit).
    accurate_weights: a second photo model for the upload tab (launch_app.py passes
    core.checkpoint.DEFAULT_WEIGHTS); None = none.
    webcam_weights: the webcam's video-mode model (e.g. core.checkpoint.FAST_WEIGHTS on a slow
    machine); None = the graph-head model.
    webcam_precision: "auto" = int8 (<stem>.int8.onnx, faster) on a CPU when that file exists, else
    fp32; photos and the occlusion demo always run fp32."""
    from core.inference import FaceAligner, onnx_path_for

    graph_weights = Path(graph_weights) if graph_weights else GRAPH_WEIGHTS
    fc_weights = Path(fc_weights) if fc_weights else FC_WEIGHTS
    webcam_weights = Path(webcam_weights) if webcam_weights else graph_weights
    if webcam_precision == "auto":
        cpu_onnx = backend != "torch" and device == "cpu"
        webcam_precision = "int8" if cpu_onnx and onnx_path_for(webcam_weights, "int8").is_file() else "fp32"
    kw = dict(backend=backend, device=device, detector=detector, threads=threads, max_faces=max_faces)
    graph = FaceAligner(weights=graph_weights, video=False, **kw)
    fc = FaceAligner(weights=fc_weights, video=False, **kw)
    video = [FaceAligner(weights=webcam_weights, video=True, precision=webcam_precision, **kw)
             for _ in range(max(1, webcam_slots))]
    accurate = FaceAligner(weights=accurate_weights, video=False, **kw) if accurate_weights else None
    return Models(graph, fc, video, str(graph_weights), str(fc_weights), accurate,
                  str(accurate_weights) if accurate_weights else "")


class VideoPool:
    """Video-mode aligners shared by webcam sessions. A session keeps its aligner (and its
    tracking state) while it streams; a new session takes the least recently used one and resets
    it, so one user's track never leaks into another's frames."""

    def __init__(self, aligners: Sequence[Any]):
        self._slots = [{"aligner": a, "lock": threading.Lock(), "owner": None, "used": 0.0} for a in aligners]
        self._guard = threading.Lock()

    @contextmanager
    def acquire(self, session: str) -> Iterator[Any]:
        with self._guard:
            mine = [s for s in self._slots if s["owner"] == session]
            slot = mine[0] if mine else min(self._slots, key=lambda s: (s["lock"].locked(), s["used"]))
        with slot["lock"]:
            if slot["owner"] != session:
                slot["aligner"].reset()
                slot["owner"] = session
            slot["used"] = time.monotonic()
            yield slot["aligner"]


class FrameStats:
    """Per-session frame rate and latency: FPS = frames / time over the last `window` seconds of
    frames the server answered (what the user sees), latency = moving average of processing
    time."""

    def __init__(self, window: float = 2.0, capacity: int = 256):
        self._data: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.window, self.capacity = window, capacity

    def update(self, session: str, latency_s: float, now: float | None = None) -> tuple[float, float]:
        now = time.monotonic() if now is None else now
        with self._lock:
            st = self._data.pop(session, None) or {"times": deque(maxlen=120), "lat": latency_s}
            times = st["times"]
            if times and now - times[-1] > 3.0:  # a pause (stream restarted): start over
                times.clear()
            times.append(now)
            while len(times) > 2 and now - times[0] > self.window:
                times.popleft()
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            st["lat"] = 0.8 * st["lat"] + 0.2 * latency_s
            self._data[session] = st
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
            return fps, st["lat"]


# ----------------------------------------------------------------------------- helpers


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def face_view(face) -> dict:
    """A Face (or its to_dict()) as numpy arrays for drawing and plotting."""
    get = (lambda k: face.get(k)) if isinstance(face, dict) else (lambda k: getattr(face, k, None))
    cov = get("covariance")
    adj = get("adjacency")
    return {
        "box": np.asarray(get("box"), np.float64).reshape(4),
        "score": None if get("score") is None else float(get("score")),
        "landmarks": np.asarray(get("landmarks"), np.float64).reshape(-1, 2),
        "covariance": None if cov is None else np.asarray(cov, np.float64),
        "adjacency": None if adj is None else np.asarray(adj, np.float64),
    }


def interocular(points: np.ndarray) -> float:
    """Inter-ocular distance of one face's (68, 2) landmarks (core.metrics.interocular)."""
    return float(_interocular(np.asarray(points, np.float64)[None])[0])


def options_from(selected: Sequence[str] | None) -> ov.OverlayOptions:
    return ov.OverlayOptions.from_names([s for s in (selected or []) if s])


def _reason(e: BaseException) -> str:
    return public_reason(e)  # no server paths in user messages (app.errors)


def read_image_file(path: str | os.PathLike | None, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """Decode an uploaded file to RGB uint8, checking (from the header, before decoding) that it
    is an image of at most max_pixels. Returns (image, scale): scale = file pixels per returned
    pixel (core.images decodes very large files reduced). Raises UserInputError with a readable
    message."""
    from core.images import ImageTooLarge, decode_image

    if path is None or str(path) == "":
        raise UserInputError("No image: upload a photo (JPEG, PNG or WebP) first.")
    p = Path(path)
    if not p.is_file():
        raise UserInputError("The uploaded file did not arrive; please upload it again.")
    if p.stat().st_size == 0:
        raise UserInputError("The uploaded file is empty (0 bytes).")
    try:
        img, scale = decode_image(str(p), max_pixels=max_pixels)  # core.images' gate: header size first
    except ImageTooLarge as e:
        size = f"{e.width}x{e.height} ({e.pixels / 1e6:.0f} megapixels)" if e.width else f"over {e.pixels / 1e6:.0f} megapixels"
        raise UserInputError(f"The image is {size}; this app accepts up to {e.limit / 1e6:.0f} MP"
                             f"{'' if e.limit == max_pixels else ' for this format'}. Please downscale it and try again.") from None
    except (ValueError, OSError) as e:
        reason = _reason(e)
        if "not a readable image" in reason or "unknown or unsupported format" in reason:
            raise UserInputError("The uploaded file is not an image this app can read (JPEG, PNG, WebP, BMP, "
                                 "TIFF); is it a renamed or damaged file?") from None
        raise UserInputError(f"Could not use this image: {reason}") from None
    return img, float(scale)


def face_dict(face, scale: float = 1.0, adjacency: bool = False) -> dict:
    """JSON-ready dict of a Face in file pixels (Face.to_dict, with the adjacency if asked)."""
    f = face.to_file_pixels(scale)
    try:
        d = f.to_dict(adjacency=adjacency)
    except TypeError:  # a to_dict without the option
        d = f.to_dict()
    return _jsonable(d)


def _path_preprocess(self, payload):
    """Image preprocess that hands the uploaded file's path to the handler without opening it."""
    if payload is None:
        return None
    if getattr(payload, "path", None) and not (payload.url or "").startswith("data:"):
        return str(payload.path)
    try:
        return gr.Image.preprocess(self, payload)
    except gr.Error:
        raise
    except Exception:
        raise gr.Error("The uploaded data is not an image this app can read.", title="Bad input",
                       print_exception=False) from None


def ImageInput(**kwargs) -> gr.Image:  # noqa: N802 - reads like the component it makes
    """gr.Image(type="filepath") whose preprocess passes the uploaded file on unopened:
    read_image_file() then checks and decodes it once, with a readable message for every failure
    (the stock preprocess opens it with PIL first and fails with a bare error on, e.g., a renamed
    text file). An instance patch, not a subclass: Gradio writes a .pyi next to the module of
    every Component subclass."""
    comp = gr.Image(type="filepath", image_mode=None, **kwargs)
    comp.preprocess = types.MethodType(_path_preprocess, comp)
    return comp


def handler(fn: Callable) -> Callable:
    """Run a handler under torch.inference_mode(); user errors become gr.Error(message), any
    other failure a generic gr.Error (logged with its traceback) so the server keeps serving."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            with torch.inference_mode():
                return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserInputError as e:
            raise gr.Error(str(e), title="Bad input", print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - last line of defence of a public server
            log.error("handler %s failed:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"Processing failed ({type(e).__name__}: {_reason(e)}). Please try another image.",
                           title="Error") from None

    return wrapped


# ----------------------------------------------------------------------------- the app logic


class LandmarkApp:
    """Handlers of the UI and API, independent of the layout (so tests and the screenshot script
    can call them directly)."""

    def __init__(self, models: Models, *, max_pixels: int = MAX_PIXELS, results_dir: str | Path = RESULTS_DIR,
                 display_max_side: int = DISPLAY_MAX_SIDE):
        self.models = models
        self.max_pixels = int(max_pixels)
        self.results_dir = Path(results_dir)
        self.display_max_side = int(display_max_side)
        self.pool = VideoPool(models.video)
        self.stats = FrameStats()
        self.clock = webcam.StreamClock()
        self.neighbours = np.asarray(getattr(models.graph, "neighbours"))
        self.fc_neighbours = np.asarray(getattr(models.fc, "neighbours", self.neighbours))
        self.webcam_neighbours = np.asarray(getattr(models.video[0], "neighbours", self.neighbours))
        self.webcam_model = Path(str(getattr(models.video[0], "weights", "?"))).stem  # one model for the whole pool
        self._tmp = Path(tempfile.mkdtemp(prefix="sdfl_app_"))

    # -- inference -------------------------------------------------------------------------

    def predict(self, aligner, image: np.ndarray, boxes=None) -> list:
        with self.models.lock(aligner):
            return aligner.predict(image, boxes=boxes)

    def _json_file(self, payload: dict, stem: str) -> str:
        """Write the landmarks JSON for download (files older than an hour are pruned)."""
        now = time.time()
        for old in self._tmp.iterdir():
            try:
                if now - old.stat().st_mtime > 3600:
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
            except OSError:
                pass
        d = Path(tempfile.mkdtemp(dir=self._tmp))
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60] or "image"
        path = d / f"landmarks_{safe}.json"
        path.write_text(json.dumps(payload, indent=1))
        return str(path)

    # -- API -------------------------------------------------------------------------------

    def api_landmarks(self, image: str | None) -> dict:
        """Landmarks of every face in an image: {"faces": [Face.to_dict()...], "device", "latency_ms",
        "image_size": [w, h], "message"}. A photo without a face is an honest empty answer
        (faces [] and a message); unreadable, empty or too large files come back as a readable gr.Error."""
        img, scale = read_image_file(image, self.max_pixels)
        t0 = time.perf_counter()
        faces = self.predict(self.models.graph, img)
        latency = (time.perf_counter() - t0) * 1000.0
        return {"faces": [face_dict(f, scale) for f in faces], **truncation_fields(faces),
                "message": (f"{len(faces)} face(s) found.{truncation_note(faces, self.models.graph.max_faces)}"
                            if faces else "No face found in the image."),
                "device": self.models.device,
                "provider": getattr(self.models.graph, "provider", None), "latency_ms": round(latency, 2),
                "image_size": [int(round(img.shape[1] * scale)), int(round(img.shape[0] * scale))]}

    # -- upload tab ------------------------------------------------------------------------

    def upload_aligner(self, model: str) -> tuple[Any, str]:
        """The aligner of an upload-tab model choice, and its name (the graph head when the choice
        is unknown or its model is not loaded)."""
        if model == MODEL_ACCURATE and self.models.accurate is not None:
            return self.models.accurate, Path(self.models.accurate_weights).stem
        return self.models.graph, Path(self.models.graph_weights).stem or "graph head"

    def run_upload(self, image: str | None, overlays: list[str], manual: bool = False,
                   model: str = MODEL_GRAPH) -> tuple:
        """-> (annotated image, JSON file, face dropdown, adjacency fig, uncertainty fig, status, state).
        model: MODEL_GRAPH or MODEL_ACCURATE (see upload_aligner)."""
        if not image:
            if manual:
                gr.Warning("Upload a photo first (or pick an example).")
            return self._upload_outputs(None, None, [], None, "Upload a photo or pick an example.")
        try:
            img, scale = read_image_file(image, self.max_pixels)
        except UserInputError as e:
            gr.Warning(str(e), title="Bad input")
            return self._upload_outputs(None, None, [], None, f"**Problem:** {e}")
        aligner, model_name = self.upload_aligner(model)
        t0 = time.perf_counter()
        faces = self.predict(aligner, img)
        latency = (time.perf_counter() - t0) * 1000.0
        h, w = (int(round(v * scale)) for v in img.shape[:2])
        disp, s = fit_within(img, self.display_max_side)
        views = [face_view(f) for f in faces]
        dynamic = bool(getattr(aligner, "dynamic_adjacency", True))
        state = {"image": disp, "scale": s, "faces": views, "size": (w, h), "model": model_name, "dynamic": dynamic}
        if not faces:
            gr.Warning("No face found in the image.", title="No face")
            return self._upload_outputs(disp, None, [], state, f"**No face found** ({w}x{h} image, "
                                        f"{latency:.0f} ms on {self.models.device}).")
        payload = {"image": Path(str(image)).name, "image_size": [w, h], "model": model_name,
                   "device": self.models.device,
                   "latency_ms": round(latency, 2), "faces": [face_dict(f, scale, adjacency=True) for f in faces],
                   **truncation_fields(faces)}
        jpath = self._json_file(payload, Path(str(image)).stem)
        status = (f"**{len(faces)} face(s)** found in a {w}x{h} image · {model_name} · {latency:.0f} ms on "
                  f"{self.models.device}{truncation_note(faces, getattr(aligner, 'max_faces', None))}")
        return self._upload_outputs(self.render_upload(state, overlays), jpath, views, state, status)

    def _upload_outputs(self, annotated: np.ndarray | None, json_path: str | None, views: list[dict],
                        state: dict | None, status: str) -> tuple:
        choices = [(f"#{i} (score {v['score']:.2f})" if v["score"] is not None else f"#{i}", i)
                   for i, v in enumerate(views)]
        dropdown = gr.Dropdown(choices=choices, value=0 if choices else None, interactive=len(choices) > 1)
        adj_fig, unc_fig = self.face_figures(state, 0)
        return annotated, json_path, dropdown, adj_fig, unc_fig, status, state

    def render_upload(self, state: dict | None, overlays: list[str]) -> np.ndarray | None:
        if not state:
            return None
        s = state["scale"]
        faces = [ov.scale_face(v, s) for v in state["faces"]]
        return ov.draw_faces(state["image"], faces, self.neighbours, options_from(overlays))

    def face_figures(self, state: dict | None, index: int | None) -> tuple[go.Figure, go.Figure]:
        if not state or not state.get("faces"):
            msg = "No face yet." if not state else "No face found."
            return (plots.message_figure(msg, "Dynamic adjacency"),
                    plots.message_figure(msg, "Per-landmark uncertainty"))
        i = int(index or 0)
        i = min(max(i, 0), len(state["faces"]) - 1)
        v = state["faces"][i]
        title = (f"Dynamic adjacency, face #{i}" if state.get("dynamic", True) else
                 f"Adjacency, face #{i} ({state.get('model')}: fixed neighbourhood, no per-image weights)")
        return (plots.adjacency_heatmap(v["adjacency"], self.neighbours, title),
                plots.uncertainty_bars(v["covariance"], interocular(v["landmarks"]),
                                       f"Per-landmark uncertainty (1σ semi-axes), face #{i}"))

    # -- webcam tab ------------------------------------------------------------------------

    def webcam_frame(self, frame: np.ndarray | None, overlays: list[str],
                     session: str = "local") -> tuple[np.ndarray | None, str, dict]:
        """One streamed frame through a video-mode aligner -> (annotated frame, status, JSON):
        frames received per second, model time per frame, model and device (app.webcam)."""
        if frame is None:
            return None, "Waiting for the camera…", {}
        frame = np.ascontiguousarray(frame[..., :3]).astype(np.uint8, copy=False)
        draw = lambda img, faces: ov.draw_faces(img, faces, self.webcam_neighbours, options_from(overlays), labels=False)  # noqa: E731
        try:
            out, readout, faces = webcam.process_frame(frame, session, self.pool, self.clock, draw, ov.draw_text_box)
        except ValueError as e:
            return frame, f"**Problem:** {_reason(e)}", {"error": _reason(e)}
        return out, readout.markdown(), webcam.stream_json(readout, faces)

    # -- occlusion tab ---------------------------------------------------------------------

    def _clean_predictions(self, image: str, state: dict | None) -> dict:
        key = (str(image), os.path.getmtime(image) if os.path.exists(str(image)) else 0)
        if state and state.get("key") == key:
            return state
        img, scale = read_image_file(image, self.max_pixels)
        img, s = fit_within(img, OCCLUSION_WORK_SIDE)  # the state holds this copy: keep it small
        faces_g = self.predict(self.models.graph, img)
        if not faces_g:
            raise UserInputError("No face found in the image: the occlusion demo needs at least one face.")
        boxes = np.stack([face_view(f)["box"] for f in faces_g])
        faces_f = self.predict(self.models.fc, img, boxes=boxes)
        return {"key": key, "image": img, "boxes": boxes, "px": scale / s,  # file pixels per working pixel
                "graph": [face_view(f) for f in faces_g], "fc": [face_view(f) for f in faces_f]}

    def occluded_image(self, img: np.ndarray, boxes: np.ndarray, kind: str, x: float, y: float, w: float,
                       h: float, seed: int, count: int, fill: str) -> np.ndarray:
        mask = np.zeros(img.shape[:2], bool)
        for k, box in enumerate(boxes):
            if kind == "random":
                mask |= ov.random_occluders(img.shape[:2], box, int(seed) + 1000 * k, int(count))
            else:
                mask |= ov.occluder_mask(img.shape[:2], box, kind, (x, y, w, h))
        return ov.apply_occlusion(img, mask, fill, int(seed))

    def run_occlusion(self, image: str | None, kind: str, x: float, y: float, w: float, h: float, seed: float,
                      count: float, fill: str, state: dict | None) -> tuple:
        """-> (graph image, graph text, fc image, fc text, displacement fig, status, state)."""
        empty = (None, "", None, "", plots.message_figure("No result yet.", "Displacement under occlusion"))
        if not image:
            return (*empty, "Upload a photo or pick an example.", state)
        try:
            st = self._clean_predictions(image, state)
        except UserInputError as e:
            gr.Warning(str(e), title="Bad input")
            return (*empty, f"**Problem:** {e}", None)
        img, boxes = st["image"], st["boxes"]
        occluded = self.occluded_image(img, boxes, kind, x, y, w, h, int(seed), int(count), fill)
        t0 = time.perf_counter()
        occ_g = [face_view(f) for f in self.predict(self.models.graph, occluded, boxes=boxes)]
        occ_f = [face_view(f) for f in self.predict(self.models.fc, occluded, boxes=boxes)]
        latency = (time.perf_counter() - t0) * 1000.0
        rx0, ry0, rx1, ry1 = ov.face_region(np.concatenate([boxes] + [
            np.r_[v["landmarks"].min(0), v["landmarks"].max(0)][None] for v in st["graph"] + occ_g]), img.shape)
        disp, s = fit_within(occluded[ry0:ry1, rx0:rx1], OCCLUSION_VIEW_SIDE)
        if s == 1.0 and max(disp.shape[:2]) < OCCLUSION_VIEW_SIDE // 2:  # small faces: enlarge the view
            s = (OCCLUSION_VIEW_SIDE // 2) / max(disp.shape[:2])
            disp = cv2.resize(disp, (round(disp.shape[1] * s), round(disp.shape[0] * s)),
                              interpolation=cv2.INTER_LINEAR)
            s = disp.shape[1] / (rx1 - rx0)
        off = (rx0, ry0)
        images, texts, per_lm = [], [], {}
        for name, clean, occ, nb in (("Graph head (SDFL)", st["graph"], occ_g, self.neighbours),
                                     ("FC head (baseline)", st["fc"], occ_f, self.fc_neighbours)):
            d_px = [st["px"] * np.linalg.norm(o["landmarks"] - c["landmarks"], axis=1) for c, o in zip(clean, occ)]
            iods = [st["px"] * interocular(c["landmarks"]) for c in clean]
            out = disp
            for c, o in zip(clean, occ):
                out = ov.draw_points(out, (c["landmarks"] - off) * s, ov.REFERENCE_COLOR, hollow=True)
                out = ov.draw_face(out, ov.scale_face(o, s, off), nb,
                                   ov.OverlayOptions(points=True, box=True, ellipses=True))
            images.append(out)
            mean_px = float(np.mean([d.mean() for d in d_px])) if d_px else float("nan")
            rel = [d.mean() / i for d, i in zip(d_px, iods) if i > 1.0]
            rel_txt = f"{100 * float(np.mean(rel)):.2f} % of the inter-ocular distance" if rel else "IOD n/a"
            per_face = ", ".join(f"#{k}: {d.mean():.1f} px" for k, d in enumerate(d_px)) if len(d_px) > 1 else ""
            texts.append(f"**{name}** — mean displacement from its own unoccluded prediction: "
                         f"**{mean_px:.2f} px** ({rel_txt}){' · ' + per_face if per_face else ''}")
            if d_px:
                per_lm[name] = d_px[0]
        iod0 = st["px"] * interocular(st["graph"][0]["landmarks"])
        fig = plots.displacement_chart(per_lm, iod0, "Displacement per landmark under occlusion"
                                       + (" (face #0)" if len(boxes) > 1 else ""))
        status = (f"{len(boxes)} face(s) · occluder: {kind} · both models ran on the same occluded image with the "
                  f"boxes detected on the clean one ({latency:.0f} ms for both) · filled green = occluded input, "
                  f"with its 1σ / 2σ error ellipses · hollow blue = the same model without occlusion")
        return images[0], texts[0], images[1], texts[1], fig, status, st

    # -- benchmark tab ---------------------------------------------------------------------

    def load_results(self) -> tuple[list[dict], list[str]]:
        """Results from results_dir/*.json: a result dict, a list of them, {"results": [...]}, or
        {name: result}. Returns (results with "name" and "file", notes about skipped files)."""
        results, notes = [], []
        files = sorted(self.results_dir.glob("*.json")) if self.results_dir.is_dir() else []
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as e:
                notes.append(f"skipped {f.name}: not valid JSON ({_reason(e)})")
                continue
            if isinstance(data, dict) and isinstance(data.get("results"), list):
                items = [(None, r) for r in data["results"]]
            elif isinstance(data, list):
                items = [(None, r) for r in data]
            elif isinstance(data, dict) and ("nme" in data or "nme_per_face" in data):
                items = [(None, data)]
            elif isinstance(data, dict):
                items = list(data.items())
            else:
                items = []
            found = 0
            for key, r in items:
                if not isinstance(r, dict) or not ("nme" in r or "nme_per_face" in r):
                    continue
                r = dict(r)
                if not r.get("name"):
                    if key:
                        r["name"] = str(key)
                    elif r.get("weights"):
                        r["name"] = Path(str(r["weights"])).stem + (f" ({r['protocol']})" if r.get("protocol") else "")
                    else:
                        r["name"] = f.stem
                r["file"] = f.name
                results.append(r)
                found += 1
            if not found:
                notes.append(f"skipped {f.name}: no result with 'nme' or 'nme_per_face'")
        return results, notes

    def benchmark_view(self) -> tuple[gr.Dataframe, go.Figure, str]:
        """-> (table rows, CED figure, note markdown)."""
        results, notes = self.load_results()
        if not results:
            note = (f"No benchmark results yet: run the evaluation (e.g. `python -m core.evaluate ... --json "
                    f"benchmarks/results/<name>.json`) and press **Reload**. "
                    f"Looked in `{self._rel(self.results_dir)}`.")
            if notes:
                note += "\n\n" + "\n".join(f"- {n}" for n in notes)
            return (gr.Dataframe(value=None, visible=False),
                    plots.message_figure("No benchmark results yet.", "Cumulative error distribution"), note)
        rows = []
        for r in results:
            row = plots.result_summary(r)
            row["file"] = r["file"]
            rows.append(row)
        cols = ["name", "dataset", "subset", "split", "protocol", "NME (%)", "FR@0.10 (%)", "AUC@0.10", "faces", "file"]
        cols = [c for c in cols if any(c in row for row in rows)]
        table = {"headers": cols, "data": [[row.get(c) for c in cols] for row in rows]}
        note = f"{len(results)} result(s) from `{self._rel(self.results_dir)}`."
        if notes:
            note += "\n\n" + "\n".join(f"- {n}" for n in notes)
        return gr.Dataframe(value=table, visible=True), plots.ced_figure(results), note

    @staticmethod
    def _rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(ROOT))
        except ValueError:
            return p.name


# ----------------------------------------------------------------------------- layout

INTRO = """# Face alignment with sparse dynamic graphs
68 facial landmarks from a **graph head** (sparse, data-driven neighbourhoods with per-image edge
weights) with **per-landmark uncertainty**. Everything runs on the server's {device}."""


def build_demo(graph_weights=None, fc_weights=None, *, accurate_weights=None, models: Models | None = None,
               backend: str = "auto", device: str = "cpu", detector: str = "mediapipe", threads: int = 0,
               max_pixels: int = MAX_PIXELS, results_dir: str | Path = RESULTS_DIR,
               stream_time_limit: int = STREAM_TIME_LIMIT, webcam_slots: int = WEBCAM_SLOTS,
               concurrency: int = CONCURRENCY, queue_max: int = QUEUE_MAX,
               max_faces: int = DEFAULT_MAX_FACES) -> gr.Blocks:
    """The app as a gr.Blocks with its queue set. Loads the models once (unless `models` is
    given); graph_weights / fc_weights default to core.checkpoint.GRAPH_WEIGHTS / FC_WEIGHTS,
    accurate_weights (the upload tab's second model) to none."""
    if models is None:
        models = load_models(graph_weights, fc_weights, accurate_weights=accurate_weights, backend=backend,
                             device=device, detector=detector, threads=threads, webcam_slots=webcam_slots,
                             max_faces=max_faces)
    app = LandmarkApp(models, max_pixels=max_pixels, results_dir=results_dir)
    examples = [str(p) for p in (ASTRONAUT, TWO_FACES) if p.is_file()]

    @handler
    def api_landmarks(image: str | None) -> dict:
        return app.api_landmarks(image)

    @handler
    def upload_run(image: str | None, overlays: list[str], model: str) -> tuple:
        return app.run_upload(image, overlays, model=model)

    @handler
    def upload_button(image: str | None, overlays: list[str], model: str) -> tuple:
        return app.run_upload(image, overlays, manual=True, model=model)

    @handler
    def upload_render(state: dict | None, overlays: list[str]) -> np.ndarray | None:
        return app.render_upload(state, overlays)

    @handler
    def upload_select(state: dict | None, index: int | None) -> tuple[go.Figure, go.Figure]:
        return app.face_figures(state, index)

    @handler
    def webcam(frame: np.ndarray | None, overlays: list[str],
               request: gr.Request) -> tuple[np.ndarray | None, str, dict]:
        session = getattr(request, "session_hash", None) or "anonymous"
        return app.webcam_frame(frame, overlays, session)

    @handler
    def occlusion(image: str | None, kind: str, x: float, y: float, w: float, h: float, seed: float,
                  count: float, fill: str, state: dict | None) -> tuple:
        return app.run_occlusion(image, kind, x, y, w, h, seed, count, fill, state)

    @handler
    def occlusion_first(image: str | None, kind: str, x: float, y: float, w: float, h: float, seed: float,
                        count: float, fill: str, state: dict | None) -> tuple:
        """Opening the tab runs the comparison once (not again while a result is shown)."""
        if state:
            return (gr.skip(),) * 7
        return app.run_occlusion(image, kind, x, y, w, h, seed, count, fill, state)

    @handler
    def benchmarks() -> tuple[gr.Dataframe, go.Figure, str]:
        return app.benchmark_view()

    with gr.Blocks(title="Face alignment: sparse dynamic graph", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO.format(device=models.device))
        with gr.Tabs():
            # ---------------------------------------------------------------- upload
            with gr.Tab("Upload", id="upload"):
                with gr.Row():
                    with gr.Column(scale=1):
                        up_in = ImageInput(label="Photo (one or several faces)", sources=["upload", "clipboard"],
                                           elem_id="upload-input", height=420)
                        up_overlays = gr.CheckboxGroup(OVERLAY_CHOICES, value=["points", "graph", "box"],
                                                       label="Overlays")
                        up_model = gr.Radio(MODEL_CHOICES, value=MODEL_GRAPH, label="Model",
                                            visible=models.accurate is not None, elem_id="upload-model")
                        up_btn = gr.Button("Detect landmarks", variant="primary")
                        if examples:
                            gr.Examples(examples, inputs=[up_in], label="Examples", cache_examples=False)
                    with gr.Column(scale=1):
                        up_out = gr.Image(label="Annotated", type="numpy", interactive=False,
                                          elem_id="upload-output", height=420, format="png")
                        up_status = gr.Markdown("Upload a photo or pick an example.", elem_id="upload-status")
                        up_json = gr.File(label="Landmarks (JSON)", interactive=False, elem_id="upload-json")
                with gr.Row():
                    up_face = gr.Dropdown(choices=[], label="Face shown in the plots", interactive=False)
                with gr.Row():
                    up_adj = gr.Plot(label="Dynamic adjacency (68x68)")
                    up_unc = gr.Plot(label="Per-landmark uncertainty")
                up_state = gr.State(None, time_to_live=STATE_TTL)
                up_outputs = [up_out, up_json, up_face, up_adj, up_unc, up_status, up_state]
                up_in.change(upload_run, [up_in, up_overlays, up_model], up_outputs, api_visibility="undocumented",
                             trigger_mode="always_last")
                up_model.change(upload_run, [up_in, up_overlays, up_model], up_outputs, api_visibility="undocumented",
                                trigger_mode="always_last")
                up_btn.click(upload_button, [up_in, up_overlays, up_model], up_outputs,
                             api_visibility="undocumented")
                up_overlays.change(upload_render, [up_state, up_overlays], [up_out], api_visibility="undocumented",
                                   trigger_mode="always_last", show_progress="hidden")
                up_face.change(upload_select, [up_state, up_face], [up_adj, up_unc], api_visibility="undocumented",
                               show_progress="hidden")

            # ---------------------------------------------------------------- webcam
            with gr.Tab("Webcam", id="webcam"):
                gr.Markdown(f"Press the camera button to start. Frames go through a **video-mode** aligner "
                            f"(tracking between frames); a stream stops after {stream_time_limit} s so that one "
                            f"user cannot hold the server: press it again to continue.")
                with gr.Row():
                    with gr.Column():
                        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                                       webcam_options=gr.WebcamOptions(mirror=True), elem_id="webcam-input")
                        cam_overlays = gr.CheckboxGroup(OVERLAY_CHOICES, value=["points", "graph", "ellipses"],
                                                        label="Overlays")
                    with gr.Column():
                        cam_out = gr.Image(label="Landmarks", type="numpy", interactive=False, format="jpeg",
                                           elem_id="webcam-output")
                        cam_status = gr.Markdown(f"Device: **{models.device}**", elem_id="webcam-status")
                        cam_json = gr.JSON(label="Stream (JSON)", elem_id="webcam-json", open=False)
                cam.stream(webcam, [cam, cam_overlays], [cam_out, cam_status, cam_json], stream_every=STREAM_EVERY,
                           time_limit=stream_time_limit, concurrency_limit=max(1, len(models.video)),
                           concurrency_id="webcam", show_progress="hidden", api_visibility="undocumented")

            # ---------------------------------------------------------------- in-browser webcam
            page = browser_webcam.BrowserWebcam.from_weights(models.graph_weights or GRAPH_WEIGHTS, FAST_WEIGHTS)
            with gr.Tab("Webcam (in browser)", id="browser-webcam"):
                browser_webcam.tab(page)

            # ---------------------------------------------------------------- occlusion
            with gr.Tab("Occlusion robustness", id="occlusion") as oc_tab:
                gr.Markdown("Hide part of the face and compare the **graph head** with the **FC head** on the same "
                            "occluded image (both use the face boxes found on the clean image). The numbers are each "
                            "model's mean landmark displacement from its own unoccluded prediction. The occluder "
                            "position and size are relative to each face box (0..1).")
                with gr.Row():
                    with gr.Column(scale=1):
                        oc_in = ImageInput(label="Photo", sources=["upload", "clipboard"],
                                           value=str(ASTRONAUT) if ASTRONAUT.is_file() else None, height=300,
                                           elem_id="occlusion-input")
                        if examples:
                            gr.Examples(examples, inputs=[oc_in], label="Examples", cache_examples=False)
                    with gr.Column(scale=1):
                        oc_kind = gr.Radio(OCCLUDERS, value="box", label="Occluder")
                        with gr.Row():
                            oc_x = gr.Slider(0, 1, 0.5, step=0.01, label="x (centre)")
                            oc_y = gr.Slider(0, 1, 0.7, step=0.01, label="y (centre)")
                        with gr.Row():
                            oc_w = gr.Slider(0.02, 1.2, 0.6, step=0.01, label="width")
                            oc_h = gr.Slider(0.02, 1.2, 0.3, step=0.01, label="height")
                        with gr.Row():
                            oc_seed = gr.Slider(0, 999, 0, step=1, label="seed (random)")
                            oc_count = gr.Slider(1, 8, 3, step=1, label="occluders (random)")
                        oc_fill = gr.Radio(FILLS, value="gray", label="Fill")
                        oc_btn = gr.Button("Compare", variant="primary")
                with gr.Row():
                    with gr.Column():
                        oc_g = gr.Image(label="Graph head (SDFL)", type="numpy", interactive=False,
                                        elem_id="occlusion-graph")
                        oc_g_txt = gr.Markdown(elem_id="occlusion-graph-text")
                    with gr.Column():
                        oc_f = gr.Image(label="FC head (baseline)", type="numpy", interactive=False,
                                        elem_id="occlusion-fc")
                        oc_f_txt = gr.Markdown(elem_id="occlusion-fc-text")
                oc_plot = gr.Plot(label="Displacement per landmark")
                oc_status = gr.Markdown()
                oc_state = gr.State(None, time_to_live=STATE_TTL)
                oc_inputs = [oc_in, oc_kind, oc_x, oc_y, oc_w, oc_h, oc_seed, oc_count, oc_fill, oc_state]
                oc_outputs = [oc_g, oc_g_txt, oc_f, oc_f_txt, oc_plot, oc_status, oc_state]
                oc_btn.click(occlusion, oc_inputs, oc_outputs, api_visibility="undocumented")
                oc_tab.select(occlusion_first, oc_inputs, oc_outputs, api_visibility="undocumented")
                for comp in (oc_in, oc_kind, oc_fill):
                    comp.change(occlusion, oc_inputs, oc_outputs, api_visibility="undocumented",
                                trigger_mode="always_last", concurrency_id="occlusion")
                for comp in (oc_x, oc_y, oc_w, oc_h, oc_seed, oc_count):
                    comp.release(occlusion, oc_inputs, oc_outputs, api_visibility="undocumented",
                                 trigger_mode="always_last", concurrency_id="occlusion", show_progress="minimal")

            # ---------------------------------------------------------------- benchmarks
            with gr.Tab("Benchmark", id="benchmark"):
                bm_note = gr.Markdown()
                bm_table = gr.Dataframe(label="Results", interactive=False, wrap=True, visible=False)
                bm_plot = gr.Plot(label="CED")
                bm_btn = gr.Button("Reload")
                bm_btn.click(benchmarks, None, [bm_table, bm_plot, bm_note], api_visibility="undocumented")

        # ---------------------------------------------------------------- JSON API (no UI)
        api_in = ImageInput(visible=False, label="image")
        api_out = gr.JSON(visible=False, label="landmarks")
        api_btn = gr.Button(visible=False)
        api_btn.click(api_landmarks, [api_in], [api_out], api_name="landmarks",
                      api_description="Landmarks of every face in an image: {faces: [{box, score, landmarks (68x2 px), "
                                      "covariance (68x2x2 px^2), adjacency (68x68)}], device, latency_ms, image_size}.")
        demo.load(benchmarks, None, [bm_table, bm_plot, bm_note], api_visibility="undocumented")

    demo.queue(default_concurrency_limit=max(1, int(concurrency)), max_size=queue_max)
    demo.landmark_app = app  # for tests and scripts
    demo.browser_webcam = page  # its routes are mounted by launch()
    return demo


LAUNCH_ATTEMPTS = 3


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, *,
           max_file_size: str | int | None = MAX_FILE_SIZE, prevent_thread_lock: bool = False, quiet: bool = False,
           share: bool = False, state_sessions: int = 512):
    """Start the server (queue and limits already set by build_demo). port=None/0: GRADIO_SERVER_PORT
    or 7860..; host None: GRADIO_SERVER_NAME or 127.0.0.1."""
    for attempt in range(LAUNCH_ATTEMPTS):
        try:
            out = demo.launch(server_name=host, server_port=port or None, max_file_size=max_file_size,
                              prevent_thread_lock=True, quiet=quiet, share=share, show_error=False,
                              ssr_mode=False, footer_links=["api", "gradio"], state_session_capacity=state_sessions)
            if getattr(demo, "browser_webcam", None) is not None:
                browser_webcam.mount(demo.server_app, demo.browser_webcam)
            if not prevent_thread_lock:
                demo.block_thread()
            return out
        except ValueError as e:
            # Gradio's start-up probe of its own page gives up after one 3 s timeout, which a busy
            # machine can exceed; try again a bounded number of times before reporting it.
            if "localhost is not accessible" not in str(e) or attempt == LAUNCH_ATTEMPTS - 1:
                raise
            log.warning("server did not answer its start-up probe in time; retrying (%d/%d)", attempt + 2, LAUNCH_ATTEMPTS)
            demo.close()
