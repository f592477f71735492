"""Heatmap losses for the heatmap / hybrid heads: Adaptive Wing, L2 and the 2D Wasserstein loss
(entropic optimal transport on the heatmap grid), plus `heatmap_loss_parts`, which core.train's
compute_loss calls when the model's output has "heatmaps" (targets rendered from the ground truth).

Heatmap tensors are (B, K, H, W); predictions enter as maps in [0, 1] (sigmoid of the logits) for
Adaptive Wing and L2, and as logits for the Wasserstein loss (normalised with a spatial softmax)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .heatmaps import crop_to_heatmap, edge_heatmaps, gaussian_log_heatmaps

# Adaptive Wing (Wang et al., ICCV 2019) defaults.
AWING_OMEGA = 14.0
AWING_THETA = 0.5
AWING_EPSILON = 1.0
AWING_ALPHA = 2.1
AWING_MAP_WEIGHT = 10.0  # W of the weighted loss map M = W * dilate3x3(y >= threshold) + 1
AWING_MAP_THRESHOLD = 0.2

# Entropic 2D Wasserstein (Sinkhorn divergence). Ground cost |dx| + |dy| in heatmap pixels: it is a
# sum of per-axis costs, so the Gibbs kernel exp(-C / eps) factorises into a row and a column kernel
# and one soft-min costs two (H x H, W x W) matrix products, O(H W (H + W)) per map, not O((H W)^2).
SINKHORN_EPS = 1.0  # entropic blur, heatmap px; raised to (H + W - 2) / 80 on large grids (1.18 on 48 x 48)
SINKHORN_ITERS = 10  # Sinkhorn iterations, the first ones annealing eps from the grid diameter down
SINKHORN_SCALING = 0.5  # eps-scaling factor per iteration while annealing
SINKHORN_MAX_EXPONENT = 80.0  # eps >= (H + W - 2) / this keeps every soft-min sum above float32 underflow


def adaptive_wing_loss(pred: torch.Tensor, target: torch.Tensor, omega: float = AWING_OMEGA,
                       theta: float = AWING_THETA, epsilon: float = AWING_EPSILON, alpha: float = AWING_ALPHA,
                       map_weight: float = AWING_MAP_WEIGHT) -> torch.Tensor:
    """Adaptive Wing on heatmaps, y = target, d = |y - y_hat|, p = alpha - y:
        AWing = omega ln(1 + (d / epsilon)^p)        if d < theta
                A d - C                               otherwise,
        A = omega p (theta / epsilon)^(p - 1) / (epsilon (1 + (theta / epsilon)^p)),
        C = theta A - omega ln(1 + (theta / epsilon)^p);
    weighted by M = map_weight * dilate3x3(y >= 0.2) + 1 and averaged over all pixels."""
    d = (target - pred).abs()
    p = alpha - target
    r = theta / epsilon
    a = omega * p * r ** (p - 1) / (epsilon * (1 + r ** p))
    c = theta * a - omega * torch.log1p(r ** p)
    loss = torch.where(d < theta, omega * torch.log1p((d / epsilon).clamp_min(0) ** p), a * d - c)
    if map_weight:
        fg = F.max_pool2d((target >= AWING_MAP_THRESHOLD).to(pred.dtype).flatten(0, 1).unsqueeze(1), 3, 1, 1)
        loss = loss * (map_weight * fg.view_as(loss) + 1.0)
    return loss.mean()


def heatmap_l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L2 = mean over pixels of (y_hat - y)^2."""
    return ((pred - target) ** 2).mean()


