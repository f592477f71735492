"""The in-browser webcam's video tracking (app/static/browser_webcam/tracking.js) against
core.tracking.VideoTracker on a scripted 100-frame scene: the same scripted model and detector (one
Python function each; the page calls them through Playwright's expose_function) drive both
trackers, so every decision of the port is checked on its own: track ids, remembered (lost) ids,
detector calls, model passes, crop boxes and smoothed landmarks, frame by frame.

The scene exercises what the tiny-model parity test (tests/test_browser_webcam.py) cannot reach
on a still face: a face that accelerates, stops and turns (motion prediction, crop off -> re-crop,
crop border -> lost), non-finite landmarks and an uncertainty spike (lost -> same-frame detection
or restart from this frame's matched detection), a face hidden behind an occluder and a face
leaving the frame (remembered, revived, expired), scheduled detections that miss a face (misses),
more faces than max_faces, a face hidden while the other's landmarks are pulled onto its place
(dropped), a jolt past its crop (lost, continued by a detection under MATCH_IOU)
and a zoom jump of a tracked face, a new face overlapping a
tracked one (dropped), irregular, repeated and missing timestamps and a gap (smoothing restarted).
Both trackers run with the uncertainty-ratio test on (MAX_RATIO, the flagship's threshold), which
the scene crosses on frames no other test would lose. Short scenes: tests/test_browser_webcam_tracking_scenes.py."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from browser_env import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM, chromium_found

from core.detectors import Detection
from core.tracking import TrackingConfig, VideoTracker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # browser_webcam_fps.serve

if not chromium_found():
    pytest.skip(NO_CHROMIUM, allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install playwright)")

W, H, FPS, N_FRAMES = 640, 480, 30.0, 100
MAX_FACES = 2
USER_BOX = [120.0, 160.0, 270.0, 315.0]  # frame 0: the caller's box around face "a"
PTS_TOL = 1e-6  # px: the two trackers agree up to float rounding (Math vs numpy)
PROBE_S = (0.5, 1.0)  # s ahead: each track's predicted box, each remembered track's path, compared too
SCORE = {"a": 0.9, "b": 0.8, "c": 0.95, "d": 0.7, "e": 0.8, "f": 0.9}  # detector scores
MISSED = {"b": {30, 31, 40, 41}, "f": {33}}  # frames where the detector misses a face
NAN = {("a", 25)}  # the model gives non-finite landmarks
SPIKE = {("a", 20): 0.045, ("a", 62): 0.06, ("b", 50): 0.2}  # added uncertainty (crop units)
PULL = {("a", 40): np.array([12.0, -12.0])}  # the model's landmarks pulled towards b's remembered place
MODEL_BIAS = 0.2  # the scripted model's landmarks lean this share of the face's offset towards the crop centre
MAX_RATIO = 0.06  # the trackers' uncertainty-ratio test (FaceAligner passes the model's threshold)


def _template() -> np.ndarray:
    from synth_faces import face_template

    t = face_template()
    return (t - t.min(0)) / (t.max(0) - t.min(0))  # landmark box = unit square


TEMPLATE = _template()


def faces_at(k: int) -> dict[str, tuple[float, float, float]]:
    """{name: (cx, cy, side)} of the faces visible at frame k."""
    out = {}
    x, y = 200.0, 240.0  # a: still, accelerates right, turns back, hidden, comes back, leaves downwards
    for j in range(1, k + 1):
        if 10 <= j < 35:
            x += 4 + 0.6 * (j - 10)
        elif 35 <= j < 70:
            x -= 6
        elif j >= 70:
            y += 3 + 1.5 * (j - 70)
    if not 45 <= k < 53:
        out["a"] = (x, y, 150.0)
    if k >= 20 and not 38 <= k < 42:  # b: appears, hides (38-41), zooms in, jolts sideways, jumps in scale, slides left
        s = 110.0 * (1.03 ** min(max(k - 60, 0), 15)) * (1.25 if k >= 75 else 1.0)
        out["b"] = (520.0 - max(0, k - 80) * 9.0 - (100.0 if k >= 70 else 0.0), 150.0, s)
    if 36 <= k < 44:  # c: a third face (more than MAX_FACES)
        out["c"] = (330.0, 380.0, 90.0)
    if 88 <= k < 95:  # d: overlaps b
        out["d"] = (510.0 - max(0, k - 80) * 9.0, 190.0, 130.0)
    return out


_PAGE_SCENE = [faces_at]  # the scene the page's exposed model and detector script


def true_points(face) -> np.ndarray:
    cx, cy, s = face
    return np.array([cx, cy]) + (TEMPLATE - 0.5) * s


def scripted_model(k: int, crop, faces_at=faces_at) -> tuple[np.ndarray, float]:
    """(landmarks (68, 2), sigma) for the crop [cx, cy, side, angle] on frame k: the visible face whose centre
    is nearest the crop centre (inside the crop, of a plausible size), biased towards the crop centre
    and jittered; without one, a collapsed shape of high uncertainty."""
    cx, cy, cs = crop[:3]
    best, dist = None, None
    for name, f in faces_at(k).items():
        d = math.hypot(f[0] - cx, f[1] - cy)
        if d < 0.5 * cs and 0.35 < f[2] / cs < 1.6 and (dist is None or d < dist):
            best, dist = name, d
    if (best, k) in NAN:
        return np.full((68, 2), np.nan), 0.02
    if best is None:
        return np.array([cx, cy]) + (TEMPLATE - 0.5) * 0.02 * cs, 0.3
    f = faces_at(k)[best]
    i = np.arange(68)[:, None]
    jitter = 0.003 * f[2] * np.sin(1.7 * k + 0.37 * i + np.array([0.0, 1.1]) + (best == "b"))
    pts = true_points(f) - MODEL_BIAS * np.array([f[0] - cx, f[1] - cy]) + jitter + PULL.get((best, k), 0.0)
    return pts, 0.015 + 0.5 * (dist / cs) ** 2 + SPIKE.get((best, k), 0.0)


def scripted_detections(k: int, faces_at=faces_at) -> list[tuple[list[float], float]]:
    out = []
    for name, f in sorted(faces_at(k).items()):
        if k in MISSED.get(name, ()):
            continue
        p = true_points(f)
        centre = (p.min(0) + p.max(0)) / 2 + np.array([0.03, -0.02]) * f[2]
        half = 1.04 * (p.max(0) - p.min(0)) / 2
        out.append(([float(v) for v in np.r_[centre - half, centre + half]], SCORE[name]))
    return out


def timestamp(k: int) -> float | None:
    """Irregular clock: +0.85 s at frame 30 (large motion steps), a 1.5 s gap at 50, frame 66
    repeats 65's time, 76-78 come without one."""
    if 76 <= k <= 78:
        return None
    return (min(k, 65) if k == 66 else k) / FPS + (0.85 if k >= 30 else 0.0) + (1.5 if k >= 50 else 0.0)


