"""Heatmap heads on the shared backbones (ADNet-style anisotropic attention) and the heatmap-to-graph
hybrid.

    backbone (strides 8/16/32) -> FPN decoder (top-down, up-sampled to stride `heatmap_stride`)
      -> 1x1 conv: N landmark + N point + E edge heatmap logits (E = len(CURVES))
      -> anisotropic attention A_i = sigmoid(point_i) * sigmoid(edge_{curve(i)})
      -> attended landmark logits z'_i = z_i + log max(A_i, ATTENTION_FLOOR)
         (softmax(z') = softmax(z) * A renormalised; sigmoid(z') ~ sigmoid(z) * A off the peak)
      -> read-out (model.readout: soft_argmax | get_max | get_bc, core.heatmaps) -> coords
    head "heatmap": coords = read-out; adjacency = uniform binary adjacency of the sparse neighbourhood;
                    cov (if uncertainty) from a per-node linear layer on the node features below.
    head "hybrid":  (the flagship) node features local to each landmark (model.node_features="local":
                    softmax(z'_i)-attended pooling of the decoder map + rings sampled at the read-out;
                    "whole": the SCC's whole-crop map-to-node, for the ablation), plus the read-out and
                    the log spread of softmax(z'_i); a sparse dynamic graph stage (core.models.refine)
                    predicts an offset (and cov): p_1 = read-out + dp_0; each of model.refine_stages
                    re-samples at p_s and predicts p_{s+1} = p_s + dp_s. stage_head="fc": FC baseline.

The forward returns the graph model's dict (coords (B, N, 2) in crop units, adjacency (B, N, N), cov
(B, N, 2, 2) if uncertainty) plus "heatmaps" (attended landmark logits, (B, N, H/r, W/r)),
"point_heatmaps" (B, N, ...) and "edge_heatmaps" (B, E, ...), all logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..heatmaps import heatmap_to_crop, landmark_curve_index, readout, softmax_moments
from ..landmarks import CURVES
from . import LOG_SIGMA_INIT, cholesky_to_cov, init_landmark_model
from .refine import GraphStage, LocalSampler, WholeCropNodes
from .scc import binary_adjacency, conv_bn_relu

ATTENTION_FLOOR = 1e-6  # log-attention floor: a cell with A below it is suppressed by ~ log(1e-6)
MAP_PRIOR_LOGIT = -2.0  # initial point / edge logits (sigmoid ~ 0.12): most of each map is background
SPREAD_FLOOR = 1e-2  # heatmap pixels^2 added to the variance before its log (node feature)


def _up2(x):
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _dw_block(c):
    """Depthwise 3x3 + pointwise 1x1 (conv-BN-ReLU each): cheap spatial mixing at stride 4."""
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                         conv_bn_relu(c, c))


class FPNDecoder(nn.Module):
    """Small FPN: 1x1 laterals on the stride-8/16/32 stages, top-down p_l = lat_l + up2(p_{l+1}),
    a 3x3 conv at stride 8, then (stride 4) up2 + a depthwise-separable block."""

    def __init__(self, in_channels: tuple[int, int, int], channels: int, stride: int):
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"heatmap stride must be 4 or 8, got {stride}")
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels) for c in in_channels)
        self.smooth = conv_bn_relu(channels, channels, 3)
        self.refine = _dw_block(channels) if stride == 4 else None

    def forward(self, feats):
        c3, c4, c5 = (lat(f) for lat, f in zip(self.lateral, feats))
        p = c4 + _up2(c5)
        p = self.smooth(c3 + _up2(p))
        return self.refine(_up2(p)) if self.refine is not None else p


class AnisotropicAttention(nn.Module):
    """ADNet's anisotropic attention module on the decoder features: landmark, point and edge heatmap
    logits from one 1x1 conv; A_i = sigmoid(point_i) * sigmoid(edge_c(i)) (edge factor 1 for a point on
    no curve); attended logits z'_i = z_i + log max(A_i, ATTENTION_FLOOR)."""

    def __init__(self, channels: int, num_landmarks: int, curve_index: torch.Tensor, num_curves: int):
        super().__init__()
        self.n, self.e = num_landmarks, num_curves
        self.register_buffer("curve_index", curve_index.clamp_min(0).long(), persistent=False)
        self.register_buffer("on_curve", (curve_index >= 0).float()[None, :, None, None], persistent=False)
        self.out = nn.Conv2d(channels, 2 * num_landmarks + num_curves, 1)
        nn.init.normal_(self.out.weight, std=1e-2)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[num_landmarks:].fill_(MAP_PRIOR_LOGIT)

    def forward(self, f):
        y = self.out(f)
        z, point, edge = y[:, : self.n], y[:, self.n: 2 * self.n], y[:, 2 * self.n:]
        edge_i = torch.sigmoid(edge.index_select(1, self.curve_index))
        edge_i = edge_i * self.on_curve + (1.0 - self.on_curve)
        att = torch.sigmoid(point) * edge_i
        return z + torch.log(att.clamp_min(ATTENTION_FLOOR)), point, edge