def _softmin(eps: float, log_w: torch.Tensor, pot: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Separable log-domain soft-min on the grid, for every cell (k, l):
        -eps log sum_{i,j} exp(log w_ij + pot_ij / eps - (|i - k| + |j - l|) / eps)
      = -eps (m + log [Ky^T (exp(x - m)) Kx]_kl),  x = log w + pot / eps,  m = max_ij x_ij,
    Kx = exp(-|j - l| / eps), Ky = exp(-|i - k| / eps): one exp, two small matrix products and one log
    per cell. The maximising cell keeps every sum >= exp(-(H + W - 2) / eps), so no log sees an
    underflowed 0 as long as eps >= (H + W - 2) / SINKHORN_MAX_EXPONENT (enforced by the caller)."""
    x = log_w + pot / eps  # (M, H, W)
    m = x.amax((-2, -1), keepdim=True)
    t = torch.exp(x - m) @ kx  # (M, H, W): sum over columns j
    t = (t.transpose(-1, -2) @ ky).transpose(-1, -2)  # sum over rows i
    return -eps * (torch.log(t) + m)


def _kernel(n: int, eps: float, like: torch.Tensor) -> torch.Tensor:
    i = torch.arange(n, device=like.device, dtype=like.dtype)
    return torch.exp(-(i[:, None] - i[None, :]).abs() / eps)


def sinkhorn_divergence(log_a: torch.Tensor, log_b: torch.Tensor, eps: float = SINKHORN_EPS,
                        iters: int = SINKHORN_ITERS) -> torch.Tensor:
    """Debiased entropic 2D Wasserstein distance between (M, H, W) log-densities (each normalised over
    its map), per map (M,), in heatmap pixels, ground cost C = |dx| + |dy|:
        OT_eps(a, b) = max_{f, g} <a, f> + <b, g> - eps <a x b, exp((f + g - C) / eps) - 1>,
        S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2   (0 when a = b),
    with the dual potentials from log-domain Sinkhorn iterations f <- softmin_b(g - C),
    g <- softmin_a(f - C) (symmetric p <- softmin_a(p - C) for the debiasing terms), eps annealed by
    SINKHORN_SCALING from the grid diameter (Feydy et al. 2019). At the fixed point
    S = <a, f - p_a> + <b, g - p_b>; the potentials are computed without autograd and enter as constants,
    so dS/da = f - p_a (envelope theorem) and memory does not grow with the iteration count."""
    if log_a.shape != log_b.shape or log_a.dim() != 3:
        raise ValueError(f"need two (M, H, W) maps of one shape, got {tuple(log_a.shape)} and {tuple(log_b.shape)}")
    h, w = log_a.shape[-2:]
    diameter = float(h + w - 2)
    eps = max(float(eps), diameter / SINKHORN_MAX_EXPONENT)
    schedule = [max(eps, diameter * SINKHORN_SCALING ** k) for k in range(max(iters, 1))]
    log_a = torch.log_softmax(log_a.flatten(1), 1).view_as(log_a)
    log_b = torch.log_softmax(log_b.flatten(1), 1).view_as(log_b)
    with torch.no_grad():
        la, lb = log_a.detach(), log_b.detach()
        logw = torch.cat([lb, la, la, lb])  # one batched soft-min updates f, g, p_a, p_b together
        kernels = {}

        def step(e, pot):
            if e not in kernels:
                kernels[e] = (_kernel(w, e, la), _kernel(h, e, la))
            return _softmin(e, logw, pot, *kernels[e])

        m = la.shape[0]
        state = step(schedule[0], torch.zeros_like(logw))  # [f, g, p_a, p_b]
        for e in schedule:
            state = 0.5 * (state + step(e, _swap(state, m)))  # symmetric (averaged) updates
        f, g, pa, pb = step(eps, _swap(state, m)).split(m)  # final extrapolation at eps, no averaging
    return (log_a.exp() * (f - pa)).sum((-2, -1)) + (log_b.exp() * (g - pb)).sum((-2, -1))


def _swap(state: torch.Tensor, m: int) -> torch.Tensor:
    """The batched soft-min applies [softmin_b, softmin_a, softmin_a, softmin_b] block-wise; fed the
    potentials [g, f, p_a, p_b] (the state [f, g, p_a, p_b] with its first two blocks swapped), it
    returns the updated [f, g, p_a, p_b]."""
    f, g, pa, pb = state.split(m)
    return torch.cat([g, f, pa, pb])


def wasserstein_loss(pred_logits: torch.Tensor, target_log: torch.Tensor, eps: float = SINKHORN_EPS,
                     iters: int = SINKHORN_ITERS) -> torch.Tensor:
    """2D Wasserstein loss on softmax-normalised heatmaps: mean over the B*K maps of
    S_eps(softmax(z), normalise(exp(target_log))) (see sinkhorn_divergence), in heatmap pixels."""
    h, w = pred_logits.shape[-2:]
    return sinkhorn_divergence(pred_logits.reshape(-1, h, w), target_log.reshape(-1, h, w).to(pred_logits.dtype),
                               eps, iters).mean()


def heatmap_loss_parts(loss_cfg, model_cfg, out: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Heatmap terms for core.train.compute_loss; targets are rendered from the (B, N, 2) ground truth
    in crop units at the heatmaps' resolution with sigma = loss.heatmap_sigma heatmap pixels.
        hm  = heatmap_weight * {awing | l2}(sigmoid(z), G)  or  heatmap_weight * W(softmax(z), G / sum G)
        aam = heatmap_weight * (AWing(sigmoid(point), G) + AWing(sigmoid(edge), E))   (if the model has them)
    with z the (attended) landmark heatmap logits, G the landmark Gaussians, E the edge heatmaps."""
    z = out["heatmaps"]
    h, w = z.shape[-2:]
    stride = model_cfg.input_size // w
    pts = crop_to_heatmap(target.to(z.dtype), model_cfg.input_size, stride)
    sigma = loss_cfg.heatmap_sigma
    log_g = gaussian_log_heatmaps(pts, h, w, sigma)
    if loss_cfg.heatmap == "wasserstein":
        hm = wasserstein_loss(z, log_g)
    elif loss_cfg.heatmap == "l2":
        hm = heatmap_l2_loss(torch.sigmoid(z), log_g.exp())
    else:
        hm = adaptive_wing_loss(torch.sigmoid(z), log_g.exp())
    parts = {"hm": loss_cfg.heatmap_weight * hm}
    if "point_heatmaps" in out and "edge_heatmaps" in out:
        aam = (adaptive_wing_loss(torch.sigmoid(out["point_heatmaps"]), log_g.exp())
               + adaptive_wing_loss(torch.sigmoid(out["edge_heatmaps"]), edge_heatmaps(pts, h, w, sigma)))
        parts["aam"] = loss_cfg.heatmap_weight * aam
    return parts


__all__ = ["adaptive_wing_loss", "heatmap_l2_loss", "sinkhorn_divergence", "wasserstein_loss", "heatmap_loss_parts",
           "SINKHORN_EPS", "SINKHORN_ITERS"]
