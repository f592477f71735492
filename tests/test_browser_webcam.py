"""The in-browser webcam (app/browser_webcam.py + app/static/browser_webcam/): its routes serve only
the files they name; in headless Chromium (Playwright driving the Debian `chromium`) the page's
pipeline gives the Python ONNX path's landmarks on fixed frames (parity), runs on a fake camera with
the overlay on the face and a live counter, and says so when the camera is refused; the Gradio app
shows it in a tab. A tiny random model (tests/conftest.py) exported to ONNX stands in for the
shipped weights, except where the overlay must land on a real face: that test runs the shipped
fast tier (weights/sdfl_fast.onnx) and is skipped without it.

Needs Chromium (apt-get install -y chromium) and Playwright (pip); the browser tests are skipped,
with the reason, without them. ONNX Runtime Web is in the repository (app/static/vendor/)."""
from __future__ import annotations

import base64
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from app import browser_webcam as bw  # noqa: E402
from browser_env import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM, chromium_found, free_port  # noqa: E402

PARITY_PX = 0.5  # median |page - python| landmark distance allowed (px)
ON_FACE_PX = 3.0  # median distance of the page's live landmarks from the known positions (px)
LOCAL = ("http://127.0.0.1", "data:", "blob:")


def _browser_missing() -> str:
    if not chromium_found():
        return NO_CHROMIUM
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright (pip install playwright)"
    if not bw.BrowserWebcam(models=[]).vendor_ok():
        return "needs ONNX Runtime Web in app/static/vendor/onnxruntime-web (bash app/static/vendor/refresh.sh)"
    return ""


needs_browser = pytest.mark.skipif(bool(_browser_missing()), reason=_browser_missing() or "ok")


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    """The tiny graph model in a fresh folder with its <stem>.onnx beside it and a shape prior (fitted on
    the synthetic shapes) named in its JSON, so that the page's port of the prior runs in every test."""
    from conftest import link_prior
    from core.export_onnx import main as export_main

    weights = link_prior(tiny_weights, tmp_path_factory.mktemp("browser_onnx"))
    assert export_main(["--weights", str(weights)]) == 0
    return weights


@pytest.fixture(scope="module")
def page_spec(exported):
    from core.checkpoint import FAST_WEIGHTS

    spec = bw.BrowserWebcam.from_weights(exported, FAST_WEIGHTS, int8=False)
    assert spec.models[0].id == "tiny_graph"
    return spec


@pytest.fixture(scope="module")
def client(page_spec):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    bw.mount(app, page_spec)
    return TestClient(app)


# --------------------------------------------------------------------------- routes (no browser)
def test_routes_serve_only_named_files(client, page_spec):
    r = client.get(f"{bw.ROUTE}/")
    assert r.status_code == 200 and "main.js" in r.text
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    cfg = client.get(f"{bw.ROUTE}/config.json").json()
    assert cfg["default"] == "tiny_graph" and cfg["models"][0]["onnx"] == "models/tiny_graph.onnx"
    meta = client.get(f"{bw.ROUTE}/models/tiny_graph.json").json()
    assert meta["input_size"] == 64 and len(meta["neighbours"]) == meta["num_landmarks"] ** 2
    prior = meta["shape_prior"]  # what FaceAligner applies, for the page's shape_prior.js
    assert len(prior["mean"]) == 2 * meta["num_landmarks"] and len(prior["modes"]) == 2 * 68 * len(prior["variances"])
    onnx = page_spec.models[0].onnx
    assert client.get(f"{bw.ROUTE}/models/tiny_graph.onnx").content == onnx.read_bytes()
    assert len(client.get(f"{bw.ROUTE}/models/detector.onnx").content) == bw.DETECTOR_ONNX.stat().st_size
    assert client.get(f"{bw.ROUTE}/models/detector_full.onnx").content == bw.DETECTOR_FULL_ONNX.read_bytes()
    assert cfg["detector_full"] == "models/detector_full.onnx"
    assert client.get(f"{bw.ROUTE}/static/pipeline.js").headers["content-type"].startswith("text/javascript")
    for bad in ("static/..%2F..%2Fui.py", "static/ui.py", "models/..%2Fweights.onnx", "models/nope.onnx",
                "vendor/package.json", "models/tiny_graph.safetensors"):
        assert client.get(f"{bw.ROUTE}/{bad}").status_code == 404, bad


