"""Frames per second drawn by the in-browser webcam page (app/browser_webcam.py) in headless
Chromium with a fake camera, for each shipped model (WASM backend, measured in the page).

    nice -n 10 python benchmarks/browser_webcam_fps.py                 # 20 s per model
    python benchmarks/browser_webcam_fps.py --seconds 20 --threads 1 --models sdfl_fast sdfl_flagship

The server is a bare FastAPI app with only the page's routes (the Gradio app mounts the same
routes); it is idle while the page runs. The camera is a y4m clip of the astronaut face swaying
+-40 px (make_clip); the figures include the share of samples with a face drawn. Besides the
frames per second drawn (wall clock), the script reports the browser's CPU time per drawn frame
(all Chromium processes, from /proc). On a busy machine, that CPU time tells what an idle core
would reach (fps_per_free_core, capped at the camera's 30 fps). Needs Chromium (apt-get install
chromium) and Playwright (pip); ONNX Runtime Web is in the repository."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
CLIP_FPS = 30
CLIP_SECONDS = 4  # Chromium loops the file
FRAME = (640, 480)
ASTRONAUT = ROOT / "app" / "examples" / "astronaut.jpg"
FACE_REGION = (100, 0, 400, 300)  # x0, y0, x1, y1 of the astronaut photo shown as the camera frame
MOTION_PX = 40.0  # horizontal sway amplitude of the face in the clip (px)


def clip_offset(k: int) -> float:
    """Horizontal shift (px) of frame k: one sway period per clip."""
    return MOTION_PX * float(np.sin(2 * np.pi * k / (CLIP_FPS * CLIP_SECONDS)))


def base_frame() -> np.ndarray:
    img = cv2.imread(str(ASTRONAUT))
    x0, y0, x1, y1 = FACE_REGION
    return cv2.resize(img[y0:y1, x0:x1], FRAME, interpolation=cv2.INTER_AREA)  # BGR


def make_clip(path: Path, moving: bool = True) -> Path:
    """A 640x480 30 fps y4m (4:2:0) clip for --use-file-for-fake-video-capture."""
    base = base_frame()
    w, h = FRAME
    n = CLIP_FPS * CLIP_SECONDS if moving else 1
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{CLIP_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(n):
            m = np.float32([[1, 0, clip_offset(k) if moving else 0.0], [0, 1, 0]])
            frame = cv2.warpAffine(base, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(page) -> tuple[str, object]:
    """The page's routes on a bare FastAPI app in a background thread -> (url, server)."""
    import uvicorn
    from fastapi import FastAPI

    from app import browser_webcam as bw

    app = FastAPI()
    bw.mount(app, page)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}{bw.ROUTE}/", server


def _descendants(pid: int) -> list[int]:
    """pids of all processes below `pid` (from /proc; Linux)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def browser_cpu_seconds() -> float:
    """CPU time (user + system) used so far by the browser processes this script started."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _descendants(os.getpid()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if "chrom" not in stat.split(")", 1)[0]:
            continue
        f = stat.rsplit(")", 1)[1].split()
        total += (int(f[11]) + int(f[12])) / tick
    return total


def measure(browser_page, url: str, seconds: float, warmup: float) -> dict:
    browser_page.goto(url, wait_until="domcontentloaded")
    browser_page.wait_for_function("() => window.sdflStats && (window.sdflStats.framesDrawn > 0 || window.sdflStats.error)",
                                   timeout=180_000)
    err = browser_page.evaluate("() => window.sdflStats.error")
    if err:
        return {"error": err}
    time.sleep(warmup)
    js = """() => { const s = window.sdflStats; return {n: s.framesDrawn, t: performance.now(), ms: s.modelMs,
              fm: s.frameMs, parts: [s.grabMs, s.predictMs, s.renderMs], faces: s.faces, model: s.model,
              backend: s.backend, threads: s.threads, adapter: s.adapter}; }"""
    a = browser_page.evaluate(js)
    cpu0, load0 = browser_cpu_seconds(), os.getloadavg()[0]
    samples, frame_ms, parts, on_face = [], [], [], 0
    t_end = time.time() + seconds
    while time.time() < t_end:
        time.sleep(0.5)
        s = browser_page.evaluate(js)
        samples.append(s["ms"])
        frame_ms.append(s["fm"])
        parts.append(s["parts"])
        on_face += s["faces"] > 0
    b = browser_page.evaluate(js)
    cpu = browser_cpu_seconds() - cpu0
    frames = max(b["n"] - a["n"], 1)
    counter = browser_page.locator("#counter").inner_text()
    notes = browser_page.locator("#notes").inner_text()
    return {"model": b["model"], "backend": b["backend"], "threads": b["threads"], "adapter": b["adapter"],
            "fps_drawn": round((b["n"] - a["n"]) * 1000.0 / (b["t"] - a["t"]), 1),
            # CPU time the browser spent per drawn frame: what the frame costs whatever else runs
            "browser_cpu_ms_per_frame": round(1000.0 * cpu / frames, 1),
            "fps_per_free_core": round(min(CLIP_FPS, frames / max(cpu, 1e-9)), 1),
            "load_avg_1min": [round(load0, 1), round(os.getloadavg()[0], 1)],
            "model_ms_median": round(float(np.median(samples)), 1),
            "frame_ms_median": round(float(np.median(frame_ms)), 1),
            "grab_predict_draw_ms": [round(float(v), 1) for v in np.median(np.array(parts, float), 0)], "seconds": seconds,
            "samples_with_face": f"{on_face}/{len(samples)}", "counter": counter, "notes": notes}


def main(argv=None) -> int:
    from core.checkpoint import DEFAULT_WEIGHTS, FAST_WEIGHTS
    from app.browser_webcam import BrowserWebcam
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1, help="WASM threads (the page is cross-origin isolated here)")
    ap.add_argument("--backend", default="wasm", choices=["wasm", "auto", "webgpu"])
    ap.add_argument("--models", nargs="*", default=None, help="model ids (default: all shipped)")
    ap.add_argument("--chromium-arg", action="append", default=[],
                    help="extra Chromium flag, e.g. --chromium-arg=--enable-unsafe-webgpu "
                         "--chromium-arg=--use-webgpu-adapter=swiftshader (WebGPU on the CPU)")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    args = ap.parse_args(argv)

    page = BrowserWebcam.from_weights(DEFAULT_WEIGHTS, FAST_WEIGHTS)
    if not page.vendor_ok():
        print("ONNX Runtime Web missing from app/static/vendor/onnxruntime-web (bash app/static/vendor/refresh.sh)",
              file=sys.stderr)
        return 2
    ids = args.models or [m.id for m in page.models]
    url, server = serve(page)
    clip = make_clip(Path("/tmp") / f"sdfl_clip_{os.getpid()}.y4m")
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[a for a in CHROMIUM_ARGS if not (args.chromium_arg and a == "--disable-gpu")]
                                    + args.chromium_arg + [f"--use-file-for-fake-video-capture={clip}"])
        ctx = browser.new_context(permissions=["camera"], viewport={"width": 900, "height": 800})
        for mid in ids:
            pg = ctx.new_page()
            r = measure(pg, f"{url}?model={mid}&backend={args.backend}&threads={args.threads}&autostart=1",
                        args.seconds, args.warmup)
            r.setdefault("model", mid)
            print(json.dumps(r), flush=True)
            results.append(r)
            pg.close()
        browser.close()
    server.should_exit = True
    clip.unlink(missing_ok=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"cpu": os.cpu_count(), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
