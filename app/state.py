"""What the app holds for its lifetime: its constants, the loaded models (`load_models`), the pool
of video-mode aligners webcam sessions share, and per-session frame statistics. No Gradio here.

Model files come from core.checkpoint (DEFAULT_WEIGHTS, FC_WEIGHTS, FAST_WEIGHTS): launch_app.py
passes them in, nothing here names a weight file."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.checkpoint import DEFAULT_WEIGHTS, FC_WEIGHTS

from . import webcam
from .faces_limit import DEFAULT_MAX_FACES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
RESULTS_DIR = ROOT / "benchmarks" / "results"
ASTRONAUT = EXAMPLES_DIR / "astronaut.jpg"
TWO_FACES = EXAMPLES_DIR / "two_faces.jpg"

MAX_PIXELS = 50_000_000  # refuse larger images with a message (core.images: 100 MP at most)
MAX_FILE_SIZE = "25mb"  # upload limit, Blocks.launch(max_file_size=...)
DISPLAY_MAX_SIDE = 1600  # annotated images are drawn on a copy at most this large
OCCLUSION_VIEW_SIDE = 800  # the occlusion views zoom on the faces: at most (and at least half) this large
OCCLUSION_WORK_SIDE = 1600  # the occlusion demo works on a copy at most this large (px reported in file pixels)
STATE_TTL = 1800  # s: per-session results (display copies) are dropped after this
# Upload-tab model choice: the app's model (the flagship: also the webcam, the occlusion demo and the
# API) or, when one is loaded with --accurate-weights, a second photo model.
MODEL_GRAPH, MODEL_ACCURATE = "graph", "accurate"
# (The radio's labels name the loaded files: app.tabs.upload.model_choices.)
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




@dataclass
class Models:
    """The aligners the app serves: `graph`, the graph-relational model (the flagship by default), for
    photos, the API and the occlusion comparison, beside `fc`, its FC baseline on the same features;
    `accurate`, an optional second photo model the upload tab can switch to; a pool of video-mode
    aligners for webcams (the flagship, int8, by default)."""

    graph: Any
    fc: Any
    video: list[Any]
    graph_weights: str = ""
    fc_weights: str = ""
    accurate: Any = None
    accurate_weights: str = ""
    locks: dict[int, threading.Lock] = field(default_factory=dict)
    graph_raw: Any = None  # `graph` / `fc` without their shape prior (the occlusion demo's switch); None: same
    fc_raw: Any = None

    @property
    def photo(self) -> Any:
        """The photo model of the upload tab's default and the API: the second model when loaded."""
        return self.accurate if self.accurate is not None else self.graph

    def lock(self, aligner) -> threading.Lock:
        """One lock per aligner instance: a detector/session object is not assumed thread-safe."""
        return self.locks.setdefault(id(aligner), threading.Lock())

    @property
    def device(self) -> str:
        name = getattr(self.graph, "device_name", "?")
        provider = getattr(self.graph, "provider", "")
        return f"{name} ({provider})" if provider else str(name)


def missing_weights(*paths) -> list[str]:
    """The weight files among `paths` (stems or .safetensors paths; empty ones skipped) that do not exist
    (`<stem>.onnx` stands in for `<stem>.safetensors`: core.runners.has_tensors_or_onnx)."""
    from core.checkpoint import stem_paths
    from core.runners import has_tensors_or_onnx

    missing = []
    for p in filter(None, paths):
        st, js = stem_paths(p)
        if not has_tensors_or_onnx(st):
            missing.append(str(st))
        if not js.is_file():
            missing.append(str(js))
    return missing


def load_models(graph_weights=None, fc_weights=None, *, accurate_weights=None, webcam_weights=None,
                backend: str = "auto", device: str = "cpu", detector: str = "mediapipe", threads: int = 0,
                max_faces: int = DEFAULT_MAX_FACES, webcam_slots: int = WEBCAM_SLOTS, webcam_precision: str = "auto") -> Models:
    """Load every aligner once. Raises core.checkpoint.CheckpointError / ValueError on missing or
    broken weights (launch_app.py turns that into a message and a non-zero exit).
    graph_weights / fc_weights: None = core.checkpoint.DEFAULT_WEIGHTS (the flagship) / FC_WEIGHTS.
    accurate_weights: a second photo model for the upload tab; None = none.
    webcam_weights: the webcam's video-mode model (e.g. core.checkpoint.FAST_WEIGHTS on a slow
    machine); None = graph_weights.
    webcam_precision: "auto" = int8 (<stem>.int8.onnx, faster) on a CPU when that file exists, else
    fp32; photos and the occlusion demo always run fp32."""
    from core.inference import FaceAligner, onnx_path_for

    graph_weights = Path(graph_weights) if graph_weights else DEFAULT_WEIGHTS
    fc_weights = Path(fc_weights) if fc_weights else FC_WEIGHTS
    webcam_weights = Path(webcam_weights or graph_weights)
    if webcam_precision == "auto":
        cpu_onnx = backend != "torch" and device == "cpu"
        webcam_precision = "int8" if cpu_onnx and onnx_path_for(webcam_weights, "int8").is_file() else "fp32"
    kw = dict(backend=backend, device=device, detector=detector, threads=threads, max_faces=max_faces)
    graph = FaceAligner(weights=graph_weights, video=False, **kw)
    fc = FaceAligner(weights=fc_weights, video=False, **kw)
    video = [FaceAligner(weights=webcam_weights, video=True, precision=webcam_precision, **kw)
             for _ in range(max(1, webcam_slots))]
    accurate = FaceAligner(weights=accurate_weights, video=False, **kw) if accurate_weights else None
    raw = [FaceAligner(weights=w, video=False, shape_prior=False, **kw) if a.shape_prior is not None else a
           for a, w in ((graph, graph_weights), (fc, fc_weights))]
    return Models(graph, fc, video, str(graph_weights), str(fc_weights), accurate,
                  str(accurate_weights) if accurate_weights else "", graph_raw=raw[0], fc_raw=raw[1])


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


class AppBase:
    """The state every tab's handlers share: the models, the webcam pool and frame statistics, the
    neighbourhoods to draw, and a folder for downloads. The tab mixins (app.tabs.*, app.api) add
    the handlers; app.ui.LandmarkApp puts them together."""

    def __init__(self, models: Models, *, max_pixels: int = MAX_PIXELS, results_dir: str | Path = RESULTS_DIR,
                 display_max_side: int = DISPLAY_MAX_SIDE):
        self.models = models
        self.max_pixels = int(max_pixels)
        self.results_dir = Path(results_dir)
        self.display_max_side = int(display_max_side)
        self.pool = VideoPool(models.video)
        self.clock = webcam.StreamClock()  # frames received per second, per session (app.webcam)
        self.neighbours = np.asarray(getattr(models.graph, "neighbours"))
        self.fc_neighbours = np.asarray(getattr(models.fc, "neighbours", self.neighbours))
        self.webcam_neighbours = np.asarray(getattr(models.video[0], "neighbours", self.neighbours))
        self.webcam_model = Path(str(getattr(models.video[0], "weights", "?"))).stem  # one model for the whole pool
        self._tmp = Path(tempfile.mkdtemp(prefix="sdfl_app_"))

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