def test_wasm_is_sent_gzipped(client, page_spec, tmp_path):
    """The repository stores <name>.wasm.gz only: browsers that accept gzip get it as is, others the
    decompressed bytes; where the plain file is there too, those others get it."""
    import gzip

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    wasm = bytes(b"\0asm" + bytes(range(256)) * 64)
    name = "ort-wasm-simd-threaded.wasm"
    (tmp_path / (name + ".gz")).write_bytes(gzip.compress(wasm))
    app = FastAPI()
    bw.mount(app, bw.BrowserWebcam(models=page_spec.models, vendor_dir=tmp_path))
    c = TestClient(app)
    for plain_too in (False, True):
        if plain_too:
            (tmp_path / name).write_bytes(wasm)
        r = c.get(f"{bw.ROUTE}/vendor/{name}", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip" and r.headers["content-type"] == "application/wasm"
        assert r.content == wasm
        r = c.get(f"{bw.ROUTE}/vendor/{name}", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in r.headers and r.headers["content-type"] == "application/wasm"
        assert r.content == wasm


def test_repository_carries_the_runtime():
    """A clone serves the page with no npm step: both ORT Web builds are in the repository, at the
    version refresh.sh pins, each WASM only gzipped (what the page loads: docs/BROWSER_WEBCAM.md)."""
    import re
    import subprocess

    page = bw.BrowserWebcam(models=[])
    assert page.vendor_ok(bw.WASM_FILES) and page.vendor_ok(bw.WEBGPU_FILES)
    pinned = re.search(r"^VERSION=(\S+)", (bw.VENDOR_DIR.parent / "refresh.sh").read_text(), re.M).group(1)
    assert pinned == bw.ORT_WEB_VERSION
    assert (bw.VENDOR_DIR / "VERSION").read_text().split()[0] == f"onnxruntime-web@{pinned}"
    assert sorted(p.name for p in bw.VENDOR_DIR.iterdir() if not p.name.endswith(".wasm")) == \
        sorted(Path(rel).name for rel in bw.page_files() if rel.startswith("app/static/vendor/"))
    if (ROOT / ".git").exists():  # a clone: git tracks what the page needs
        tracked = subprocess.run(["git", "ls-files", "app/static"], cwd=ROOT, capture_output=True, text=True).stdout
        if tracked:
            assert set(bw.page_files()) <= set(tracked.split()), set(bw.page_files()) - set(tracked.split())


def test_app_model_leads_the_menu_and_fast_tier_stays_the_fallback(exported, tmp_path):
    """The app's model is the first one (the page's `auto` starts with it), then the fast tier, which
    stays `fast` (what `auto` moves to on a slow device)."""
    for suffix in (".safetensors", ".json", ".onnx"):
        shutil.copy(exported.with_suffix(suffix), tmp_path / f"tiny_fast{suffix}")
    spec = bw.BrowserWebcam.from_weights(exported, tmp_path / "tiny_fast.safetensors", int8=False)
    assert [m.id for m in spec.models] == ["tiny_graph", "tiny_fast"]
    cfg = spec.config()
    assert cfg["default"] == "tiny_graph" and cfg["fast"] == "tiny_fast" and "default" in cfg["models"][0]["label"]
    same = bw.BrowserWebcam.from_weights(exported, exported, int8=False)
    assert [m.id for m in same.models] == ["tiny_graph"]  # one model given twice is offered once


def test_missing_runtime_is_reported(page_spec, tmp_path):
    empty = bw.BrowserWebcam(models=page_spec.models, vendor_dir=tmp_path)
    assert empty.config()["ort"] == {"version": bw.ORT_WEB_VERSION, "wasm": False, "webgpu": False}
    assert bw.BrowserWebcam.from_weights(tmp_path / "none.safetensors").models == []  # no ONNX: no model


# --------------------------------------------------------------------------- in the browser
@pytest.fixture(scope="module")
def server(page_spec):
    from browser_webcam_fps import serve

    url, srv = serve(page_spec)
    yield url
    srv.should_exit = True


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from browser_webcam_fps import make_clip

    return make_clip(tmp_path_factory.mktemp("camera") / "face.y4m", moving=False)


@pytest.fixture(scope="module")
def browser(clip):
    from playwright.sync_api import sync_playwright

    args = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                            f"--use-file-for-fake-video-capture={clip}"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield p, b
        b.close()


def _new_page(browser, permissions=("camera",)):
    ctx = browser.new_context(permissions=list(permissions), viewport={"width": 900, "height": 800})
    ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL) else route.abort())
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    return pg