class HeatmapLandmarkModel(nn.Module):
    """Heatmap ("heatmap") or heatmap-to-graph ("hybrid") landmark model; same buffers and output dict
    as core.models.LandmarkModel (input (B, 3, S, S) RGB in [0, 1])."""

    def __init__(self, cfg: ModelConfig, neighbours: torch.Tensor, mean_shape: torch.Tensor):
        super().__init__()
        n = cfg.num_landmarks
        if cfg.head not in ("heatmap", "hybrid"):
            raise ValueError(f"HeatmapLandmarkModel builds the heatmap and hybrid heads, not {cfg.head!r}")
        init_landmark_model(self, cfg, neighbours, mean_shape)
        c = cfg.channels
        self.decoder = FPNDecoder(self.backbone.out_channels, c, cfg.heatmap_stride)
        self.attention = AnisotropicAttention(c, n, torch.as_tensor(landmark_curve_index(n)), len(CURVES))
        self.out_dim = 2 + (3 if cfg.uncertainty else 0)
        if cfg.head == "hybrid":
            self._build_hybrid(cfg, c)
        elif cfg.uncertainty:
            self.uncertainty = nn.Linear(c + 4, 3)  # gathered features, read-out (x, y), log spread (x, y)
            nn.init.normal_(self.uncertainty.weight, std=1e-3)
            nn.init.zeros_(self.uncertainty.bias)
            with torch.no_grad():
                self.uncertainty.bias[0] = LOG_SIGMA_INIT
                self.uncertainty.bias[2] = LOG_SIGMA_INIT

    def _build_hybrid(self, cfg: ModelConfig, c: int):
        """Graph stage 0 on the read-out, then cfg.refine_stages stages that re-sample at p + dp."""
        n, dyn = cfg.num_landmarks, cfg.dynamic_adjacency
        if cfg.node_features == "local":
            self.sampler = LocalSampler(c, cfg.heatmap_stride, cfg.input_size)
            dims = [c + self.sampler.out_dim + 4] + [self.sampler.out_dim + 2] * cfg.refine_stages
        else:
            self.whole = WholeCropNodes(c, n, cfg.node_channels)
            dims = [self.whole.out_dim + 4] + [self.whole.out_dim + 2] * cfg.refine_stages
        self.stages = nn.ModuleList(GraphStage(d, c, self.neighbours, cfg.graph_hidden, cfg.graph_blocks, dyn,
                                               cfg.uncertainty, cfg.stage_head, cfg.fc_hidden, cfg.fc_node_dim)
                                    for d in dims)

    def features(self, x):
        return self.decoder(self.backbone((x - self.pixel_mean) / self.pixel_std))

    def nodes(self, z, f, coords):
        """(B, N, C + 4): softmax(z)-weighted features, read-out coords - 0.5, log spread (hm px^2)."""
        p, _, var = softmax_moments(z)
        gathered = torch.matmul(p.flatten(2), f.flatten(2).transpose(1, 2))
        return torch.cat([gathered, coords - 0.5, torch.log(var + SPREAD_FLOOR)], -1)

    def hybrid(self, z, f, coords):
        """Graph stages: p_{s+1} = p_s + dp_s(nodes(p_s)); returns (coords, Cholesky params, adjacency,
        the coordinates of every stage before the last)."""
        g = self.sampler.reduced(f) if self.cfg.node_features == "local" else None
        whole = self.whole(f) if g is None else None
        p, _, var = softmax_moments(z)
        spread = torch.log(var + SPREAD_FLOOR)
        earlier = []
        for i, stage in enumerate(self.stages):
            local = self.sampler(g, coords) if g is not None else whole
            parts = [local, coords - 0.5]
            if i == 0:
                parts.append(spread)
                if g is not None:
                    parts.insert(0, torch.matmul(p.flatten(2), f.flatten(2).transpose(1, 2)))
            offset, params, adj = stage(torch.cat(parts, -1), f)
            if i:
                earlier.append(coords)
            coords = coords + offset
        return coords, params, adj, earlier

    def forward(self, x):
        cfg = self.cfg
        f = self.features(x)
        z, point, edge = self.attention(f)
        coords = heatmap_to_crop(readout(z, cfg.readout), cfg.input_size, cfg.input_size // z.shape[-1])
        result = {}
        if cfg.head == "hybrid":
            coords, params, adj, earlier = self.hybrid(z, f, coords)
            if earlier and self.training:
                result["stage_coords"] = earlier
        else:
            adj = binary_adjacency(self.neighbours).expand(x.shape[0], -1, -1)
            params = self.uncertainty(self.nodes(z, f, coords)) if cfg.uncertainty else None
        result["coords"], result["adjacency"] = coords, adj
        if params is not None:
            result["cov"] = cholesky_to_cov(params) * self.cov_scale
        result.update(heatmaps=z, point_heatmaps=point, edge_heatmaps=edge)
        return result
