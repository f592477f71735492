"""Occlusion tab: hide part of the face and compare the app's model (the flagship: sparse landmark
graph) with its FC baseline (FC layers over the same features) on the same occluded image (both use the
boxes found on the clean image). With the photo's landmark file
(.pts / .json) the numbers are errors against that ground truth; without, movement from each
model's own clean prediction, labelled as such. Ellipse growth on covered points, the legend
beside the images and a one-line reading (app.occlusion_metrics)."""
from __future__ import annotations

import os
import time

import cv2
import gradio as gr
import numpy as np

from core import occluders
from core import overlays as ov
from core.images import fit_within

from .. import plots
from ..io import ImageInput, UserInputError, face_view, handler, read_image_file, read_landmarks_file
from ..occlusion_metrics import match_truth, model_result, model_text, reading
from ..state import ASTRONAUT, FILLS, OCCLUDERS, OCCLUSION_VIEW_SIDE, OCCLUSION_WORK_SIDE, STATE_TTL

TRUTH_COLOR = (255, 255, 255)
PRIOR_COLOR = (255, 0, 255)  # the shape prior's move: from the model's own point to the one shown
GRAPH_NAME, FC_NAME = "Landmark graph (flagship)", "FC layers, same features (baseline)"


def _swatch(rgb: tuple[int, int, int], symbol: str) -> str:
    return f"<span style='color:rgb{tuple(rgb)};font-size:1.2em;text-shadow:0 0 2px #000'>{symbol}</span>"


LEGEND = f"""**In the images**

{_swatch(ov.POINT_COLOR, "●")} prediction on the occluded photo

{_swatch(ov.ELLIPSE_COLORS[0], "◯")} / {_swatch(ov.ELLIPSE_COLORS[1], "◯")} its 1σ / 2σ error ellipses

{_swatch(ov.REFERENCE_COLOR, "○")} the same model on the clean photo

{_swatch(PRIOR_COLOR, "╱")} where the shape prior moved the model's own point (switch it off to see the raw models)

{_swatch(TRUTH_COLOR, "✚")} ground truth (with a landmark file)

Flat gray / black / noise: the occluder. Sizes are relative to each face box (0..1)."""


def _draw_moves(image: np.ndarray, raw: list[np.ndarray], shown: list[dict], s: float, off) -> np.ndarray:
    """A line from each raw model point to the point shown (after the shape prior), where it moved."""
    out = image.copy()
    for r, f in zip(raw, shown):
        for a, b in zip((r - off) * s, (f["landmarks"] - off) * s):
            if np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.hypot(*(a - b)) >= 1.0:
                cv2.line(out, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), PRIOR_COLOR, 2,
                         cv2.LINE_AA)
    return out


