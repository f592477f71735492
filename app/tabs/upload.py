"""Upload tab: a photo in, every face's landmarks out: the annotated photo (overlays sized to each
face), a zoom on each face (numbered landmarks), the JSON to download, and the selected face's
adjacency and uncertainty plots."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np
import plotly.graph_objects as go

from core import overlays as ov
from core.images import fit_within

from .. import plots
from ..io import ImageInput, UserInputError, face_dict, face_view, handler, interocular, options_from, read_image_file
from ..faces_limit import truncation_fields, truncation_note
from ..state import MODEL_ACCURATE, MODEL_GRAPH, OVERLAY_CHOICES, STATE_TTL

# Overlay sizes follow the inter-ocular distance (IOD) of each face in display pixels.
POINT_RADIUS_PER_IOD, POINT_RADIUS_RANGE = 0.035, (1.0, 5.0)
EDGE_WIDTH_PER_IOD, EDGE_WIDTH_RANGE = 0.04, (1.0, 4.0)
NUMBERS_MIN_IOD = 110.0  # px: below this the 68 numbers overlap; they are drawn on the face zoom instead
ZOOM_SIDE = 400  # px: side of each face crop in the zoom gallery (IOD about 130 px: numbers readable)
ZOOM_MARGIN = 1.5  # crop side = ZOOM_MARGIN x the face box's larger side


def face_style(landmarks: np.ndarray) -> tuple[float, float, bool]:
    """(point radius, largest edge width, numbers readable) for a face of these display-pixel
    landmarks: radius = 0.035 IOD and width = 0.04 IOD, clipped; numbers from IOD >= 110 px."""
    iod = interocular(landmarks)
    radius = float(np.clip(POINT_RADIUS_PER_IOD * iod, *POINT_RADIUS_RANGE))
    width = float(np.clip(EDGE_WIDTH_PER_IOD * iod, *EDGE_WIDTH_RANGE))
    return radius, width, iod >= NUMBERS_MIN_IOD


def draw_scaled(image: np.ndarray, faces: list[dict], neighbours, options: ov.OverlayOptions,
                labels: bool = True) -> tuple[np.ndarray, int]:
    """core.overlays.draw_face with sizes from each face's IOD -> (image, faces whose numbers were
    too small to draw)."""
    out = np.array(image, copy=True)
    hidden = 0
    for i, f in enumerate(faces):
        pts, (r, width, readable) = f["landmarks"], face_style(f["landmarks"])
        if options.box and f.get("box") is not None:
            out = ov.draw_box(out, f["box"], label=f"#{i}" if labels and len(faces) > 1 else None)
        if options.curves:
            out = ov.draw_curves(out, pts)
        if options.graph and neighbours is not None:
            out = ov.draw_graph(out, pts, neighbours, f.get("adjacency"), max_thickness=width)
        if options.ellipses and f.get("covariance") is not None:
            out = ov.draw_ellipses(out, pts, f["covariance"])
        if options.points:
            out = ov.draw_points(out, pts, radius=r)
        if options.numbers and readable:
            out = ov.draw_numbers(out, pts)
        hidden += bool(options.numbers and not readable)
    return out, hidden


class UploadTab:
    """Upload handlers (a mixin of app.ui.LandmarkApp: uses self.models, self.predict, self._json_file)."""

    def upload_aligner(self, model: str) -> tuple[Any, str]:
        """The aligner of an upload-tab model choice, and its name (the app's model when the choice
        is MODEL_GRAPH, unknown, or the second model is not loaded)."""
        if model == MODEL_ACCURATE and self.models.accurate is not None:
            return self.models.accurate, Path(self.models.accurate_weights).stem
        return self.models.graph, Path(self.models.graph_weights).stem or "graph head"

    def run_upload(self, image: str | None, overlays: list[str], manual: bool = False,
                   model: str = MODEL_ACCURATE) -> tuple:
        """-> (annotated image, JSON file, face dropdown, adjacency fig, uncertainty fig, status, state,
        face crops). model: MODEL_GRAPH or MODEL_ACCURATE (see upload_aligner)."""
        if not image:
            if manual:
                gr.Warning("Upload a photo first (or pick an example).")
            return self._upload_outputs(None, None, [], None, "Upload a photo or pick an example.", overlays)
        try:
            img, scale = read_image_file(image, self.max_pixels)
        except UserInputError as e:
            gr.Warning(str(e), title="Bad input")
            return self._upload_outputs(None, None, [], None, f"**Problem:** {e}", overlays)
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
                                        f"{latency:.0f} ms on {self.models.device}).", overlays)
        payload = {"image": Path(str(image)).name, "image_size": [w, h], "model": model_name,
                   "device": self.models.device,
                   "latency_ms": round(latency, 2), "faces": [face_dict(f, scale, adjacency=True) for f in faces],
                   **truncation_fields(faces)}
        jpath = self._json_file(payload, Path(str(image)).stem)
        status = (f"**{len(faces)} face(s)** found in a {w}x{h} image · {model_name} · {latency:.0f} ms on "
                  f"{self.models.device}{truncation_note(faces, getattr(aligner, 'max_faces', None))}")
        return self._upload_outputs(self.render_upload(state, overlays), jpath, views, state, status, overlays)

    def _upload_outputs(self, annotated: np.ndarray | None, json_path: str | None, views: list[dict],
                        state: dict | None, status: str, overlays: list[str] | None = None) -> tuple:
        choices = [(f"#{i} (score {v['score']:.2f})" if v["score"] is not None else f"#{i}", i)
                   for i, v in enumerate(views)]
        dropdown = gr.Dropdown(choices=choices, value=0 if choices else None, interactive=len(choices) > 1)
        adj_fig, unc_fig = self.face_figures(state, 0)
        return annotated, json_path, dropdown, adj_fig, unc_fig, status, state, self.face_crops(state, overlays)

    def render_upload(self, state: dict | None, overlays: list[str]) -> np.ndarray | None:
        """The photo with the selected overlays, each face's sized to its IOD (numbers only where
        they fit: the face zoom always has them)."""
        if not state:
            return None
        faces = [ov.scale_face(v, state["scale"]) for v in state["faces"]]
        return draw_scaled(state["image"], faces, self.neighbours, options_from(overlays))[0]

    def face_crops(self, state: dict | None, overlays: list[str] | None) -> list[tuple[np.ndarray, str]]:
        """One zoomed crop per face (ZOOM_SIDE px), with the selected overlays and the numbers when
        selected -> [(image, caption)] for the gallery."""
        if not state or not state.get("faces"):
            return []
        img, s = state["image"], state["scale"]
        crops = []
        for i, v in enumerate(state["faces"]):
            f = ov.scale_face(v, s)
            x0, y0, x1, y1 = ov.face_region(np.asarray(f["box"])[None], img.shape, scale=ZOOM_MARGIN)
            k = ZOOM_SIDE / max(x1 - x0, y1 - y0, 1)
            crop = cv2.resize(img[y0:y1, x0:x1], (max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))),
                              interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
            face = ov.scale_face(f, k, (x0, y0))
            crop = draw_scaled(crop, [face], self.neighbours, options_from(overlays), labels=False)[0]
            score = f" · score {v['score']:.2f}" if v.get("score") is not None else ""
            crops.append((crop, f"face #{i}{score}"))
        return crops

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


def model_choices(models) -> list[tuple[str, str]]:
    """Radio choices named after the loaded files (core.checkpoint decides which they are)."""
    graph = Path(models.graph_weights).stem or "graph head"
    choices = [(f"{graph}: the app's model (webcam, occlusion demo, API)", MODEL_GRAPH)]
    if models.accurate is not None:
        choices.insert(0, (f"{Path(models.accurate_weights).stem}: second photo model (--accurate-weights)",
                           MODEL_ACCURATE))
    return choices


def build_upload_tab(app, examples: list[str]) -> None:
    """The tab's layout and events, inside the current gr.Blocks. Phone: input, examples and
    result stack in that order, with the input kept short (CSS in app.ui) so the result starts
    on the first screen."""
    models = app.models

    @handler
    def upload_run(image: str | None, overlays: list[str], model: str) -> tuple:
        return app.run_upload(image, overlays, model=model)

    @handler
    def upload_button(image: str | None, overlays: list[str], model: str) -> tuple:
        return app.run_upload(image, overlays, manual=True, model=model)

    @handler
    def upload_render(state: dict | None, overlays: list[str]) -> tuple:
        return app.render_upload(state, overlays), app.face_crops(state, overlays)

    @handler
    def upload_select(state: dict | None, index: int | None) -> tuple[go.Figure, go.Figure]:
        return app.face_figures(state, index)

    def gallery_pick(evt: gr.SelectData) -> int:
        return int(evt.index)

    with gr.Tab("Upload", id="upload"):
        with gr.Row(elem_id="upload-row"):
            with gr.Column(scale=1, min_width=320):
                up_in = ImageInput(label="Photo (one or several faces)", sources=["upload", "clipboard"],
                                   elem_id="upload-input", height=300)
                if examples:
                    gr.Examples(examples, inputs=[up_in], label="Examples: click one", cache_examples=False,
                                examples_per_page=4)
                up_model = gr.Radio(model_choices(models), value=model_choices(models)[0][1], label="Model",
                                    visible=models.accurate is not None, elem_id="upload-model")
                up_btn = gr.Button("Detect landmarks", variant="primary")
            with gr.Column(scale=1, min_width=320):
                up_out = gr.Image(label="Landmarks", type="numpy", interactive=False,
                                  elem_id="upload-output", height=380, format="png")
                up_status = gr.Markdown("Upload a photo or pick an example.", elem_id="upload-status")
                up_overlays = gr.CheckboxGroup(OVERLAY_CHOICES, value=["points", "graph", "box"], label="Overlays")
        up_gallery = gr.Gallery(label="Each face, zoomed (numbers readable here): click to enlarge", columns=4,
                                rows=1, height=260, object_fit="contain", elem_id="upload-faces", preview=False,
                                allow_preview=True)
        with gr.Accordion("Inside the model: the selected face's graph weights and uncertainty", open=True):
            up_face = gr.Dropdown(choices=[], label="Face shown in the plots", interactive=False)
            with gr.Row():
                up_adj = gr.Plot(label="Dynamic adjacency (68x68)")
                up_unc = gr.Plot(label="Per-landmark uncertainty")
        up_json = gr.File(label="Landmarks (JSON)", interactive=False, elem_id="upload-json")
        up_state = gr.State(None, time_to_live=STATE_TTL)
        up_outputs = [up_out, up_json, up_face, up_adj, up_unc, up_status, up_state, up_gallery]
        inputs = [up_in, up_overlays, up_model]
        up_in.change(upload_run, inputs, up_outputs, api_visibility="undocumented", trigger_mode="always_last")
        up_model.change(upload_run, inputs, up_outputs, api_visibility="undocumented", trigger_mode="always_last")
        up_btn.click(upload_button, inputs, up_outputs, api_visibility="undocumented")
        up_overlays.change(upload_render, [up_state, up_overlays], [up_out, up_gallery], api_visibility="undocumented",
                           trigger_mode="always_last", show_progress="hidden")
        up_face.change(upload_select, [up_state, up_face], [up_adj, up_unc], api_visibility="undocumented",
                       show_progress="hidden")
        up_gallery.select(gallery_pick, None, up_face, api_visibility="undocumented", show_progress="hidden")
