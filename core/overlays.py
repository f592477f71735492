"""Drawing of landmark results on RGB uint8 images: pure numpy/cv2, no Gradio, no model (used by the
app and by `python -m core.predict`).

Every function takes an (H, W, 3) uint8 RGB image and returns a new image (the input is never
modified). Colours are RGB tuples. Geometry (points, boxes, covariances) is in the image's own
pixel frame; line widths and radii scale with the face size so overlays read the same on a 200 px
webcam face and on a 3000 px portrait.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from .landmarks import curve_edges

Color = tuple[int, int, int]

POINT_COLOR: Color = (0, 255, 128)
CURVE_COLOR: Color = (255, 255, 255)
BOX_COLOR: Color = (255, 200, 0)
ELLIPSE_COLORS: tuple[Color, Color] = ((255, 64, 64), (255, 170, 0))  # 1-sigma, 2-sigma
REFERENCE_COLOR: Color = (80, 160, 255)
TEXT_COLOR: Color = (255, 255, 255)

_SHIFT = 4  # cv2 sub-pixel drawing: coordinates in 1/16 px
_SCALE = 1 << _SHIFT


@dataclass(frozen=True)
class OverlayOptions:
    """What to draw. `graph` = the model's sparse neighbourhood, coloured by the per-image weight."""

    points: bool = True
    graph: bool = False
    ellipses: bool = False
    numbers: bool = False
    box: bool = True
    curves: bool = False

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "OverlayOptions":
        names = {n.lower() for n in names}
        known = set(cls.__dataclass_fields__)
        unknown = names - known
        if unknown:
            raise ValueError(f"unknown overlay(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: (k in names) for k in known})


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image).copy()


def _fix(p) -> tuple[int, int]:
    return int(round(float(p[0]) * _SCALE)), int(round(float(p[1]) * _SCALE))


def face_scale(points: np.ndarray) -> float:
    """Characteristic size (px) of a face from its landmarks: the larger bounding-box side."""
    pts = np.asarray(points, np.float64)
    finite = pts[np.isfinite(pts).all(1)]
    if len(finite) < 2:
        return 100.0
    return float(max(np.ptp(finite[:, 0]), np.ptp(finite[:, 1]), 1.0))


def _thickness(scale: float, factor: float = 1.0) -> int:
    return max(1, int(round(factor * scale / 200.0)))


# ----------------------------------------------------------------------------- geometry helpers


