"""The landmark model: backbone -> (fusion + CBAM) -> map-to-node -> graph (or FC) head."""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..config import ModelConfig
from .backbones import build_backbone
from .scc import AttentionFusion, DynamicAdjacency, FCHead, GraphHead, MapToNode, SemanticCBAM, binary_adjacency, conv_bn_relu

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOG_SIGMA_INIT = math.log(0.02)  # initial std of the uncertainty head, in crop units (~5 px at 256)


def init_landmark_model(model: nn.Module, cfg: ModelConfig, neighbours: torch.Tensor, mean_shape: torch.Tensor):
    """What every landmark model shares: config, the sparse neighbourhood and mean shape (saved with
    the weights), ImageNet input normalisation and the backbone."""
    n = cfg.num_landmarks
    if tuple(neighbours.shape) != (n, n) or tuple(mean_shape.shape) != (n, 2):
        raise ValueError(f"neighbours must be ({n},{n}) and mean_shape ({n},2), got "
                         f"{tuple(neighbours.shape)} and {tuple(mean_shape.shape)}")
    model.cfg = cfg
    model.register_buffer("neighbours", neighbours.float())
    model.register_buffer("mean_shape", mean_shape.float())
    model.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    model.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    # Post-hoc variance calibration fitted on validation (core.calibrate); 1 while training.
    model.register_buffer("cov_scale", torch.ones(()))
    model.backbone = build_backbone(cfg.backbone, pretrained=cfg.pretrained)
    if cfg.pretrained and not model.backbone.imagenet_init:
        model.cfg = dataclasses.replace(cfg, pretrained=False)  # truthful record: no ImageNet init happened


class LandmarkModel(nn.Module):
    """Input: (B, 3, S, S) RGB in [0, 1]. Output dict:
    coords (B, N, 2) in crop units [0, 1]; adjacency (B, N, N) edge weights (rows sum to 1 over the
    neighbourhood); cov (B, N, 2, 2) per-landmark covariance in crop units^2 (if uncertainty)."""

    def __init__(self, cfg: ModelConfig, neighbours: torch.Tensor, mean_shape: torch.Tensor):
        super().__init__()
        n = cfg.num_landmarks
        init_landmark_model(self, cfg, neighbours, mean_shape)
        c = cfg.channels
        if cfg.fusion:
            self.fusion = AttentionFusion(self.backbone.out_channels, c)
            self.cbam = SemanticCBAM(c)
        else:
            self.top = conv_bn_relu(self.backbone.out_channels[2], c)
        self.to_nodes = MapToNode(c, n, cfg.node_channels)
        grid = cfg.input_size // 32
        node_dim = cfg.node_channels * grid * grid
        self.out_dim = 2 + (3 if cfg.uncertainty else 0)
        if cfg.head == "graph":
            if cfg.dynamic_adjacency:
                self.adjacency = DynamicAdjacency(c, self.neighbours)
            self.head = GraphHead(node_dim, cfg.graph_hidden, cfg.graph_blocks, n, self.out_dim)
        else:
            self.head = FCHead(node_dim, cfg.fc_hidden, n, self.out_dim, cfg.fc_node_dim)
        last = self.head.out if cfg.head == "graph" else self.head.body[-1]
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)
        if cfg.uncertainty:
            with torch.no_grad():
                bias = last.bias.view(-1, self.out_dim) if cfg.head == "fc" else last.bias.view(1, -1)
                bias[:, 2] = LOG_SIGMA_INIT
                bias[:, 4] = LOG_SIGMA_INIT

    def features(self, x):
        feats = self.backbone((x - self.pixel_mean) / self.pixel_std)
        if self.cfg.fusion:
            fused, top = self.fusion(feats)
            return self.cbam(fused, top)
        return self.top(feats[2])

    def forward(self, x):
        f = self.features(x)
        nodes = self.to_nodes(f)
        b = x.shape[0]
        if self.cfg.dynamic_adjacency:
            adj = self.adjacency(f)
        else:
            adj = binary_adjacency(self.neighbours).expand(b, -1, -1)
        out = self.head(nodes, adj)
        result = {"coords": self.mean_shape + out[..., :2], "adjacency": adj}
        if self.cfg.uncertainty:
            result["cov"] = cholesky_to_cov(out[..., 2:5]) * self.cov_scale
        return result


def cholesky_to_cov(params: torch.Tensor) -> torch.Tensor:
    """(..., 3) = (log l11, l21, log l22) -> Sigma = L L^T, L lower-triangular."""
    l11 = torch.exp(params[..., 0].clamp(-12, 3))
    l22 = torch.exp(params[..., 2].clamp(-12, 3))
    l21 = params[..., 1]
    s11 = l11 * l11
    s12 = l11 * l21
    s22 = l21 * l21 + l22 * l22
    return torch.stack([torch.stack([s11, s12], -1), torch.stack([s12, s22], -1)], -2)


def build_model(cfg: ModelConfig, neighbours, mean_shape) -> LandmarkModel:
    if cfg.head in ("heatmap", "hybrid"):
        from .heatmap import HeatmapLandmarkModel  # imported here: it imports this module's constants

        return HeatmapLandmarkModel(cfg, torch.as_tensor(neighbours), torch.as_tensor(mean_shape))
    return LandmarkModel(cfg, torch.as_tensor(neighbours), torch.as_tensor(mean_shape))
