"""Video protocol: sequences built from real labelled faces moving on known paths, played at
several frame rates, and the per-sequence metrics (benchmarks/video.py runs it).

A face is a faces68 crop (512 px, face ~40 %) cut out with a feathered ellipse and pasted on a
blurred background frame (640 x 480) by a similarity transform pose(t) = (centre, scale, angle):
its landmarks follow exactly. Every frame gets Gaussian sensor noise (NOISE_STD grey levels), so
even a still face differs from frame to frame. Motions over DURATION_S seconds (`MOTIONS`):
still, translate (sine, +-150 px), zoom (x0.64-1.57), rotate (+-30 deg), exit (out of the frame
to the right and back), occluder (a textured bar sweeping across the face), crossing (two faces
passing each other, the second in front and 0.55 face heights lower). A sequence at f fps
samples the same trajectory at t = k / f, so 3 fps means 10x larger jumps than 30 fps.

Metrics (`score_sequence`): a face counts as visible when >= VISIBLE_INSIDE of its landmarks are
inside the frame; predictions are matched to visible faces by NME (greedy, NME < MATCH_NME);
per visible face-frame the NME (missing = failure), failures (NME > 0.10 or missing), ghosts
(predicted faces matched to nothing), identity switches (a face's matched track id changing),
recovery (longest run of consecutive failed *clean* frames: fully inside the frame and fewer than
CLEAN_HIDDEN of its landmarks hidden, i.e. how long a method stays wrong once the face is back),
and jitter (RMS frame-to-frame landmark motion in px, for the still sequence)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .metrics import nme

FRAME_W, FRAME_H = 640, 480
DURATION_S = 4.0
FRAME_RATES = (3, 10, 30)
NOISE_STD = 3.0  # grey levels of per-frame sensor noise
BASE_SCALE = 0.8  # sprite scale: the 512 px crop's ~205 px landmark box -> ~165 px
MOTIONS = ("still", "translate", "zoom", "rotate", "exit", "occluder", "crossing")
VISIBLE_INSIDE = 0.7  # share of landmarks inside the frame for a face to count
MATCH_NME = 0.5  # a prediction farther than this from every visible face is a ghost
FAIL_NME = 0.10
CLEAN_HIDDEN = 0.05  # a face-frame is clean (recovery) when under this share of its landmarks is hidden


@dataclass
class Sprite:
    image: np.ndarray  # RGB crop
    landmarks: np.ndarray  # (68, 2) crop pixels
    alpha: np.ndarray  # float32 (H, W) in [0, 1]: feathered head ellipse


def make_sprite(image: np.ndarray, landmarks: np.ndarray) -> Sprite:
    lm = np.asarray(landmarks, np.float64)
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    side = max(x1 - x0, y1 - y0)
    c = ((x0 + x1) / 2, (y0 + y1) / 2 - 0.12 * side)  # include the forehead
    a = np.zeros(image.shape[:2], np.float32)
    cv2.ellipse(a, (int(c[0]), int(c[1])), (int(0.68 * side), int(0.82 * side)), 0, 0, 360, 1.0, -1)
    a = cv2.GaussianBlur(a, (0, 0), 0.04 * side)
    return Sprite(image, lm, a)


def background(seed: int = 0) -> np.ndarray:
    """A smooth, face-free frame: coarse random colour blobs, blurred."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(40, 200, (6, 8, 3)).astype(np.float32)
    return cv2.resize(small, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC).clip(0, 255)


def _smooth_step(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * x)