def _wait_ready(pg):
    pg.wait_for_function("() => window.sdflStats && (window.sdflStats.ready || window.sdflStats.error)")
    assert not pg.evaluate("() => window.sdflStats.error")


def _frames() -> list[np.ndarray]:
    """Fixed RGB frames: the astronaut face at 640x480, shifted a little from frame to frame."""
    from browser_webcam_fps import base_frame

    base = cv2.cvtColor(base_frame(), cv2.COLOR_BGR2RGB)
    out = []
    for dx, dy in ((0, 0), (3, 1), (7, 2), (10, 4), (12, 3)):
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        out.append(cv2.warpAffine(base, m, (640, 480), borderMode=cv2.BORDER_REPLICATE))
    return out


MOVING_DX = (0, 8, 20, 36, 50, 60, 60, 60, 45, 30, None, None, 30, 30, 20, 0)  # px; None: no face (grey)


def _moving_frames() -> list[np.ndarray]:
    """The astronaut face moving (dx, dx / 4), stopping, turning back, gone for two frames and back:
    with the tiny random model this runs re-crops, lost tracks, same-frame detections, remembered
    tracks and the redetect schedule (tests/test_browser_webcam_tracking.py checks each decision
    of the port on a scripted scene)."""
    from browser_webcam_fps import base_frame

    base = cv2.cvtColor(base_frame(), cv2.COLOR_BGR2RGB)
    out = []
    for dx in MOVING_DX:
        if dx is None:
            out.append(np.full_like(base, 90))
            continue
        m = np.float32([[1, 0, dx], [0, 1, dx / 4]])
        out.append(cv2.warpAffine(base, m, (640, 480), borderMode=cv2.BORDER_REPLICATE))
    return out


def _page_predict(pg, rgb: np.ndarray, boxes, t):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    b64 = base64.b64encode(rgba.tobytes()).decode()
    faces = pg.evaluate("""async ([b64, w, h, boxes, t]) => {
        const bin = atob(b64), px = new Uint8ClampedArray(bin.length);
        for (let i = 0; i < bin.length; i++) px[i] = bin.charCodeAt(i);
        return await window.sdfl.predictFrame(px, w, h, boxes, t); }""",
                        [b64, rgb.shape[1], rgb.shape[0], boxes, t])
    return [(f["id"], np.asarray(f["landmarks"]).reshape(-1, 2)) for f in faces]