def ellipse_axes(cov: np.ndarray, k: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes and orientation of the k-sigma ellipse of 2D Gaussians.

    cov: (..., 2, 2) covariances (pixels^2). Returns (axes (..., 2) = k * sqrt(eigenvalues), major
    first; angle (...,) of the major axis in degrees from +x towards +y in image coordinates
    (y down: clockwise on screen, the convention of cv2.ellipse), in (-90, 90]). Slightly negative
    eigenvalues from rounding clip to 0.
    """
    cov = np.asarray(cov, np.float64)
    if cov.shape[-2:] != (2, 2):
        raise ValueError(f"covariances must be (..., 2, 2), got {cov.shape}")
    sym = (cov + np.swapaxes(cov, -1, -2)) / 2.0
    evals, evecs = np.linalg.eigh(sym)  # ascending
    evals = np.clip(evals[..., ::-1], 0.0, None)
    major = evecs[..., :, 1]
    angle = np.degrees(np.arctan2(major[..., 1], major[..., 0]))
    angle = np.where(angle <= -90.0, angle + 180.0, angle)
    angle = np.where(angle > 90.0, angle - 180.0, angle)
    return k * np.sqrt(evals), angle


def landmark_sigmas(cov: np.ndarray | None) -> np.ndarray | None:
    """(N, 2) 1-sigma semi-axes (px) per landmark, major first; None without covariances."""
    if cov is None:
        return None
    return ellipse_axes(cov, 1.0)[0]


def graph_edges(neighbours: np.ndarray) -> np.ndarray:
    """(E, 2) undirected edges i < j of a (N, N) neighbourhood (either direction counts; no self
    loops)."""
    m = np.asarray(neighbours) > 0
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"neighbourhood must be square, got {m.shape}")
    sym = np.triu(m | m.T, k=1)
    return np.argwhere(sym)


def edge_weights(edges: np.ndarray, adjacency: np.ndarray | None) -> np.ndarray:
    """(E,) weight of each undirected edge: the larger of the two directed weights A[i,j], A[j,i]
    (ones without an adjacency)."""
    if adjacency is None or len(edges) == 0:
        return np.ones(len(edges))
    a = np.asarray(adjacency, np.float64)
    return np.maximum(a[edges[:, 0], edges[:, 1]], a[edges[:, 1], edges[:, 0]])


def _colormap(values: np.ndarray, cmap: int = cv2.COLORMAP_PLASMA) -> np.ndarray:
    """(E,) values in [0, 1] -> (E, 3) RGB uint8 colours."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cmap)[:, 0, ::-1]
    return lut[np.round(v * 255).astype(int)]


# ----------------------------------------------------------------------------- drawing


def draw_points(image: np.ndarray, points: np.ndarray, color: Color = POINT_COLOR,
                radius: float | None = None, numbers: bool = False, hollow: bool = False) -> np.ndarray:
    """Filled (or hollow) circles at (N, 2) points; optional 0-based index next to each."""
    out = _check_image(image)
    pts = np.asarray(points, np.float64)
    scale = face_scale(pts)
    r = radius if radius is not None else max(1.5, scale / 110.0)
    thick = -1 if not hollow else _thickness(scale)
    for i, p in enumerate(pts):
        if not np.isfinite(p).all():
            continue
        cv2.circle(out, _fix(p), int(round(r * _SCALE)), color, thick, cv2.LINE_AA, _SHIFT)
    if numbers:
        out = draw_numbers(out, pts)
    return out


def draw_numbers(image: np.ndarray, points: np.ndarray, color: Color = TEXT_COLOR) -> np.ndarray:
    out = _check_image(image)
    pts = np.asarray(points, np.float64)
    scale = face_scale(pts)
    font = max(0.25, scale / 700.0)
    off = max(2.0, scale / 90.0)
    for i, p in enumerate(pts):
        if not np.isfinite(p).all():
            continue
        org = (int(p[0] + off), int(p[1] - off))
        cv2.putText(out, str(i), org, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(out, str(i), org, cv2.FONT_HERSHEY_SIMPLEX, font, color, 1, cv2.LINE_AA)
    return out


def draw_curves(image: np.ndarray, points: np.ndarray, color: Color = CURVE_COLOR) -> np.ndarray:
    """Polylines along the 68-point scheme's curves (jaw, brows, nose, eyes, lips)."""
    out = _check_image(image)
    pts = np.asarray(points, np.float64)
    t = _thickness(face_scale(pts))
    for i, j in curve_edges():
        if i < len(pts) and j < len(pts) and np.isfinite(pts[[i, j]]).all():
            cv2.line(out, _fix(pts[i]), _fix(pts[j]), color, t, cv2.LINE_AA, _SHIFT)
    return out


def draw_graph(image: np.ndarray, points: np.ndarray, neighbours: np.ndarray,
               adjacency: np.ndarray | None = None, max_thickness: float | None = None) -> np.ndarray:
    """The sparse neighbourhood as line segments between landmarks. With a per-image adjacency,
    colour (plasma colormap, dark = weakest, yellow = strongest of this face) and thickness follow
    the edge weight; without, all edges are drawn alike."""
    out = _check_image(image)
    pts = np.asarray(points, np.float64)
    edges = graph_edges(neighbours)
    if len(edges) == 0:
        return out
    w = edge_weights(edges, adjacency)
    lo, hi = float(w.min()), float(w.max())
    rel = (w - lo) / (hi - lo) if hi - lo > 1e-9 else np.full_like(w, 0.6)
    colors = _colormap(0.15 + 0.85 * rel)
    scale = face_scale(pts)
    tmax = max_thickness if max_thickness is not None else max(2.0, scale / 90.0)
    order = np.argsort(rel)  # strongest on top
    for e in order:
        i, j = edges[e]
        if not np.isfinite(pts[[i, j]]).all():
            continue
        t = max(1, int(round(1 + rel[e] * (tmax - 1))))
        c = tuple(int(x) for x in colors[e])
        cv2.line(out, _fix(pts[i]), _fix(pts[j]), c, t, cv2.LINE_AA, _SHIFT)
    return out


def draw_ellipses(image: np.ndarray, points: np.ndarray, covariances: np.ndarray,
                  sigmas: Sequence[float] = (1.0, 2.0),
                  colors: Sequence[Color] = ELLIPSE_COLORS) -> np.ndarray:
    """Error ellipses of each landmark's Gaussian at k-sigma for k in `sigmas`: semi-axes
    k*sqrt(eigenvalues of the covariance), rotated to its eigenvectors."""
    out = _check_image(image)
    pts = np.asarray(points, np.float64)
    cov = np.asarray(covariances, np.float64)
    if cov.shape != (len(pts), 2, 2):
        raise ValueError(f"covariances must be ({len(pts)}, 2, 2), got {cov.shape}")
    t = _thickness(face_scale(pts))
    limit = 4.0 * max(out.shape[:2])  # a degenerate prediction must not draw a screen-filling blob
    for k, color in zip(sigmas, colors):
        axes, angles = ellipse_axes(cov, k)
        for p, ax, ang in zip(pts, axes, angles):
            if not (np.isfinite(p).all() and np.isfinite(ax).all()):
                continue
            a, b = (min(float(v), limit) for v in ax)
            cv2.ellipse(out, _fix(p), (int(round(a * _SCALE)), int(round(b * _SCALE))), float(ang),
                        0, 360, color, t, cv2.LINE_AA, _SHIFT)
    return out


def draw_box(image: np.ndarray, box: Sequence[float], color: Color = BOX_COLOR,
             label: str | None = None) -> np.ndarray:
    out = _check_image(image)
    x0, y0, x1, y1 = (float(v) for v in box)
    t = _thickness(max(x1 - x0, y1 - y0))
    cv2.rectangle(out, _fix((x0, y0)), _fix((x1, y1)), color, t, cv2.LINE_AA, _SHIFT)
    if label:
        font = max(0.4, (x1 - x0) / 500.0)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        y = int(max(y0 - 4, th + 2))
        cv2.rectangle(out, (int(x0), y - th - 3), (int(x0) + tw + 4, y + base - 1), color, -1)
        cv2.putText(out, label, (int(x0) + 2, y - 1), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def draw_text_box(image: np.ndarray, lines: Sequence[str], corner: str = "top-left",
                  color: Color = TEXT_COLOR, background: Color = (0, 0, 0),
                  alpha: float = 0.6, font_scale: float | None = None) -> np.ndarray:
    """Semi-transparent box with one text line per entry (e.g. FPS / latency / device). cv2's
    Hershey fonts are ASCII-only: other characters are replaced."""
    out = _check_image(image)
    lines = [str(s).encode("ascii", "replace").decode("ascii") for s in lines if s]
    if not lines:
        return out
    h, w = out.shape[:2]
    fs = font_scale if font_scale is not None else float(np.clip(min(h, w) / 900.0, 0.35, 1.2))
    thick = max(1, int(round(fs * 1.6)))
    sizes = [cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, fs, thick) for s in lines]
    line_h = max(sz[0][1] + sz[1] for sz in sizes) + int(6 * fs) + 2
    pad = int(8 * fs) + 2
    bw = max(sz[0][0] for sz in sizes) + 2 * pad
    bh = line_h * len(lines) + 2 * pad - int(6 * fs)
    x0 = pad if "left" in corner else max(0, w - bw - pad)
    y0 = pad if "top" in corner else max(0, h - bh - pad)
    x1, y1 = min(w, x0 + bw), min(h, y0 + bh)
    if x1 > x0 and y1 > y0:
        roi = out[y0:y1, x0:x1].astype(np.float32)
        bg = np.array(background, np.float32)
        out[y0:y1, x0:x1] = np.clip(roi * (1 - alpha) + bg * alpha, 0, 255).astype(np.uint8)
    for k, (s, sz) in enumerate(zip(lines, sizes)):
        y = y0 + pad + k * line_h + sz[0][1]
        cv2.putText(out, s, (x0 + pad, y), cv2.FONT_HERSHEY_SIMPLEX, fs, color, thick, cv2.LINE_AA)
    return out


# ----------------------------------------------------------------------------- composition


def _face_field(face, name: str):
    if isinstance(face, dict):
        return face.get(name)
    return getattr(face, name, None)


def draw_face(image: np.ndarray, face, neighbours: np.ndarray | None, options: OverlayOptions,
              label: str | None = None, color: Color = POINT_COLOR) -> np.ndarray:
    """One face (a core.inference.Face or its to_dict()) with the selected overlays, drawn
    back-to-front: box, curves, graph, ellipses, points, numbers."""
    out = _check_image(image)
    pts = np.asarray(_face_field(face, "landmarks"), np.float64)
    box = _face_field(face, "box")
    cov = _face_field(face, "covariance")
    adj = _face_field(face, "adjacency")
    if options.box and box is not None:
        out = draw_box(out, box, label=label)
    if options.curves:
        out = draw_curves(out, pts)
    if options.graph and neighbours is not None:
        out = draw_graph(out, pts, neighbours, None if adj is None else np.asarray(adj))
    if options.ellipses and cov is not None:
        out = draw_ellipses(out, pts, np.asarray(cov, np.float64))
    if options.points:
        out = draw_points(out, pts, color)
    if options.numbers:
        out = draw_numbers(out, pts)
    return out


def draw_faces(image: np.ndarray, faces: Sequence, neighbours: np.ndarray | None,
               options: OverlayOptions, labels: bool = True) -> np.ndarray:
    out = _check_image(image)
    for i, face in enumerate(faces):
        out = draw_face(out, face, neighbours, options, label=f"#{i}" if labels and len(faces) > 1 else None)
    return out


def scale_face(face, s: float, offset: Sequence[float] = (0.0, 0.0)) -> dict:
    """A face's geometry in the frame of a crop at `offset` (x, y) resized by s (for drawing on a
    resized copy): box, landmarks -> (p - offset) x s, covariance x s^2; adjacency, score as is."""
    off = np.asarray(offset, np.float64)
    cov = _face_field(face, "covariance")
    box = _face_field(face, "box")
    return {
        "box": None if box is None else (np.asarray(box, np.float64).reshape(2, 2) - off).reshape(4) * s,
        "score": _face_field(face, "score"),
        "landmarks": (np.asarray(_face_field(face, "landmarks"), np.float64) - off) * s,
        "covariance": None if cov is None else np.asarray(cov, np.float64) * s * s,
        "adjacency": _face_field(face, "adjacency"),
    }


def face_region(boxes: np.ndarray, shape: tuple[int, ...], scale: float = 1.8,
                min_side: int = 64) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer region around all face boxes: their union, grown `scale` times
    around its centre, clipped to the image (for a zoomed view of the faces)."""
    h, w = shape[:2]
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    b = b[np.isfinite(b).all(1)]
    if len(b) == 0:
        return 0, 0, w, h
    x0, y0 = b[:, 0].min(), b[:, 1].min()
    x1, y1 = b[:, 2].max(), b[:, 3].max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx = max((x1 - x0) * scale, min_side) / 2
    hy = max((y1 - y0) * scale, min_side) / 2
    rx0, ry0 = int(max(0, np.floor(cx - hx))), int(max(0, np.floor(cy - hy)))
    rx1, ry1 = int(min(w, np.ceil(cx + hx))), int(min(h, np.ceil(cy + hy)))
    if rx1 - rx0 < 2 or ry1 - ry0 < 2:
        return 0, 0, w, h
    return rx0, ry0, rx1, ry1