def poses(motion: str, t: float) -> list[tuple[float, float, float, float]]:
    """(cx, cy, scale, angle_deg) of each face at time t (landmark-box centre in frame pixels)."""
    cx, cy, s, a = FRAME_W / 2, FRAME_H / 2, BASE_SCALE, 0.0
    w = 2 * math.pi * t / DURATION_S
    if motion in ("still", "occluder"):
        return [(cx, cy, s, a)]
    if motion == "translate":
        return [(cx + 150 * math.sin(w), cy + 40 * math.sin(2 * w), s, a)]
    if motion == "zoom":
        return [(cx, cy, s * math.exp(0.45 * math.sin(w)), a)]
    if motion == "rotate":
        return [(cx, cy, s, 30 * math.sin(w))]
    if motion == "exit":  # still 0-1 s, out to the right by 1.75 s, back from 2.5 s, still from 3.25 s
        out = _smooth_step((t - 1.0) / 0.75) - _smooth_step((t - 2.5) / 0.75)
        return [(cx + 520 * out, cy, s, a)]
    if motion == "crossing":
        u = t / DURATION_S
        return [(150 + 340 * u, 195, 0.7, a), (490 - 340 * u, 285, 0.7, a)]
    raise ValueError(f"unknown motion {motion!r}; one of {MOTIONS}")


def _similarity(sprite: Sprite, pose) -> np.ndarray:
    cx, cy, s, a = pose
    lm = sprite.landmarks
    c0 = (lm.min(0) + lm.max(0)) / 2
    r = math.radians(a)
    rot = s * np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return np.hstack([rot, (np.array([cx, cy]) - rot @ c0)[:, None]])


def occluder_box(t: float, pose) -> tuple[int, int, int, int]:
    """A bar 0.6 x 1.5 face sides sweeping left to right over the face between 1 and 3 s."""
    cx, cy, s, _ = pose
    side = 205 * s
    u = (t - 1.0) / 2.0
    x = cx - 1.2 * side + 2.4 * side * u
    return int(x - 0.3 * side), int(cy - 0.75 * side), int(x + 0.3 * side), int(cy + 0.75 * side)