@needs_browser
@pytest.mark.parametrize("mode", ["boxes", "detector", "moving"])
def test_page_matches_python_onnx_path(browser, server, exported, mode):
    """Video mode (core.tracking.VideoTracker, ported in tracking.js): on fixed frames (two-pass
    first frame, then tracked and One-Euro smoothed) and on a moving face that leaves and comes
    back, the page's landmarks within PARITY_PX (median) of core.inference.FaceAligner on ONNX
    Runtime, with the same track ids, detector calls and model passes."""
    from core.detectors import MediaPipeDetector
    from core.inference import FaceAligner

    _, b = browser
    pg = _new_page(b)
    pg.goto(f"{server}?model=tiny_graph&backend=wasm", wait_until="domcontentloaded")
    _wait_ready(pg)
    pg.evaluate("() => window.sdfl.reset()")
    detector = "none" if mode == "boxes" else MediaPipeDetector(model="both")
    ref = FaceAligner(exported, backend="onnx", video=True, detector=detector, threads=1, max_faces=4)
    box = [215.0, 130.0, 345.0, 280.0]
    dists = []
    frames = _moving_frames() if mode == "moving" else _frames()
    for k, frame in enumerate(frames):
        boxes = [box] if (mode == "boxes" and k == 0) else None
        want = [(f.track_id, f.landmarks) for f in ref.predict(frame, boxes=boxes, timestamp=k / 30)]
        got = _page_predict(pg, frame, boxes, k / 30)
        assert [i for i, _ in got] == [i for i, _ in want], (k, got, want)
        assert mode == "moving" or len(got) == 1, (k, len(got))
        dists += [np.linalg.norm(g - w, axis=1) for (_, g), (_, w) in zip(got, want)]
        counters = pg.evaluate("() => window.sdfl.counters()")
        assert counters == {"detectorCalls": ref._video.detector_calls, "modelPasses": ref._video.model_passes}, k
    d = np.concatenate(dists)
    print(f"parity ({mode}): {len(frames)} frames, {len(dists)} faces, {ref._video.detector_calls} detector calls, "
          f"{ref._video.model_passes} model passes; median {np.median(d):.4f} px, max {d.max():.4f} px")
    assert np.median(d) < PARITY_PX and d.max() < 5 * PARITY_PX
    pg.context.close()


def _known_positions(weights) -> np.ndarray:
    """Where the clip's face landmarks are: the Python ONNX path (video mode, converged) on the
    camera frame as Chromium decodes the y4m (4:2:0) clip."""
    from browser_webcam_fps import base_frame
    from core.detectors import MediaPipeDetector
    from core.inference import FaceAligner

    yuv = cv2.cvtColor(base_frame(), cv2.COLOR_BGR2YUV_I420)
    rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    ref = FaceAligner(weights, backend="onnx", video=True, detector=MediaPipeDetector(model="both"), threads=1)
    for k in range(40):
        faces = ref.predict(rgb, timestamp=k / 30)
    assert len(faces) == 1
    return faces[0].landmarks


