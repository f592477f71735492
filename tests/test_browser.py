"""End-to-end: the app in headless Chromium (Playwright driving the Debian `chromium` package):
upload the astronaut photo on the Upload tab and wait for the annotated result; a bad upload
shows a message; the Webcam tab streams frames from Chromium's fake camera (fed with a still of
the astronaut) and shows the annotated stream with its FPS / device line.

CI needs:  apt-get install -y chromium   and   pip install playwright   (no `playwright install`:
the system Chromium is used). Skipped, with the reason, when either is missing."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "app" / "examples" / "astronaut.jpg"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"headless browser test needs Chromium at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install playwright)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(tiny_weights, tiny_fc_weights):
    from app.ui import build_demo, launch

    demo = build_demo(tiny_weights, tiny_fc_weights, webcam_slots=1)
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def fake_camera(path: Path) -> Path:
    """An MJPEG 'camera' for Chromium's --use-file-for-fake-video-capture: the astronaut's face,
    640x480."""
    import cv2

    img = cv2.imread(str(ASTRONAUT))
    ok, buf = cv2.imencode(".jpg", cv2.resize(img[0:300, 100:400], (640, 480)))
    assert ok
    path.write_bytes(buf.tobytes() * 10)
    return path


@pytest.fixture(scope="module")
def page(url, tmp_path_factory):
    camera = fake_camera(tmp_path_factory.mktemp("camera") / "face.mjpeg")
    args = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                            f"--use-file-for-fake-video-capture={camera}"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
        # Only the local server: no fonts/CDNs from the internet (CI runs offline).
        local = ("http://127.0.0.1", "data:", "blob:")
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(url, wait_until="domcontentloaded")
        yield pg
        browser.close()


def test_upload_shows_annotated_result(page):
    page.locator("#upload-input input[type=file]").set_input_files(str(ASTRONAUT))
    result = page.locator("#upload-output img")
    result.wait_for(state="visible", timeout=180_000)
    page.wait_for_function(
        "() => { const s = document.querySelector('#upload-status'); return s && /face\\(s\\)/.test(s.innerText); }",
        timeout=180_000)
    assert "1 face(s)" in page.locator("#upload-status").inner_text()
    box = result.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100
    src = result.get_attribute("src") or ""
    assert src.startswith(("http", "/", "data:image", "blob:"))
    assert page.locator("#upload-json a, #upload-json [download]").count() >= 1  # JSON to download


def test_bad_upload_shows_a_message(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image\n" * 50)
    page.reload(wait_until="domcontentloaded")
    page.locator("#upload-input input[type=file]").set_input_files(str(bad))
    page.wait_for_function(
        "() => { const s = document.querySelector('#upload-status'); return s && /not an image/.test(s.innerText); }",
        timeout=120_000)


def test_webcam_stream_shows_landmarks_and_fps(page):
    page.reload(wait_until="domcontentloaded")
    page.get_by_role("tab", name="Webcam", exact=True).click()
    page.get_by_text("Click to Access Webcam").click()
    page.locator("#webcam-input button:has-text('Record')").first.click()
    page.wait_for_function(
        "() => { const s = document.querySelector('#webcam-status'); return s && /FPS/.test(s.innerText) "
        "&& /device/.test(s.innerText); }", timeout=120_000)
    page.locator("#webcam-output img").wait_for(state="visible")
    status = page.locator("#webcam-status").inner_text()
    assert "ms per frame" in status and "face" in status
    page.locator("#webcam-input button:has-text('Stop')").first.click()
