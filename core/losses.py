"""Coordinate losses. Inputs are (B, N, 2) predictions and targets in input pixels; each loss
returns a scalar mean."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .landmarks import CURVE_NEIGHBOURS


def l1_loss(pred, target):
    """L = mean |p - g| over coordinates."""
    return (pred - target).abs().mean()


def wing_loss(pred, target, w: float = 10.0, eps: float = 2.0):
    """Wing: w ln(1 + |x|/eps) if |x| < w, else |x| - C, with C = w - w ln(1 + w/eps)."""
    x = (pred - target).abs()
    c = w - w * math.log(1 + w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean()


def soft_wing_loss(pred, target, w1: float = 2.0, w2: float = 20.0, eps: float = 0.5):
    """Soft Wing: |x| if |x| < w1, else w2 ln(1 + |x|/eps) + B, B = w1 - w2 ln(1 + w1/eps)
    (continuous at |x| = w1)."""
    x = (pred - target).abs()
    b = w1 - w2 * math.log(1 + w1 / eps)
    return torch.where(x < w1, x, w2 * torch.log1p(x / eps) + b).mean()


def laplacian_loss(pred, target, neighbours):
    """Relative-location loss: L = mean_i || L(p)_i - L(g)_i ||_2, with the graph Laplacian
    L(p)_i = p_i - mean_{j in N(i), j != i} p_j over the sparse neighbourhood M (uniform weights)."""
    m = neighbours.clone().float()
    m.fill_diagonal_(0)
    w = m / m.sum(-1, keepdim=True).clamp_min(1)
    lap = lambda p: p - torch.matmul(w, p)  # noqa: E731
    return (lap(pred) - lap(target)).norm(dim=-1).mean()


def curve_frames(target):
    """Unit tangents t (B, N, 2) of the target's landmark curves and a mask of points on a curve."""
    nb = torch.as_tensor(CURVE_NEIGHBOURS, device=target.device)
    on_curve = nb[:, 0] >= 0
    t = target[:, nb[:, 1].clamp_min(0)] - target[:, nb[:, 0].clamp_min(0)]
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return t, on_curve


def _normal_tangent(pred, target):
    e = pred - target
    t, on_curve = curve_frames(target)
    n = torch.stack([-t[..., 1], t[..., 0]], -1)
    return (e * n).sum(-1), (e * t).sum(-1), on_curve, e


def adl_loss(pred, target, lam: float = 2.0):
    """Anisotropic direction loss: L = lambda (e.n)^2 + (e.t)^2 with n, t the normal and tangent of
    the landmark's curve (ADNet); |e|^2 for points on no curve. lambda = 1 gives the L2 loss."""
    en, et, on_curve, e = _normal_tangent(pred, target)
    loss = torch.where(on_curve, lam * en ** 2 + et ** 2, (e ** 2).sum(-1))
    return loss.mean()


def smooth_adl1_loss(pred, target, lam: float = 2.0, beta: float = 1.0):
    """Smooth-ADL1: lambda smoothL1(e.n) + smoothL1(e.t); isotropic smoothL1 on points on no curve."""
    en, et, on_curve, e = _normal_tangent(pred, target)
    sl = lambda v: F.smooth_l1_loss(v, torch.zeros_like(v), reduction="none", beta=beta)  # noqa: E731
    loss = torch.where(on_curve, lam * sl(en) + sl(et), sl(e).sum(-1))
    return loss.mean()


def gaussian_nll(pred, target, cov):
    """Per-landmark Gaussian NLL with r = g - p (p detached, so it cannot move the coordinates):
    L = 1/2 r^T Sigma^-1 r + 1/2 log det Sigma."""
    r = (target - pred.detach()).unsqueeze(-1)
    cov = cov + 1e-6 * torch.eye(2, device=cov.device, dtype=cov.dtype)
    maha = (r.transpose(-1, -2) @ torch.linalg.solve(cov, r)).squeeze(-1).squeeze(-1)
    return (0.5 * maha + 0.5 * torch.logdet(cov)).mean()


COORD_LOSSES = {"l1": l1_loss, "wing": wing_loss, "soft_wing": soft_wing_loss}
