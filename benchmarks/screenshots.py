"""PNG screenshots of the app for the README, taken with headless Chromium (Playwright driving the
system `chromium`):

    docs/screenshots/upload.png          Upload tab: the two-face example, annotated, with plots
    docs/screenshots/occlusion.png       Occlusion tab: the flagship vs its FC baseline on the same occluder
    docs/screenshots/benchmark.png       Benchmark tab (table + CED curves, or the "no results" note)
    docs/screenshots/webcam_overlay.png  a still frame through the video-mode webcam handler (graph,
                                         error ellipses, FPS / latency / device box), saved directly
    docs/screenshots/webcam.png          Webcam tab streaming from Chromium's fake camera (fed with
                                         that still frame)

    nice python -m benchmarks.screenshots                       # shipped weights
    nice python -m benchmarks.screenshots --weights W --fc-weights F --out /tmp/shots
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_text(page, selector: str, pattern: str, timeout_ms: int = 180_000):
    page.wait_for_function(
        "([sel, pat]) => { const e = document.querySelector(sel); return e && new RegExp(pat).test(e.innerText); }",
        arg=[selector, pattern], timeout=timeout_ms)


def settle(page, ms: int = 1500):
    page.wait_for_timeout(ms)  # plotly draws and images decode after the values arrive


def webcam_overlay(app, image: Path, out: Path, camera: Path, frames: int = 30):
    """Feed the same still frame a few times through the webcam handler (video-mode aligner: the
    FPS counter is the real server rate) and save the last annotated frame; write the frame as an
    MJPEG file for Chromium's fake camera."""
    import numpy as np
    from PIL import Image

    import cv2

    from core import overlays as ov

    frame = np.asarray(Image.open(image).convert("RGB"))
    faces = app.models.graph.predict(frame)
    if faces:  # frame it like a webcam: 4:3 around the face, 640x480
        x0, y0, x1, y1 = ov.face_region(faces[0].box[None], frame.shape, scale=2.6)
        cx, hh = (x0 + x1) / 2, (y1 - y0) / 2
        hw = hh * 4 / 3
        x0, x1 = int(max(0, cx - hw)), int(min(frame.shape[1], cx + hw))
        frame = cv2.resize(frame[y0:y1, x0:x1], (640, 480), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92])
    camera.write_bytes(buf.tobytes() * 10)
    shown = None
    for _ in range(frames):
        shown, status, _ = app.webcam_frame(frame, ["points", "graph", "ellipses"], "screenshot")
    Image.fromarray(shown).save(out)
    return status


def main(argv=None) -> int:
    from app.ui import ASTRONAUT, TWO_FACES, build_demo, launch, missing_weights
    from core.checkpoint import DEFAULT_WEIGHTS, FC_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--fc-weights", default=str(FC_WEIGHTS))
    ap.add_argument("--accurate-weights", default="", help="upload tab's second model; '' = none")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args(argv)

    missing = missing_weights(args.weights, args.fc_weights, args.accurate_weights)
    if missing:
        print("error: weights not found: " + ", ".join(missing), file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: needs Playwright (pip install playwright) and Chromium (apt-get install chromium)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    demo = build_demo(args.weights, args.fc_weights, accurate_weights=args.accurate_weights or None, webcam_slots=1)
    app = demo.landmark_app
    import tempfile

    camera = Path(tempfile.mkdtemp(prefix="sdfl_shots_")) / "camera.mjpeg"
    status = webcam_overlay(app, ASTRONAUT, out / "webcam_overlay.png", camera)
    print(f"webcam_overlay.png  ({status})")

    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS + [
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}"])
            ctx = browser.new_context(viewport={"width": args.width, "height": 1000}, device_scale_factor=1,
                                      permissions=["camera"])
            local = ("http://127.0.0.1", "data:", "blob:")
            ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(local) else r.abort())
            page = ctx.new_page()
            page.set_default_timeout(180_000)
            page.goto(url, wait_until="domcontentloaded")

            t0 = time.time()
            page.locator("#upload-input input[type=file]").set_input_files(str(TWO_FACES))
            wait_text(page, "#upload-status", r"face\(s\)")
            page.locator("#upload-output img").wait_for(state="visible")
            settle(page, 2500)
            page.screenshot(path=str(out / "upload.png"), full_page=True)
            print(f"upload.png          ({time.time() - t0:.1f} s)")

            t0 = time.time()
            page.get_by_role("tab", name="Occlusion").click()
            wait_text(page, "#occlusion-graph-text", r"px")
            page.locator("#occlusion-fc img").wait_for(state="visible")
            settle(page, 2500)
            page.screenshot(path=str(out / "occlusion.png"), full_page=True)
            print(f"occlusion.png       ({time.time() - t0:.1f} s)")

            page.get_by_role("tab", name="Webcam", exact=True).click()
            page.get_by_text("Click to Access Webcam").click()
            page.locator("#webcam-input button:has-text('Record')").first.click()
            wait_text(page, "#webcam-status", "FPS")
            settle(page, 5000)
            page.screenshot(path=str(out / "webcam.png"), full_page=True)
            page.locator("#webcam-input button:has-text('Stop')").first.click()
            print("webcam.png")

            page.get_by_role("tab", name="Benchmark").click()
            settle(page, 2500)
            page.screenshot(path=str(out / "benchmark.png"), full_page=True)
            print("benchmark.png")
            browser.close()
    finally:
        demo.close()
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