class _Frame:
    def __init__(self, k: int):
        self.k, self.shape = k, (H, W, 3)


def _python_run(max_ratio: float | None = MAX_RATIO, faces_at=faces_at, n: int = N_FRAMES, times=timestamp,
                user_box=USER_BOX, config: TrackingConfig | None = None, max_faces: int = MAX_FACES) -> list[dict]:
    def run(img, crops):
        out = [scripted_model(img.k, c, faces_at) for c in crops]
        return {"pts": np.stack([o[0] for o in out]), "cov": None, "adj": None, "sigma": np.array([o[1] for o in out])}

    def detect(img):
        return [Detection(np.array(b), s) for b, s in scripted_detections(img.k, faces_at)]

    vt = VideoTracker(run, detect, config, max_faces=max_faces, max_ratio=max_ratio)
    frames = []
    for k in range(n):
        user = [Detection(np.array(user_box), 1.0)] if k == 0 and user_box else None
        faces = vt.step(_Frame(k), times(k), user)
        t = vt._t
        state = [[tr.id, tr.score, tr.misses, tr.sigma_level, tr.zoom_rate, *tr.velocity,
                  *tr.predicted_box(t + PROBE_S[0]), *tr.predicted_crop(t + PROBE_S[0])] for tr in vt.tracks]
        state += [[r.id, *r.remembered_box(t + PROBE_S[1])] for r in vt.lost]
        frames.append({"ids": [tr.id for tr, _, _ in faces], "lost": [r.id for r in vt.lost], "state": state,
                       "boxes": [r["crop_box"].tolist() for _, r, _ in faces],
                       "pts": [np.asarray(s).ravel().tolist() for _, _, s in faces],
                       "detector_calls": vt.detector_calls, "model_passes": vt.model_passes})
    return frames


