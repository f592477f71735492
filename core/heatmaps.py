"""Heatmap targets and read-outs for the heatmap / hybrid heads (ADNet, 2D Wasserstein loss).

Frames. Landmarks travel through the model in crop units c in [0, 1] (input pixel u = c * S, pixel
centres at integers, see core.landmarks.crop_matrix). A heatmap of stride r has its cell j centred on
input pixel u = r * j + (r - 1) / 2 (what strided convolutions and align_corners=False up-sampling
give), so heatmap pixel h = (c * S - (r - 1) / 2) / r; `crop_to_heatmap` / `heatmap_to_crop` convert.
Heatmap coordinates are (x, y) = (column, row); sigmas are in heatmap pixels.

Maps. Point heatmaps are Gaussians exp(-d^2 / 2 sigma^2) of peak 1 (targets for Adaptive Wing / L2);
`gaussian_log_heatmaps` gives their logarithm, which stays finite far from the peak (targets of the
Wasserstein loss, which normalises it with a spatial log-softmax). Edge heatmaps are the same Gaussian
of the distance to a landmark curve, the polyline through the curve's consecutive points
(core.landmarks.curve_edges(), closed curves closed), one map per entry of CURVES.

Read-outs take landmark heatmap *logits* z (B, N, H, W) and return (B, N, 2) heatmap pixels:
  soft_argmax  sum_p w_p x_p with w = sigmoid(z) / sum sigmoid(z)  (ADNet's decoder: the regression
               map normalised by its mass; differentiable)
  get_bc       sum_p P_p x_p with P = softmax(z) over the map  (barycentre of the softmax-normalised
               map, the 2D-Wasserstein paper's read-out; differentiable)
  get_max      arg-max cell, moved a quarter pixel towards the larger of its two neighbours on each
               axis (HRNet's "GET_MAX"; not differentiable)."""
from __future__ import annotations

import numpy as np
import torch

from .landmarks import CURVES, NUM_LANDMARKS, curve_edges

READOUTS = ("soft_argmax", "get_max", "get_bc")
QUARTER_OFFSET = 0.25  # GET_MAX sub-pixel step, heatmap pixels
MASS_FLOOR = 1e-12  # guards the soft-argmax normalisation of an all-zero map


# ------------------------------------------------------------------------------------------ frames
def crop_to_heatmap(coords: torch.Tensor, input_size: int, stride: int) -> torch.Tensor:
    """Crop units -> heatmap pixels: h = (c S - (r - 1) / 2) / r."""
    return (coords * input_size - (stride - 1) / 2.0) / stride


def heatmap_to_crop(points: torch.Tensor, input_size: int, stride: int) -> torch.Tensor:
    """Heatmap pixels -> crop units: c = (r h + (r - 1) / 2) / S."""
    return (points * stride + (stride - 1) / 2.0) / input_size


# ------------------------------------------------------------------------------------------ curves
def curve_segments(num_landmarks: int = NUM_LANDMARKS) -> tuple[np.ndarray, np.ndarray]:
    """(S, 2) endpoint indices of every curve segment (core.landmarks.curve_edges()) and (S,) the index
    in CURVES of the curve each belongs to."""
    if num_landmarks != NUM_LANDMARKS:
        raise ValueError(f"edge heatmaps follow the {NUM_LANDMARKS}-point curves, got {num_landmarks} landmarks")
    owner = landmark_curve_index(num_landmarks)
    edges = np.asarray(curve_edges(), dtype=np.int64)
    return edges, owner[edges[:, 0]]


def landmark_curve_index(num_landmarks: int = NUM_LANDMARKS) -> np.ndarray:
    """(N,) index in CURVES of the curve through each landmark (-1 for a point on none)."""
    idx = -np.ones(num_landmarks, dtype=np.int64)
    for c, pts in enumerate(CURVES.values()):
        for p in pts:
            if p < num_landmarks:
                idx[p] = c
    return idx


# --------------------------------------------------------------------------------------- rendering
def _axes(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.arange(w, device=like.device, dtype=like.dtype),
            torch.arange(h, device=like.device, dtype=like.dtype))