class OcclusionTab:
    """Occlusion handlers (a mixin of app.ui.LandmarkApp: uses self.models, self.predict)."""

    def _pair(self, prior: bool) -> tuple:
        """(graph, FC) aligners with their shape prior, or without it (the raw models)."""
        m = self.models
        return (m.graph, m.fc) if prior else (m.graph_raw or m.graph, m.fc_raw or m.fc)

    def _clean_predictions(self, image: str, state: dict | None, prior: bool = True) -> dict:
        key = (str(image), os.path.getmtime(image) if os.path.exists(str(image)) else 0, bool(prior))
        if state and state.get("key") == key:
            return state
        img, scale = read_image_file(image, self.max_pixels)
        img, s = fit_within(img, OCCLUSION_WORK_SIDE)  # the state holds this copy: keep it small
        graph, fc = self._pair(prior)
        faces_g = self.predict(graph, img)
        if not faces_g:
            raise UserInputError("No face found in the image: the occlusion demo needs at least one face.")
        boxes = np.stack([face_view(f)["box"] for f in faces_g])
        faces_f = self.predict(fc, img, boxes=boxes)
        return {"key": key, "image": img, "boxes": boxes, "px": scale / s,  # file pixels per working pixel
                "graph": [face_view(f) for f in faces_g], "fc": [face_view(f) for f in faces_f]}

    def occlusion_mask(self, shape, boxes: np.ndarray, kind: str, x: float, y: float, w: float, h: float,
                       seed: int, count: int) -> np.ndarray:
        mask = np.zeros(shape[:2], bool)
        for k, box in enumerate(boxes):
            if kind == "random":
                mask |= occluders.random_occluders(shape[:2], box, int(seed) + 1000 * k, int(count))
            else:
                mask |= occluders.occluder_mask(shape[:2], box, kind, (x, y, w, h))
        return mask

    def occluded_image(self, img: np.ndarray, boxes: np.ndarray, kind: str, x: float, y: float, w: float,
                       h: float, seed: int, count: int, fill: str) -> np.ndarray:
        mask = self.occlusion_mask(img.shape, boxes, kind, x, y, w, h, seed, count)
        return occluders.apply_occlusion(img, mask, fill, int(seed))

    def run_occlusion(self, image: str | None, kind: str, x: float, y: float, w: float, h: float, seed: float,
                      count: float, fill: str, state: dict | None, truth: str | None = None,
                      prior: bool = True) -> tuple:
        """-> (graph image, graph text, fc image, fc text, per-landmark fig, reading + status, state).
        truth: an optional .pts / .json file with the photo's 68 labelled points per face; prior: both
        models with their shape prior (core.shape_prior; the lines show what it moved) or raw."""
        empty = (None, "", None, "", plots.message_figure("No result yet.", "Per-landmark error"))
        if not image:
            return (*empty, "Upload a photo or pick an example.", state)
        try:
            st = self._clean_predictions(image, state, prior)
            gt = read_landmarks_file(truth, st["px"])
        except UserInputError as e:
            gr.Warning(str(e), title="Bad input")
            return (*empty, f"**Problem:** {e}", None)
        img, boxes = st["image"], st["boxes"]
        mask = self.occlusion_mask(img.shape, boxes, kind, x, y, w, h, int(seed), int(count))
        occluded = occluders.apply_occlusion(img, mask, fill, int(seed))
        graph, fc = self._pair(prior)
        t0 = time.perf_counter()
        faces = [self.predict(m, occluded, boxes=boxes) for m in (graph, fc)]
        latency = (time.perf_counter() - t0) * 1000.0
        occ_g, occ_f = ([face_view(f) for f in fs] for fs in faces)
        # the models' own points in the same pass, before the prior: where it moved each one
        raw = [[np.asarray(f.raw_landmarks, np.float64) for f in fs]
               if prior and fs and all(f.raw_landmarks is not None for f in fs) else None for fs in faces]
        truths = match_truth(gt, st["graph"])
        ref = [t if t is not None else c["landmarks"] for t, c in zip(truths, st["graph"])]
        hh, ww = mask.shape
        covered = [mask[np.clip(np.round(p[:, 1]).astype(int), 0, hh - 1),
                        np.clip(np.round(p[:, 0]).astype(int), 0, ww - 1)] for p in ref]
        extra = [t for t in truths if t is not None]
        rx0, ry0, rx1, ry1 = ov.face_region(np.concatenate([boxes] + [
            np.r_[v["landmarks"].min(0), v["landmarks"].max(0)][None] for v in st["graph"] + occ_g]
            + [np.r_[t.min(0), t.max(0)][None] for t in extra]), img.shape)
        disp, s = fit_within(occluded[ry0:ry1, rx0:rx1], OCCLUSION_VIEW_SIDE)
        if s == 1.0 and max(disp.shape[:2]) < OCCLUSION_VIEW_SIDE // 2:  # small faces: enlarge the view
            s = (OCCLUSION_VIEW_SIDE // 2) / max(disp.shape[:2])
            disp = cv2.resize(disp, (round(disp.shape[1] * s), round(disp.shape[0] * s)),
                              interpolation=cv2.INTER_LINEAR)
            s = disp.shape[1] / (rx1 - rx0)
        off = (rx0, ry0)
        images, results = [], []
        for name, clean, occ, nb, moved in ((GRAPH_NAME, st["graph"], occ_g, self.neighbours, raw[0]),
                                            (FC_NAME, st["fc"], occ_f, self.fc_neighbours, raw[1])):
            out = disp
            for c, o, t in zip(clean, occ, truths):
                out = ov.draw_points(out, (c["landmarks"] - off) * s, ov.REFERENCE_COLOR, hollow=True)
                out = ov.draw_face(out, ov.scale_face(o, s, off), nb,
                                   ov.OverlayOptions(points=True, box=True, ellipses=True))
            if moved is not None:  # on top: where the prior moved each point
                out = _draw_moves(out, moved, occ, s, off)
                if t is not None:
                    out = ov.draw_points(out, (t - off) * s, TRUTH_COLOR, radius=1.5)
            images.append(out)
            results.append(model_result(name, clean, occ, truths, covered, st["px"]))
        g, f = results
        with_truth = g.occluded_nme is not None
        what = "Error against the ground truth" if with_truth else "Movement from the unoccluded prediction"
        fig = plots.displacement_chart({r.name: r.per_landmark for r in results}, None,
                                       f"{what}, per landmark" + (" (face #0)" if len(boxes) > 1 else ""),
                                       yaxis_title="error (px)" if with_truth else "movement (px)")
        status = (f"{reading(g, f)}\n\n{len(boxes)} face(s) · occluder: {kind} · shape prior "
                  f"{'on' if prior else 'off (raw models)'} · both models ran on the same "
                  f"occluded image with the boxes found on the clean one ({latency:.0f} ms for both)"
                  + ("" if with_truth or truth else " · no landmark file: numbers are movement, not error"))
        return images[0], model_text(g), images[1], model_text(f), fig, status, st


def build_occlusion_tab(app, examples: list[str]) -> None:
    """The tab's layout and events, inside the current gr.Blocks. Sliders rerun on release and on
    a value typed into their box (change); opening the tab runs the comparison once."""

    @handler
    def occlusion(image, kind, x, y, w, h, seed, count, fill, state, truth, prior) -> tuple:
        return app.run_occlusion(image, kind, x, y, w, h, seed, count, fill, state, truth, prior)

    @handler
    def occlusion_first(image, kind, x, y, w, h, seed, count, fill, state, truth, prior) -> tuple:
        """Opening the tab runs the comparison once (not again while a result is shown)."""
        if state:
            return (gr.skip(),) * 7
        return app.run_occlusion(image, kind, x, y, w, h, seed, count, fill, state, truth, prior)

    with gr.Tab("Occlusion", id="occlusion") as oc_tab:
        gr.Markdown("Hide part of the face and compare the flagship's **landmark graph** with **FC layers** on the "
                    "same features (the baseline), on the same occluded photo. Add the photo's landmark file (iBUG "
                    "`.pts` or JSON, 68 points per face) to measure **error**; without it the demo can only show how "
                    "far each model **moved**.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                oc_in = ImageInput(label="Photo", sources=["upload", "clipboard"], height=260,
                                   value=str(ASTRONAUT) if ASTRONAUT.is_file() else None, elem_id="occlusion-input")
                if examples:
                    gr.Examples(examples, inputs=[oc_in], label="Examples", cache_examples=False)
                oc_truth = gr.File(label="Ground truth (optional): landmark file of this photo",
                                   file_types=[".pts", ".json"], type="filepath", elem_id="occlusion-truth")
            with gr.Column(scale=1, min_width=300):
                oc_kind = gr.Radio(OCCLUDERS, value="box", label="Occluder")
                with gr.Row():
                    oc_x = gr.Slider(0, 1, 0.5, step=0.01, label="x (centre)", elem_id="occlusion-x")
                    oc_y = gr.Slider(0, 1, 0.7, step=0.01, label="y (centre)", elem_id="occlusion-y")
                with gr.Row():
                    oc_w = gr.Slider(0.02, 1.2, 0.6, step=0.01, label="width")
                    oc_h = gr.Slider(0.02, 1.2, 0.3, step=0.01, label="height")
                with gr.Row():
                    oc_seed = gr.Slider(0, 999, 0, step=1, label="seed (random)")
                    oc_count = gr.Slider(1, 8, 3, step=1, label="occluders (random)")
                oc_fill = gr.Radio(FILLS, value="gray", label="Fill")
                oc_prior = gr.Checkbox(True, label="Shape prior", elem_id="occlusion-prior",
                                       info="points the model is unsure of follow the shape of the others")
                oc_btn = gr.Button("Compare", variant="primary")
        oc_status = gr.Markdown(elem_id="occlusion-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=260):
                oc_g = gr.Image(label=GRAPH_NAME, type="numpy", interactive=False, elem_id="occlusion-graph")
                oc_g_txt = gr.Markdown(elem_id="occlusion-graph-text")
            with gr.Column(scale=3, min_width=260):
                oc_f = gr.Image(label=FC_NAME, type="numpy", interactive=False, elem_id="occlusion-fc")
                oc_f_txt = gr.Markdown(elem_id="occlusion-fc-text")
            with gr.Column(scale=1, min_width=170):
                gr.Markdown(LEGEND, elem_id="occlusion-legend")
        oc_plot = gr.Plot(label="Per landmark")
        oc_state = gr.State(None, time_to_live=STATE_TTL)
        oc_inputs = [oc_in, oc_kind, oc_x, oc_y, oc_w, oc_h, oc_seed, oc_count, oc_fill, oc_state, oc_truth, oc_prior]
        oc_outputs = [oc_g, oc_g_txt, oc_f, oc_f_txt, oc_plot, oc_status, oc_state]
        oc_btn.click(occlusion, oc_inputs, oc_outputs, api_visibility="undocumented")
        oc_tab.select(occlusion_first, oc_inputs, oc_outputs, api_visibility="undocumented")
        for comp in (oc_in, oc_kind, oc_fill, oc_truth, oc_prior):
            comp.change(occlusion, oc_inputs, oc_outputs, api_visibility="undocumented",
                        trigger_mode="always_last", concurrency_id="occlusion")
        for comp in (oc_x, oc_y, oc_w, oc_h, oc_seed, oc_count):  # drag (release) and typed value + Enter
            comp.change(occlusion, oc_inputs, oc_outputs, api_visibility="undocumented",
                        trigger_mode="always_last", concurrency_id="occlusion", show_progress="minimal")
