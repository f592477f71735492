"""Which files the in-browser webcam page really fetches, per backend, and how many bytes travel
(headless Chromium, fake camera; the page's routes on a bare FastAPI app, as in
browser_webcam_fps.py). This is what decides the ONNX Runtime Web files the repository carries
(app/static/vendor/onnxruntime-web, docs/BROWSER_WEBCAM.md).

    python benchmarks/browser_webcam_assets.py                       # wasm, auto, webgpu (SwiftShader forced)
    python benchmarks/browser_webcam_assets.py --backends wasm --model sdfl_flagship

WebGPU is forced onto Chromium's SwiftShader adapter (this machine has no GPU): the page loads the
WebGPU build, then (no result within 20 s) falls back to the WASM build; both sets are listed."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

WEBGPU_ARGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"]
WAIT_S = 90  # per backend: until frames are drawn (or the WebGPU fallback has loaded)


def fetched(pw, url: str, backend: str, clip: Path) -> dict:
    import browser_webcam_fps as fps

    extra = WEBGPU_ARGS if backend == "webgpu" else []
    args = [a for a in fps.CHROMIUM_ARGS if not (extra and a == "--disable-gpu")] + extra
    browser = pw.chromium.launch(executable_path=fps.CHROMIUM, args=args + [f"--use-file-for-fake-video-capture={clip}"])
    pg = browser.new_context(permissions=["camera"]).new_page()
    got: dict[str, int] = {}

    def on_response(r):
        name = r.url.split("/sdfl-browser/", 1)[-1].split("?", 1)[0]
        if r.ok and name.startswith(("vendor/", "models/")):
            got[name] = int(r.headers.get("content-length", 0))  # bytes on the wire (gzip where sent so)

    pg.on("response", on_response)
    pg.goto(f"{url}&backend={backend}", wait_until="domcontentloaded")
    t_end = time.time() + WAIT_S
    while time.time() < t_end:
        s = pg.evaluate("() => window.sdflStats && [window.sdflStats.framesDrawn, window.sdflStats.error]")
        if s and (s[0] > 5 or s[1]):
            break
        if backend == "webgpu" and "vendor/ort.wasm.min.mjs" in got and any("detector" in k for k in got):
            time.sleep(3)  # the WASM fallback has loaded
            break
        time.sleep(0.5)
    stats = pg.evaluate("() => ({backend: window.sdflStats.backend, frames: window.sdflStats.framesDrawn})")
    browser.close()
    vendor = {k: v for k, v in got.items() if k.startswith("vendor/")}
    return {"backend_asked": backend, "backend_used": stats["backend"], "frames_drawn": stats["frames"],
            "files": got, "vendor_bytes": sum(vendor.values()), "total_bytes": sum(got.values())}


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    import browser_webcam_fps as fps
    from app.browser_webcam import BrowserWebcam
    from core.checkpoint import DEFAULT_WEIGHTS, FAST_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="*", default=["wasm", "auto", "webgpu"])
    ap.add_argument("--model", default="sdfl_fast")
    args = ap.parse_args(argv)
    page = BrowserWebcam.from_weights(DEFAULT_WEIGHTS, FAST_WEIGHTS)
    url, server = fps.serve(page)
    clip = fps.make_clip(Path("/tmp") / f"sdfl_assets_{id(page)}.y4m", moving=False)
    with sync_playwright() as pw:
        for backend in args.backends:
            print(json.dumps(fetched(pw, f"{url}?model={args.model}&autostart=1", backend, clip)), flush=True)
    server.should_exit = True
    clip.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