PAGE_RUN = """async ([n, w, h, userBox, times, maxFaces, probe, maxRatio]) => {
  const { TrackingConfig, VideoTracker } = await import(new URL("static/tracking.js", location.href).href);
  const run = async (img, crops) => (await window.sdflRun(img.k, crops)).map((r) => ({
    pts: Float64Array.from(r.pts, (v) => (v === null ? NaN : v)), cov: null, adj: null, sigma: r.sigma }));
  const detect = async (img) => (await window.sdflDetect(img.k)).map(([box, score]) => ({ box, score }));
  const vt = new VideoTracker(run, detect, new TrackingConfig(), maxFaces, maxRatio);
  const frames = [];
  for (let k = 0; k < n; k++) {
    const user = k === 0 && userBox ? [{ box: userBox, score: 1.0 }] : null;
    const faces = await vt.step({ k, width: w, height: h }, times[k], user);
    const state = vt.tracks.map((tr) => [tr.id, tr.score, tr.misses, tr.sigmaLevel, tr.zoomRate, ...tr.velocity,
                                        ...tr.predictedBox(vt.t + probe[0]), ...tr.predictedCrop(vt.t + probe[0])])
      .concat(vt.lost.map((r) => [r.id, ...r.rememberedBox(vt.t + probe[1])]));
    frames.push({ ids: faces.map(([tr]) => tr.id), lost: vt.lost.map((r) => r.id), state,
                  boxes: faces.map(([, r]) => r.cropBox), pts: faces.map(([, , s]) => Array.from(s)),
                  detector_calls: vt.detectorCalls, model_passes: vt.modelPasses });
  }
  return frames;
}"""


def _page_model(k, crops):
    out = [scripted_model(int(k), c, _PAGE_SCENE[0]) for c in crops]
    return [{"pts": [None if not math.isfinite(v) else float(v) for v in p.ravel()], "sigma": float(s)} for p, s in out]


@pytest.fixture(scope="module")
def page():
    """A bare page of the in-browser webcam's server (no model) with the scripted model and
    detector exposed to it."""
    from browser_webcam_fps import serve
    from playwright.sync_api import sync_playwright

    from app import browser_webcam as bw

    url, srv = serve(bw.BrowserWebcam(models=[]))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = b.new_page()
            pg.set_default_timeout(60_000)
            pg.expose_function("sdflRun", _page_model)
            pg.expose_function("sdflDetect", lambda k: scripted_detections(int(k), _PAGE_SCENE[0]))
            pg.goto(url, wait_until="domcontentloaded")
            yield pg
        finally:
            b.close()
            srv.should_exit = True


