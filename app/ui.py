"""The Gradio app: upload, webcam, occlusion-robustness and benchmark tabs, plus the JSON API
endpoint `/landmarks`. This module assembles them; each tab lives in app/tabs/, the API in
app/api.py, the models and limits in app/state.py, input checks in app/io.py.

Models load once, in `load_models()` (or are passed in). `build_demo()` returns a `gr.Blocks`
with its queue configured; `launch()` starts it with the upload-size limit. Tests build it with
tiny random weights:

    demo = build_demo(graph_weights=tiny, fc_weights=tiny_fc)
    launch(demo, port=0, prevent_thread_lock=True); ...; demo.close()
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the app

import gradio as gr  # noqa: E402

from core.checkpoint import DEFAULT_WEIGHTS, FAST_WEIGHTS  # noqa: E402

from . import browser_webcam  # noqa: E402
from .api import ApiHandlers, add_api  # noqa: E402
from .faces_limit import DEFAULT_MAX_FACES  # noqa: E402
from .io import (ImageInput, UserInputError, face_dict, face_view, handler, interocular,  # noqa: E402,F401
                 read_image_file)
from .state import (ASTRONAUT, CONCURRENCY, MAX_FILE_SIZE, MAX_PIXELS, MODEL_ACCURATE, MODEL_GRAPH,  # noqa: E402,F401
                    QUEUE_MAX, RESULTS_DIR, STREAM_TIME_LIMIT, TWO_FACES, WEBCAM_SLOTS, AppBase, Models,
                    VideoPool, load_models, missing_weights)
from .tabs.benchmark import BenchmarkTab, build_benchmark_tab  # noqa: E402
from .tabs.occlusion import OcclusionTab, build_occlusion_tab  # noqa: E402
from .tabs.upload import UploadTab, build_upload_tab  # noqa: E402
from .tabs.webcam import WebcamTab, build_webcam_tab  # noqa: E402

log = logging.getLogger("sdfl.app")


class LandmarkApp(AppBase, ApiHandlers, UploadTab, WebcamTab, OcclusionTab, BenchmarkTab):
    """Handlers of the UI and API, independent of the layout (so tests and the screenshot script
    can call them directly): LandmarkApp(models, max_pixels=..., results_dir=...)."""


INTRO = """# Face alignment with sparse dynamic graphs
68 landmarks per face, with an error ellipse for each, from a model whose **landmark graph** has edges
weighted per image. Runs on the server's {device}. Try an example below."""

# Phone (narrow screens): a short input so the result starts on the first screen; wide tables
# scroll sideways instead of squeezing to one column.
CSS = """
@media (max-width: 720px) {
  #upload-input, #upload-input .image-container { height: 190px !important; max-height: 190px !important; }
  #upload-output { height: 300px !important; }
  .app-intro p { display: none; }
  .app-intro h1 { font-size: 1.35rem !important; margin-bottom: 0 !important; }
  .tab-container button { padding: 0 7px !important; font-size: 14px !important; }
}
#benchmark-table { overflow-x: auto; }
#benchmark-table table { min-width: 640px; }
"""


def build_demo(graph_weights=None, fc_weights=None, *, accurate_weights=None, models: Models | None = None,
               backend: str = "auto", device: str = "cpu", detector: str = "mediapipe", threads: int = 0,
               max_pixels: int = MAX_PIXELS, results_dir: str | Path = RESULTS_DIR,
               stream_time_limit: int = STREAM_TIME_LIMIT, webcam_slots: int = WEBCAM_SLOTS,
               concurrency: int = CONCURRENCY, queue_max: int = QUEUE_MAX,
               max_faces: int = DEFAULT_MAX_FACES) -> gr.Blocks:
    """The app as a gr.Blocks with its queue set. Loads the models once (unless `models` is
    given); graph_weights / fc_weights default to core.checkpoint.DEFAULT_WEIGHTS (the flagship) /
    FC_WEIGHTS (its FC baseline), accurate_weights (the upload tab's second model) to none."""
    if models is None:
        models = load_models(graph_weights, fc_weights, accurate_weights=accurate_weights, backend=backend,
                             device=device, detector=detector, threads=threads, webcam_slots=webcam_slots,
                             max_faces=max_faces)
    app = LandmarkApp(models, max_pixels=max_pixels, results_dir=results_dir)
    examples = [str(p) for p in (ASTRONAUT, TWO_FACES) if p.is_file()]

    with gr.Blocks(title="Face alignment: sparse dynamic graph", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO.format(device=models.device), elem_classes="app-intro")
        with gr.Tabs():
            build_upload_tab(app, examples)
            build_webcam_tab(app, stream_time_limit)
            page = browser_webcam.BrowserWebcam.from_weights(models.graph_weights or DEFAULT_WEIGHTS, FAST_WEIGHTS)
            with gr.Tab("Webcam (in browser)", id="browser-webcam"):
                browser_webcam.tab(page)
            build_occlusion_tab(app, examples)
            build_benchmark_tab(app, demo)
        add_api(app)

    demo.queue(default_concurrency_limit=max(1, int(concurrency)), max_size=queue_max)
    demo.landmark_app = app  # for tests and scripts
    demo.browser_webcam = page  # its routes are mounted by launch()
    demo.app_css = CSS  # Gradio 6 takes css at launch(): see launch()
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
                              ssr_mode=False, footer_links=["api", "gradio"], state_session_capacity=state_sessions,
                              css=getattr(demo, "app_css", None))
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
