"""The JSON API: `/landmarks` (image in, every face's landmarks out), served by the same queue as
the UI and listed on the app's "Use via API" page.

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860/").predict(handle_file("photo.jpg"), api_name="/landmarks")
"""
from __future__ import annotations

import time

import gradio as gr

from .io import ImageInput, face_dict, handler, read_image_file
from .faces_limit import truncation_fields, truncation_note

# What a response contains, exactly (tests/test_app.py checks the keys against a real response).
API_DESCRIPTION = ("Landmarks of every face in an image: {faces: [{box [x0, y0, x1, y1] px, score, confidence "
                   "(0..1, the model's own evidence of a face), landmarks (68x2 px), covariance (68x2x2 px^2)}], "
                   "truncated (present, true, only when more faces than max_faces were found), message, device, provider, "
                   "latency_ms, image_size [w, h]}. Coordinates are in the uploaded file's pixels.")
FACE_KEYS = ("box", "score", "confidence", "landmarks", "covariance")


class ApiHandlers:
    """The API's handler (a mixin of app.ui.LandmarkApp: uses self.models, self.predict)."""

    def api_landmarks(self, image: str | None) -> dict:
        """Landmarks of every face in an image: {"faces": [Face.to_dict()...], "device", "latency_ms",
        "image_size": [w, h], "message"}. A photo without a face is an honest empty answer
        (faces [] and a message); unreadable, empty or too large files come back as a readable gr.Error."""
        img, scale = read_image_file(image, self.max_pixels)
        t0 = time.perf_counter()
        faces = self.predict(self.models.photo, img)
        latency = (time.perf_counter() - t0) * 1000.0
        return {"faces": [face_dict(f, scale) for f in faces], **truncation_fields(faces),
                "message": (f"{len(faces)} face(s) found.{truncation_note(faces, self.models.photo.max_faces)}"
                            if faces else "No face found in the image."),
                "device": self.models.device,
                "provider": getattr(self.models.photo, "provider", None), "latency_ms": round(latency, 2),
                "image_size": [int(round(img.shape[1] * scale)), int(round(img.shape[0] * scale))]}


def add_api(app) -> None:
    """Register `/landmarks` inside the current gr.Blocks (hidden components: no UI)."""

    @handler
    def api_landmarks(image: str | None) -> dict:
        return app.api_landmarks(image)

    api_in = ImageInput(visible=False, label="image")
    api_out = gr.JSON(visible=False, label="landmarks")
    api_btn = gr.Button(visible=False)
    api_btn.click(api_landmarks, [api_in], [api_out], api_name="landmarks", api_description=API_DESCRIPTION)
