"""Webcam tab: frames streamed from the browser go through a video-mode aligner (tracking between
frames) taken from the shared pool; the annotated frame comes back with FPS, latency and device."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np

from core import overlays as ov

from ..io import _reason, handler, options_from
from ..state import OVERLAY_CHOICES, STREAM_EVERY


class WebcamTab:
    """The webcam handler (a mixin of app.ui.LandmarkApp: uses self.pool, self.stats)."""

    def webcam_frame(self, frame: np.ndarray | None, overlays: list[str],
                     session: str = "local") -> tuple[np.ndarray | None, str]:
        """One streamed frame through a video-mode aligner -> (annotated frame, status)."""
        if frame is None:
            return None, "Waiting for the camera…"
        frame = np.ascontiguousarray(frame[..., :3]).astype(np.uint8, copy=False)
        t0 = time.perf_counter()
        try:
            with self.pool.acquire(session) as aligner:
                faces = aligner.predict(frame, timestamp=time.monotonic())
                name, provider = getattr(aligner, "device_name", "?"), getattr(aligner, "provider", "")
                if getattr(aligner, "precision", "fp32") != "fp32":
                    provider = f"{provider}, {aligner.precision}"
        except ValueError as e:
            return frame, f"**Problem:** {_reason(e)}"
        latency = time.perf_counter() - t0
        fps, lat = self.stats.update(session, latency)
        out = ov.draw_faces(frame, faces, self.webcam_neighbours, options_from(overlays), labels=False)
        device = f"{name} | {provider}" if provider else str(name)
        out = ov.draw_text_box(out, [f"{fps:4.1f} FPS   {latency * 1000:5.1f} ms/frame", device,
                                     f"{len(faces)} face(s)"], corner="bottom-left")  # top-left: the label
        status = (f"**{fps:.1f} FPS** · {latency * 1000:.1f} ms per frame (avg {lat * 1000:.1f} ms) · "
                  f"{len(faces)} face(s) · model: **{self.webcam_model}** · device: **{name}** ({provider})")
        return out, status


def build_webcam_tab(app, stream_time_limit: int) -> None:
    """The tab's layout and events, inside the current gr.Blocks."""

    @handler
    def webcam(frame: np.ndarray | None, overlays: list[str],
               request: gr.Request) -> tuple[np.ndarray | None, str]:
        session = getattr(request, "session_hash", None) or "anonymous"
        return app.webcam_frame(frame, overlays, session)

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
                cam_status = gr.Markdown(f"Device: **{app.models.device}**", elem_id="webcam-status")
        cam.stream(webcam, [cam, cam_overlays], [cam_out, cam_status], stream_every=STREAM_EVERY,
                   time_limit=stream_time_limit, concurrency_limit=max(1, len(app.models.video)),
                   concurrency_id="webcam", show_progress="hidden", api_visibility="undocumented")
