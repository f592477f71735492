"""The in-browser webcam's face detector (app/static/browser_webcam/detector.js) against
core.detectors.MediaPipeDetector("both") in headless Chromium: both BlazeFace models on every call, merged by
NMS on score (a distant face only the full-range model finds, a near one both find). Fixtures and helpers:
tests/test_browser_webcam.py (a tiny landmark model; the detectors are the shipped ones)."""
from __future__ import annotations

import base64

import cv2
import numpy as np

from test_browser_webcam import (  # noqa: F401  (the module-scoped fixtures, used by name)
    _new_page, _wait_ready, browser, clip, exported, needs_browser, page_spec, server)


@needs_browser
def test_page_detector_finds_a_distant_face_as_python_does(browser, server):  # noqa: F811
    """A face a third of the size, in the middle of a 640 x 480 frame: the short-range model finds
    nothing, the full-range one finds it (its landmark boxes are MediaPipe's own, calibrated the same way);
    on the frame with the face near both models find it and NMS keeps the same box as Python's
    (core.detectors.MediaPipeDetector "both", video mode's)."""
    from browser_webcam_fps import base_frame
    from core.detectors import MediaPipeDetector

    _, b = browser
    pg = _new_page(b)
    pg.goto(f"{server}?model=tiny_graph&backend=wasm", wait_until="domcontentloaded")
    logs = []
    pg.on("console", lambda m: logs.append(m.text))
    _wait_ready(pg)
    near = cv2.cvtColor(base_frame(), cv2.COLOR_BGR2RGB)
    far = np.full_like(near, 110)
    small = cv2.resize(near, (near.shape[1] // 3, near.shape[0] // 3), interpolation=cv2.INTER_AREA)
    far[160:160 + small.shape[0], 213:213 + small.shape[1]] = small
    mp = MediaPipeDetector(model="both")
    assert not mp.detect_raw(far, 0)  # the scene the full-range model is for
    assert mp.detect_raw(near, 0) and mp.detect_raw(near, 1)  # ... and one both find
    for frame in (far, near):
        rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
        got = pg.evaluate("""async ([b64, w, h]) => {
            const bin = atob(b64), px = new Uint8ClampedArray(bin.length);
            for (let i = 0; i < bin.length; i++) px[i] = bin.charCodeAt(i);
            return await window.sdfl.detect(px, w, h); }""",
                          [base64.b64encode(rgba.tobytes()).decode(), frame.shape[1], frame.shape[0]])
        want = mp.detect(frame)
        source = want[0].source.replace("mediapipe", "blazeface")
        assert len(got) == len(want) == 1 and got[0]["source"] == source, (got, want, logs)
        assert np.abs(np.asarray(got[0]["box"]) - want[0].box).max() < 1.0, (got, want[0].box)
        assert abs(got[0]["score"] - want[0].score) < 0.01
        ms = pg.evaluate("""async ([b64, w, h]) => {  // what a detector call costs on this frame (printed)
            const bin = atob(b64), px = new Uint8ClampedArray(bin.length);
            for (let i = 0; i < bin.length; i++) px[i] = bin.charCodeAt(i);
            const t = [];
            for (let k = 0; k < 10; k++) { await window.sdfl.detect(px, w, h); t.push(window.sdfl.state.detector.ms); }
            return t.sort((p, q) => p - q)[5]; }""",
                         [base64.b64encode(rgba.tobytes()).decode(), frame.shape[1], frame.shape[0]])
        print(f"{source}: box within {np.abs(np.asarray(got[0]['box']) - want[0].box).max():.3f} px of Python's, "
              f"detector call {ms:.1f} ms (WASM, median of 10)")
    pg.context.close()