@needs_browser
@pytest.mark.skipif(not (ROOT / "weights" / "sdfl_fast.onnx").is_file(), reason="needs weights/sdfl_fast.onnx")
def test_fake_camera_overlay_on_face_and_counter(browser, server):
    """Start on Chromium's fake camera (a still of the astronaut): the page draws the shipped fast
    model's landmarks where the Python path puts them on that frame, and the counter runs."""
    from core.checkpoint import FAST_WEIGHTS

    _, b = browser
    pg = _new_page(b)
    vendor = set()  # the ORT Web files the page fetched: exactly the WASM build the repository carries
    pg.on("response", lambda r: "/vendor/" in r.url and r.ok and vendor.add(r.url.rsplit("/", 1)[1]))
    pg.goto(f"{server}?model=sdfl_fast&backend=wasm&autostart=1", wait_until="domcontentloaded")
    pg.wait_for_function("() => window.sdflStats && (window.sdflStats.framesDrawn >= 30 || window.sdflStats.error)")
    stats = pg.evaluate("() => window.sdflStats")
    assert not stats["error"] and stats["faces"] == 1 and stats["backend"] == "WASM"
    assert vendor == set(bw.WASM_FILES), vendor
    pts = np.asarray(stats["lastFaces"][0]["landmarks"]).reshape(-1, 2)
    known = _known_positions(FAST_WEIGHTS)
    err = np.linalg.norm(pts - known, axis=1)
    side = float(np.ptp(known, axis=0).max())
    print(f"fake camera: median {np.median(err):.2f} px from the known positions (face {side:.0f} px), "
          f"{stats['fps']:.1f} fps drawn")
    assert np.median(err) < ON_FACE_PX
    # the overlay is on the canvas: a landmark's pixel has the point colour (0, 255, 128)
    i = 30  # nose tip
    px = pg.evaluate("""([x, y]) => Array.from(document.getElementById('canvas').getContext('2d')
                        .getImageData(Math.round(x) + 0, Math.round(y) + 0, 1, 1).data)""",
                     [float(pts[i, 0]), float(pts[i, 1])])
    assert px[1] > 200 and px[0] < 80, px
    counter = pg.locator("#counter").inner_text()
    assert "frames/s drawn" in counter and "ms/frame" in counter and "WASM" in counter and "1 face(s)" in counter
    pg.context.close()


@needs_browser
def test_tiny_model_runs_on_the_fake_camera(browser, server):
    _, b = browser
    pg = _new_page(b)
    pg.goto(f"{server}?model=tiny_graph&backend=wasm&autostart=1", wait_until="domcontentloaded")
    pg.wait_for_function("() => window.sdflStats && (window.sdflStats.framesDrawn >= 10 || window.sdflStats.error)")
    stats = pg.evaluate("() => window.sdflStats")
    assert not stats["error"] and stats["faces"] >= 1 and stats["model"] == "tiny_graph"
    assert stats["modelMs"] > 0 and "tiny_graph" in pg.locator("#counter").inner_text()
    pg.locator("#start").click()  # stop
    n = pg.evaluate("() => window.sdflStats.framesDrawn")
    time.sleep(0.5)
    assert pg.evaluate("() => window.sdflStats.framesDrawn") <= n + 1
    pg.context.close()


@needs_browser
def test_no_permission_message(browser, server):
    """Without camera permission the page says so and points to the server-side webcam."""
    p, _ = browser
    b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + ["--use-fake-device-for-media-stream"])
    try:
        pg = _new_page(b, permissions=())
        pg.goto(f"{server}?model=tiny_graph&backend=wasm", wait_until="domcontentloaded")
        _wait_ready(pg)
        pg.locator("#start").click()
        pg.wait_for_function("() => !document.getElementById('message').hidden && "
                             "/denied/.test(document.getElementById('message').innerText)", timeout=60_000)
        text = pg.locator("#message").inner_text()
        assert "Camera permission denied" in text and "server-side Webcam tab" in text
        assert pg.evaluate("() => window.sdflStats.framesDrawn") == 0
    finally:
        b.close()


@needs_browser
def test_gradio_app_has_the_tab(browser, exported, tiny_fc_weights):
    from app.ui import build_demo, launch

    demo = build_demo(exported, tiny_fc_weights, webcam_slots=1)
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        _, b = browser
        pg = _new_page(b)
        pg.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        pg.get_by_role("tab", name="Webcam (in browser)").click()
        frame = pg.frame_locator("#browser-webcam-frame")
        frame.locator("#start").wait_for(state="visible")
        inner = next(f for f in pg.frames if f.url.endswith(f"{bw.ROUTE}/"))
        inner.wait_for_function("() => window.sdflStats && (window.sdflStats.ready || window.sdflStats.error)")
        assert inner.evaluate("() => window.sdflStats.error") == ""
        # inside the Gradio page the frame is not cross-origin isolated: 1 WASM thread, and it says so
        assert "WASM threads off" in frame.locator("#notes").inner_text()
        pg.context.close()
    finally:
        demo.close()