def _covered(pts: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Landmarks under an opaque (alpha > 0.5) layer."""
    xi = np.clip(np.round(pts[:, 0]).astype(int), 0, FRAME_W - 1)
    yi = np.clip(np.round(pts[:, 1]).astype(int), 0, FRAME_H - 1)
    return alpha[yi, xi] > 0.5


def render(sprites: list[Sprite], motion: str, t: float, bg: np.ndarray, noise_seed: int):
    """(RGB uint8 frame, landmarks (68, 2) per face, share of each face's landmarks hidden by
    something in front of it) at time t."""
    frame = bg.copy()
    truth, hidden = [], []
    for sp, pose in zip(sprites, poses(motion, t)):
        m = _similarity(sp, pose)
        warped = cv2.warpAffine(sp.image.astype(np.float32), m, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(sp.alpha, m, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
        frame = frame * (1 - alpha[..., None]) + warped * alpha[..., None]
        hidden = [h | _covered(p, alpha) for h, p in zip(hidden, truth)]  # later faces are in front
        truth.append(sp.landmarks @ m[:, :2].T + m[:, 2])
        hidden.append(np.zeros(68, bool))
    if motion == "occluder" and 1.0 <= t <= 3.0:
        x0, y0, x1, y1 = occluder_box(t, poses(motion, t)[0])
        x0c, x1c, y0c, y1c = max(x0, 0), min(x1, FRAME_W), max(y0, 0), min(y1, FRAME_H)
        for h, p in zip(hidden, truth):
            h |= (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
        if x1c > x0c and y1c > y0c:
            rng = np.random.default_rng(1234)
            tex = rng.uniform(0, 1, (8, 4, 1)).astype(np.float32)
            tex = cv2.resize(tex, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)[..., None]
            patch = np.array([150, 110, 90], np.float32) * (0.7 + 0.5 * tex)
            frame[y0c:y1c, x0c:x1c] = patch[y0c - y0:y1c - y0, x0c - x0:x1c - x0]
    rng = np.random.default_rng(noise_seed)
    frame = frame + rng.normal(0, NOISE_STD, frame.shape)
    return frame.clip(0, 255).round().astype(np.uint8), truth, [float(h.mean()) for h in hidden]


def sequence(sprites: list[Sprite], motion: str, fps: float, bg: np.ndarray, seed: int = 0):
    """Yields (t, frame, truths, hidden shares) for t = k / fps in [0, DURATION_S)."""
    n = int(round(DURATION_S * fps))
    for k in range(n):
        t = k / fps
        frame, truth, hidden = render(sprites, motion, t, bg, seed * 100003 + int(round(t * 1000)))
        yield t, frame, truth, hidden


def visible(pts: np.ndarray, shape=(FRAME_H, FRAME_W)) -> bool:
    h, w = shape[:2]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    return inside.mean() >= VISIBLE_INSIDE


def match(preds: list[np.ndarray], truths: list[np.ndarray]) -> tuple[dict[int, tuple[int, float]], int]:
    """Greedy NME matching: {truth index: (prediction index, NME)}, number of unmatched predictions."""
    pairs = sorted((float(nme(p[None], g[None])[0]), i, j) for j, p in enumerate(preds) for i, g in enumerate(truths))
    used_i, used_j, out = set(), set(), {}
    for e, i, j in pairs:
        if e < MATCH_NME and i not in used_i and j not in used_j:
            out[i] = (j, e)
            used_i.add(i)
            used_j.add(j)
    return out, len(preds) - len(used_j)


def jitter(track: list[np.ndarray]) -> float:
    """RMS frame-to-frame landmark motion (px) over consecutive frames that both have a face."""
    d = [np.sum((b - a) ** 2, 1) for a, b in zip(track, track[1:]) if a is not None and b is not None]
    return float(np.sqrt(np.mean(np.concatenate(d)))) if d else float("nan")


def score_sequence(frames: list[dict]) -> dict:
    """frames: [{"truth": [(68,2)...], "hidden": [share...] (optional), "preds": [(68,2)...],
    "ids": [id or None...]}, ...]. "frame_nme": NME of every visible face-frame in order (inf where
    no prediction matched), so methods run on the same frames can be compared face-frame by face-frame."""
    nmes, fails, ghosts, switches, runs, frame_nme = [], 0, 0, 0, [0], []
    n_faces = max(len(f["truth"]) for f in frames)
    last_id: dict[int, int] = {}
    run = [0] * n_faces
    per_face = [[] for _ in range(n_faces)]  # landmarks of each face per frame (jitter)
    total = 0
    for f in frames:
        shape = f.get("shape") or (FRAME_H, FRAME_W)
        vis = [i for i, g in enumerate(f["truth"]) if visible(g, shape)]
        m, extra = match(f["preds"], [f["truth"][i] for i in vis])
        ghosts += extra
        for i in range(n_faces):
            per_face[i].append(None)
        for k, i in enumerate(vis):
            total += 1
            j, e = m.get(k, (None, math.inf))
            frame_nme.append(float(e))
            if j is not None:
                nmes.append(e)
                per_face[i][-1] = f["preds"][j]
                tid = f["ids"][j] if f.get("ids") else None
                if tid is not None:
                    switches += int(i in last_id and last_id[i] != tid)
                    last_id[i] = tid
            fails += e > FAIL_NME
            g = f["truth"][i]
            inside = (g >= 0).all() and (g[:, 0] <= shape[1] - 1).all() and (g[:, 1] <= shape[0] - 1).all()
            if not inside or (f.get("hidden") or [0.0] * n_faces)[i] >= CLEAN_HIDDEN:
                continue
            run[i] = run[i] + 1 if e > FAIL_NME else 0
            runs.append(run[i])
    has_ids = any(f.get("ids") and any(x is not None for x in f["ids"]) for f in frames)
    return {"frames": len(frames), "face_frames": total, "nme": nmes, "frame_nme": frame_nme, "mean_nme": float(np.mean(nmes)) if nmes else None,
            "failures": fails, "missed": total - len(nmes), "ghosts": ghosts,
            "id_switches": switches if has_ids else None, "recovery_frames": max(runs),
            "jitter_px": jitter(per_face[0])}


__all__ = ["Sprite", "make_sprite", "background", "poses", "render", "sequence", "score_sequence", "match",
           "jitter", "visible", "MOTIONS", "FRAME_RATES"]
