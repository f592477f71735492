"""Webcam tab: one frame of the stream through a video-mode aligner, and one readout of what the
user needs to know, drawn on the frame, written in the status line and returned as JSON (the
same numbers in all three):

- frames received per second: frames that arrived from the browser per second over the last
  RATE_WINDOW_S (the camera rate the server really gets, after the network and the queue);
- model time per frame: the aligner's own time on this frame (detector + landmark model), and
  its moving average;
- model (weights stem, precision) and device (name, ONNX Runtime / torch provider).

Frames are timestamped on arrival (time.monotonic()), and that timestamp goes to the aligner,
so tracking and smoothing follow the real interval between frames."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

RATE_WINDOW_S = 3.0  # frames received per second: counted over this window
PAUSE_S = 3.0  # a gap longer than this between frames: the stream restarted, counts start over
MODEL_TIME_MEMORY = 0.8  # moving average of the model time: m <- k m + (1 - k) latest
SESSIONS = 256  # per-session clocks kept (least recently used dropped)


@dataclass
class Readout:
    received_fps: float  # frames per second arriving from the browser
    model_ms: float  # aligner time on this frame
    model_ms_avg: float
    model: str
    precision: str
    device: str
    provider: str
    faces: int

    def lines(self) -> list[str]:
        """The box drawn on the frame."""
        return [f"camera in: {self.received_fps:4.1f} frames/s", f"model: {self.model_ms:5.1f} ms/frame",
                f"{self.model} ({self.precision})", f"{self.device} | {self.provider}", f"{self.faces} face(s)"]

    def markdown(self) -> str:
        return (f"Frames received from the browser: **{self.received_fps:.1f} FPS** · "
                f"Model time: **{self.model_ms:.1f} ms per frame** (avg {self.model_ms_avg:.1f} ms) · "
                f"Model: **{self.model}** ({self.precision}) · Device: **{self.device}** ({self.provider}) · "
                f"{self.faces} face(s)")

    def __post_init__(self):  # rounded once, so the frame, the status line and the JSON show one figure
        self.received_fps, self.model_ms, self.model_ms_avg = (round(float(v), 2) for v in
                                                               (self.received_fps, self.model_ms, self.model_ms_avg))

    def to_dict(self) -> dict:
        return asdict(self)


class StreamClock:
    """Per-session arrival times of frames and model time (thread-safe)."""

    def __init__(self, window: float = RATE_WINDOW_S, capacity: int = SESSIONS):
        self._data: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.window, self.capacity = window, capacity

    def arrive(self, session: str, now: float | None = None) -> float:
        """Record a frame's arrival; returns its timestamp (seconds, monotonic)."""
        now = time.monotonic() if now is None else float(now)
        with self._lock:
            st = self._data.pop(session, None) or {"times": deque(maxlen=512), "model": None}
            times = st["times"]
            if times and now - times[-1] > PAUSE_S:
                times.clear()
            times.append(now)
            while len(times) > 2 and now - times[0] > self.window:
                times.popleft()
            self._data[session] = st
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return now

    def received_fps(self, session: str) -> float:
        with self._lock:
            times = self._data.get(session, {}).get("times") or ()
            return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def model_time(self, session: str, seconds: float) -> float:
        """Record the model time of a frame; returns the moving average (seconds)."""
        with self._lock:
            st = self._data.setdefault(session, {"times": deque(maxlen=512), "model": None})
            st["model"] = seconds if st["model"] is None else MODEL_TIME_MEMORY * st["model"] + (1 - MODEL_TIME_MEMORY) * seconds
            return st["model"]


def describe(aligner) -> tuple[str, str, str, str]:
    """(model, precision, device, provider) of an aligner."""
    from pathlib import Path

    return (Path(str(getattr(aligner, "weights", "?"))).stem, str(getattr(aligner, "precision", "fp32")),
            str(getattr(aligner, "device_name", "?")), str(getattr(aligner, "provider", "")))


def process_frame(frame: np.ndarray, session: str, pool, clock: StreamClock,
                  draw: Callable[[np.ndarray, list], np.ndarray], text_box: Callable[..., np.ndarray]
                  ) -> tuple[np.ndarray, Readout, list[Any]]:
    """One streamed RGB frame: arrival timestamp -> video-mode aligner (from `pool`, per session)
    -> (annotated frame, readout, faces). ValueError from the aligner propagates."""
    t = clock.arrive(session)
    with pool.acquire(session) as aligner:
        t0 = time.perf_counter()
        faces = aligner.predict(frame, timestamp=t)
        spent = time.perf_counter() - t0
        model, precision, device, provider = describe(aligner)
    avg = clock.model_time(session, spent)
    r = Readout(clock.received_fps(session), 1000 * spent, 1000 * avg, model, precision, device, provider, len(faces))
    out = text_box(draw(frame, faces), r.lines(), corner="bottom-left")  # top-left: the image label
    return out, r, faces


def stream_json(readout: Readout, faces: list, scale: float = 1.0) -> dict:
    """The stream's JSON: the readout's figures and the faces (track id, box, score, landmarks)."""
    d = readout.to_dict()
    d["faces"] = [{"track_id": getattr(f, "track_id", None), "box": [round(float(v), 1) for v in f.box],
                   "score": round(float(f.score), 3),
                   "landmarks": np.asarray(f.landmarks, np.float64).round(1).tolist()} for f in faces]
    return d


__all__ = ["Readout", "StreamClock", "process_frame", "stream_json", "describe", "RATE_WINDOW_S"]
