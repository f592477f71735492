"""Webcam tab: frames streamed from the browser go through a video-mode aligner (tracking between
frames) taken from the shared pool; the annotated frame comes back with one labelled readout (frames
received per second, model time per frame, model, device: app.webcam), also as the stream's JSON."""
from __future__ import annotations

import gradio as gr
import numpy as np

from core import overlays as ov

from .. import webcam as stream
from ..io import _reason, handler, options_from
from ..state import OVERLAY_CHOICES, STREAM_EVERY


class WebcamTab:
    """The webcam handler (a mixin of app.ui.LandmarkApp: uses self.pool, self.clock)."""

    def webcam_frame(self, frame: np.ndarray | None, overlays: list[str],
                     session: str = "local") -> tuple[np.ndarray | None, str, dict]:
        """One streamed frame through a video-mode aligner -> (annotated frame, status, JSON):
        frames received per second, model time per frame, model and device (app.webcam)."""
        if frame is None:
            return None, "Waiting for the camera…", {}
        frame = np.ascontiguousarray(frame[..., :3]).astype(np.uint8, copy=False)
        draw = lambda img, faces: ov.draw_faces(img, faces, self.webcam_neighbours, options_from(overlays), labels=False)  # noqa: E731
        try:
            out, readout, faces = stream.process_frame(frame, session, self.pool, self.clock, draw, ov.draw_text_box)
        except ValueError as e:
            return frame, f"**Problem:** {_reason(e)}", {"error": _reason(e)}
        return out, readout.markdown(), stream.stream_json(readout, faces)


def build_webcam_tab(app, stream_time_limit: int) -> None:
    """The tab's layout and events, inside the current gr.Blocks."""

    @handler
    def webcam(frame: np.ndarray | None, overlays: list[str],
               request: gr.Request) -> tuple[np.ndarray | None, str, dict]:
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
                cam_json = gr.JSON(label="Stream (JSON)", elem_id="webcam-json", open=False)
        cam.stream(webcam, [cam, cam_overlays], [cam_out, cam_status, cam_json], stream_every=STREAM_EVERY,
                   time_limit=stream_time_limit, concurrency_limit=max(1, len(app.models.video)),
                   concurrency_id="webcam", show_progress="hidden", api_visibility="undocumented")
