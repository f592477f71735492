"""The in-browser webcam (app/static/browser_webcam: BlazeFace, the landmark model and the tracker in the
page, ONNX Runtime Web on WASM, headless Chromium) on the video protocol's sequences (core.video), beside
Python's video mode (core.inference.FaceAligner(video=True), the same fp32 ONNX model, ONNX Runtime):
failures, missed face-frames, identity switches and the NME on the face-frames both found.

    nice -n 10 python benchmarks/browser_video.py                          # crossing, exit, occluder at 30 fps
    python benchmarks/browser_video.py --motions crossing --fps 10,30 --faces 5

Frames go to the page's `window.sdfl.predictFrame` with their timestamps (not through a camera), so
both pipelines see the same pixels; scoring as benchmarks/video.py (core.video.score_sequence). The page
tracks at most its MAX_FACES faces (4). Needs Chromium and Playwright, as tests/test_browser_*.py."""
from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_env import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from browser_webcam_fps import serve  # noqa: E402
from video import _f, aggregate, paired, pick_faces, score_run  # noqa: E402

from core import video as vp  # noqa: E402
from core.checkpoint import DEFAULT_WEIGHTS  # noqa: E402
from core.data import read_image  # noqa: E402

PREDICT_JS = """async ([b64, w, h, t]) => {
  const bin = atob(b64), px = new Uint8ClampedArray(bin.length);
  for (let i = 0; i < bin.length; i++) px[i] = bin.charCodeAt(i);
  return await window.sdfl.predictFrame(px, w, h, null, t); }"""


class _Face:
    def __init__(self, landmarks, track_id):
        self.landmarks, self.track_id = landmarks, track_id


class PageAligner:
    """The page's pipeline behind FaceAligner's video-mode interface (what benchmarks/video.py scores)."""
    video = True

    def __init__(self, page):
        self.page = page

    def reset(self) -> None:
        self.page.evaluate("() => window.sdfl.reset()")

    def predict(self, rgb: np.ndarray, timestamp: float) -> list[_Face]:
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        faces = self.page.evaluate(PREDICT_JS, [base64.b64encode(rgba.tobytes()).decode(), rgb.shape[1],
                                                rgb.shape[0], timestamp])
        return [_Face(np.asarray(f["landmarks"], np.float64).reshape(-1, 2), f["id"]) for f in faces]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--faces", type=int, default=10, help="face identities per motion (crossing: pairs)")
    ap.add_argument("--motions", default="crossing,exit,occluder")
    ap.add_argument("--fps", default="30")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON of the per-sequence-type figures")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from app import browser_webcam as bw
    from core.inference import FaceAligner

    weights = Path(args.weights)
    python = FaceAligner(weights, video=True, backend="onnx", precision="fp32", threads=1,
                         max_faces=bw.MAX_FACES)
    recs = pick_faces("test", args.faces, Path(args.data), args.seed)
    sprites = [vp.make_sprite(read_image(r.image), r.landmarks) for r in recs]
    bg = vp.background(args.seed)
    url, srv = serve(bw.BrowserWebcam.from_weights(weights, int8=False))
    per: dict[str, list] = defaultdict(list)
    t0 = time.time()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{url}?model={weights.stem}&backend=wasm", wait_until="domcontentloaded")
            page.wait_for_function("() => window.sdflStats && (window.sdflStats.ready || window.sdflStats.error)")
            if page.evaluate("() => window.sdflStats.error"):
                raise SystemExit(f"the page failed: {page.evaluate('() => window.sdflStats.error')}")
            methods = {"page": PageAligner(page), "python": python}
            for motion in [m for m in args.motions.split(",") if m]:
                for fps in [float(f) for f in args.fps.split(",") if f]:
                    for k in range(args.faces):
                        group = [sprites[2 * k], sprites[2 * k + 1]] if motion == "crossing" else [sprites[2 * k]]
                        frames = list(vp.sequence(group, motion, fps, bg, seed=k))
                        for name, m in methods.items():
                            per[f"{name}|{motion}|{fps:g}"].append(score_run(name, m, frames))
                    print(f"{motion} @ {fps:g} fps done ({time.time() - t0:.0f} s)", flush=True)
            browser.close()
    finally:
        srv.should_exit = True
    table = {k: aggregate(v) for k, v in per.items()}
    rows = ["| sequence | fps | pipeline | NME both found % | fail % | missed | ID sw. | ms/frame |",
            "|---|---|---|---|---|---|---|---|"]
    for key in sorted({k.split("|", 1)[1] for k in table}):
        both = paired(table[f"page|{key}"], table[f"python|{key}"])
        for name, nme in zip(("page", "python"), both[:2]):
            a = table[f"{name}|{key}"]
            rows.append(f"| {key.replace('|', ' | ')} | {name} | {_f(nme, True)} | {_f(a['failure_rate'], True, 1)} | "
                        f"{a['missed']} | {a['id_switches']} | {_f(a['ms_per_frame'], nd=1)} |")
    print("\n".join(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "python benchmarks/browser_video.py " + " ".join(
            argv if argv is not None else sys.argv[1:]), "table": {k: {f: v for f, v in a.items() if f != "frame_nme"}
                                                                    for k, a in table.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