def gaussian_log_heatmaps(points: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """(..., N, 2) heatmap pixels -> (..., N, h, w) log-Gaussians  -((x - px)^2 + (y - py)^2) / (2 sigma^2)."""
    xs, ys = _axes(h, w, points)
    dx2 = (xs - points[..., 0:1]) ** 2  # (..., N, w)
    dy2 = (ys - points[..., 1:2]) ** 2  # (..., N, h)
    return -(dy2[..., :, None] + dx2[..., None, :]) / (2.0 * sigma ** 2)


def point_heatmaps(points: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """(..., N, h, w) Gaussians of peak 1: exp(-d^2 / (2 sigma^2)), d = distance to the landmark."""
    return gaussian_log_heatmaps(points, h, w, sigma).exp()


def segment_distance2(points: torch.Tensor, h: int, w: int, edges: np.ndarray) -> torch.Tensor:
    """(B, N, 2) heatmap pixels -> (B, S, h, w) squared distance of every cell to every segment
    [a, b] of `edges`: |p - a - t (b - a)|^2 with t = clamp((p - a).(b - a) / |b - a|^2, 0, 1)."""
    xs, ys = _axes(h, w, points)
    idx = torch.as_tensor(edges, device=points.device)
    a, b = points[:, idx[:, 0]], points[:, idx[:, 1]]  # (B, S, 2)
    v = b - a
    vv = (v * v).sum(-1).clamp_min(1e-12)[..., None, None]
    px = xs[None, None, None, :] - a[..., 0, None, None]  # (B, S, 1, w)
    py = ys[None, None, :, None] - a[..., 1, None, None]  # (B, S, h, 1)
    t = ((px * v[..., 0, None, None] + py * v[..., 1, None, None]) / vv).clamp(0.0, 1.0)
    return (px - t * v[..., 0, None, None]) ** 2 + (py - t * v[..., 1, None, None]) ** 2


def edge_log_heatmaps(points: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """(B, N, 2) heatmap pixels -> (B, E, h, w), E = len(CURVES): -d_c^2 / (2 sigma^2) with d_c the
    distance to curve c's polyline (minimum over its segments, closed curves closed)."""
    edges, owner = curve_segments(points.shape[-2])
    d2 = segment_distance2(points, h, w, edges)
    per_curve = [d2[:, torch.as_tensor(np.flatnonzero(owner == c), device=points.device)].amin(1)
                 for c in range(len(CURVES))]
    return -torch.stack(per_curve, 1) / (2.0 * sigma ** 2)


def edge_heatmaps(points: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """(B, E, h, w) edge heatmaps of peak 1 on each landmark curve: exp(-d_c^2 / (2 sigma^2))."""
    return edge_log_heatmaps(points, h, w, sigma).exp()


# ---------------------------------------------------------------------------------------- read-outs
def _expectation(weights: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) weights summing to 1 per map -> (B, N, 2) expected (x, y)."""
    h, w = weights.shape[-2:]
    xs, ys = _axes(h, w, weights)
    return torch.stack([(weights.sum(-2) * xs).sum(-1), (weights.sum(-1) * ys).sum(-1)], -1)


def softmax_maps(z: torch.Tensor) -> torch.Tensor:
    """Spatial softmax of (..., H, W) logits: P = exp(z) / sum exp(z) over each map."""
    return torch.softmax(z.flatten(-2), -1).view(z.shape)


def soft_argmax(z: torch.Tensor) -> torch.Tensor:
    """ADNet decoder: x = sum_p sigmoid(z_p) x_p / sum_p sigmoid(z_p) (heatmap pixels)."""
    m = torch.sigmoid(z)
    return _expectation(m / m.sum((-2, -1), keepdim=True).clamp_min(MASS_FLOOR))


def get_bc(z: torch.Tensor) -> torch.Tensor:
    """Barycentre of the softmax-normalised map: x = sum_p softmax(z)_p x_p (heatmap pixels)."""
    return _expectation(softmax_maps(z))


def get_max(z: torch.Tensor) -> torch.Tensor:
    """Arg-max cell (x*, y*) plus 0.25 sign(z[y*, x*+1] - z[y*, x*-1]) on x (same on y), for cells
    not on the border; not differentiable (returns a tensor without grad)."""
    h, w = z.shape[-2:]
    flat = z.detach().flatten(-2)
    idx = flat.argmax(-1)  # (B, N)
    px, py = idx % w, torch.div(idx, w, rounding_mode="floor")

    def at(y, x):
        return flat.gather(-1, (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).unsqueeze(-1)).squeeze(-1)

    dx = torch.sign(at(py, px + 1) - at(py, px - 1)) * ((px > 0) & (px < w - 1)).to(z.dtype)
    dy = torch.sign(at(py + 1, px) - at(py - 1, px)) * ((py > 0) & (py < h - 1)).to(z.dtype)
    return torch.stack([px.to(z.dtype) + QUARTER_OFFSET * dx, py.to(z.dtype) + QUARTER_OFFSET * dy], -1)


_READOUT_FNS = {"soft_argmax": soft_argmax, "get_max": get_max, "get_bc": get_bc}


def readout(z: torch.Tensor, name: str) -> torch.Tensor:
    """Dispatch on the model's `readout` setting; (B, N, H, W) logits -> (B, N, 2) heatmap pixels."""
    try:
        return _READOUT_FNS[name](z)
    except KeyError:
        raise ValueError(f"unknown heatmap read-out {name!r}; one of {READOUTS}") from None


def softmax_moments(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax-normalised maps P (B, N, H, W), their mean (B, N, 2) and per-axis variance (B, N, 2)
    in heatmap pixels."""
    p = softmax_maps(z)
    h, w = z.shape[-2:]
    xs, ys = _axes(h, w, z)
    px, py = p.sum(-2), p.sum(-1)  # marginals (B, N, W), (B, N, H)
    mean = torch.stack([(px * xs).sum(-1), (py * ys).sum(-1)], -1)
    var = torch.stack([(px * xs ** 2).sum(-1), (py * ys ** 2).sum(-1)], -1) - mean ** 2
    return p, mean, var.clamp_min(0.0)


__all__ = ["READOUTS", "crop_to_heatmap", "heatmap_to_crop", "curve_segments", "landmark_curve_index",
           "gaussian_log_heatmaps", "point_heatmaps", "edge_log_heatmaps", "edge_heatmaps", "segment_distance2",
           "softmax_maps", "soft_argmax", "get_bc", "get_max", "readout", "softmax_moments"]