def _close(a, b) -> bool:
    """Equal up to float rounding (relative PTS_TOL above 1), or both None."""
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= PTS_TOL * max(1.0, abs(b))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def test_page_constants_are_pythons(page):
    """Every module constant of core.tracking, TrackingConfig's defaults, FaceSmoother's constants
    and the box geometry's (NMS, calibration) have the same values in the page's modules."""
    import dataclasses

    import core.detectors as cd
    import core.smoothing as cs
    from core.image_faces import INTEROCULAR_MIN_SHARE
    import core.track as ctrack
    import core.tracking as ct

    got = page.evaluate("""async () => {
      const imp = (f) => import(new URL(`static/${f}`, location.href).href);
      const [tracking, smoothing, boxes] = await Promise.all(["tracking.js", "smoothing.js", "boxes.js"].map(imp));
      return { tracking: { ...tracking }, config: { ...new tracking.TrackingConfig() }, smoothing: { ...smoothing },
               boxes: { ...boxes } };
    }""")
    consts = {k: v for m in (ctrack, ct) for k, v in vars(m).items()
              if k.isupper() and isinstance(v, (int, float)) and k not in vars(cs)}
    assert consts and {k: got["tracking"].get(k) for k in consts} == consts
    defaults = {_camel(f.name): f.default for f in dataclasses.fields(ct.TrackingConfig)}
    assert got["config"] == defaults
    face = {k: v for k, v in vars(cs).items() if k.startswith("FACE_") or k == "DEFAULT_FPS"}
    assert len(face) == 4 and {k: got["smoothing"].get(k) for k in face} == face
    assert got["boxes"]["NMS_IOU"] == cd.NMS_IOU
    assert got["boxes"]["INTEROCULAR_MIN_SHARE"] == INTEROCULAR_MIN_SHARE
    assert got["boxes"]["MP_SHORT_CALIBRATION"] == dataclasses.asdict(cd.MP_SHORT_CALIBRATION)


def _compare(got: list[dict], want: list[dict]) -> float:
    """Frame by frame: the same ids, remembered ids, counters, crop boxes and track states; returns the
    largest landmark difference (px)."""
    worst = 0.0
    for k, (g, e) in enumerate(zip(got, want)):
        for key in ("ids", "lost", "detector_calls", "model_passes"):
            assert g[key] == e[key], (k, key, g[key], e[key])
        assert np.allclose(g["boxes"], e["boxes"], rtol=0, atol=PTS_TOL), k
        assert len(g["state"]) == len(e["state"]), k
        for gs, es in zip(g["state"], e["state"]):  # ids, scores, misses, sigma level, motion, predicted paths
            assert len(gs) == len(es) and all(_close(a, b) for a, b in zip(gs, es)), (k, gs, es)
        if e["pts"]:
            worst = max(worst, float(np.abs(np.asarray(g["pts"]) - np.asarray(e["pts"])).max()))
    assert len(got) == len(want)
    return worst


def test_page_tracker_makes_the_python_decisions(page, monkeypatch):
    want = _python_run()
    assert want != _python_run(max_ratio=None)  # the ratio test decides something in this scene
    with monkeypatch.context() as m:
        m.setattr("core.tracking.PULL_S", -1.0)
        assert want != _python_run()  # ... and so does the pull test (a's landmarks pulled onto b's place)
    with monkeypatch.context() as m:
        drop = VideoTracker._drop

        def path_only(self, tr):
            drop(self, tr)
            tr.left_box = None
        m.setattr(VideoTracker, "_drop", path_only)
        assert want != _python_run()  # ... and where a face left over the frame's edge (a leaves downwards)
    got = page.evaluate(PAGE_RUN, [N_FRAMES, W, H, USER_BOX, [timestamp(k) for k in range(N_FRAMES)], MAX_FACES,
                                   list(PROBE_S), MAX_RATIO])
    worst = _compare(got, want)
    print(f"tracker port: {N_FRAMES} frames, {want[-1]['detector_calls']} detector calls, "
          f"{want[-1]['model_passes']} model passes, largest landmark difference {worst:.2e} px")
    assert worst < PTS_TOL
    # the scene reaches what it is for: lost faces remembered and revived, re-crops, same-frame detections
    seen, revived, prev = set(), set(), []
    for f in want:
        revived |= {i for i in f["ids"] if i in seen and i not in prev}
        prev = f["ids"]
        seen |= set(prev)
    assert revived and any(f["lost"] for f in want) and len(seen) > 3
    passes = np.diff([f["model_passes"] for f in want])
    assert (passes >= 2).sum() >= 10  # two-pass restarts and re-crops
    assert want[-1]["detector_calls"] > N_FRAMES // 10 + 10  # far more than the schedule alone
