"""Node features for the flagship (hybrid) head and its graph stages.

Local node features ("local"): each landmark's node is built from the decoder map around that
landmark only, so an occluder corrupts the nodes it covers, not all of them:

    node_i = [ sum_p softmax(z_i)_p f_p  (heatmap-attended pooling),
               g(p_i + r d_k), k = 0..K   (bilinear samples of a reduced map g at the estimate p_i and on
                                            rings of radius r in SAMPLE_RADII, 8 directions each),
               p_i - 1/2, log var_i ]

Whole-crop node features ("whole", the ablation's switch): the SCC's map-to-node on the decoder map
pooled to WHOLE_GRID x WHOLE_GRID, so every node sees the whole crop, plus p_i - 1/2 and log var_i.

A graph stage (GraphStage) is the SCC's sparse dynamic graph: per-image edge weights on the
data-driven neighbourhood (DynamicAdjacency), graph conv + residual graph blocks (GraphHead); it
predicts an offset dp_i and the Cholesky parameters of the covariance. Refinement stages re-sample
the local features at the refined positions p + dp and run another graph stage."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import LOG_SIGMA_INIT
from .scc import DynamicAdjacency, FCHead, GraphHead, MapToNode, binary_adjacency, conv_bn_relu

SAMPLE_RADII = (1.0, 3.0)  # rings around each estimate, in decoder cells (stride-4 pixels)
RING_DIRECTIONS = 8
SAMPLE_CHANNELS = 32  # channels of the reduced map the rings sample
WHOLE_GRID = 4  # whole-crop ablation: decoder map pooled to 4 x 4 before map-to-node


def ring_offsets(radii=SAMPLE_RADII, directions: int = RING_DIRECTIONS) -> torch.Tensor:
    """(1 + len(radii) * directions, 2) sampling offsets in decoder cells, the centre first."""
    pts = [(0.0, 0.0)]
    for r in radii:
        pts += [(r * math.cos(2 * math.pi * k / directions), r * math.sin(2 * math.pi * k / directions))
                for k in range(directions)]
    return torch.tensor(pts)


class LocalSampler(nn.Module):
    """Samples a reduced copy g of the decoder map on rings around each landmark estimate:
    (B, N, 2) crop units -> (B, N, (1 + 8 R) * SAMPLE_CHANNELS). Crop unit u (pixel centres at i / S)
    is grid_sample coordinate 2 u - 1 + 1 / S at any stride (align_corners=False); zeros outside."""

    def __init__(self, channels: int, stride: int, input_size: int):
        super().__init__()
        self.reduce = conv_bn_relu(channels, SAMPLE_CHANNELS)
        self.input_size = input_size
        self.register_buffer("offsets", ring_offsets() * stride / input_size, persistent=False)

    @property
    def out_dim(self) -> int:
        return self.offsets.shape[0] * SAMPLE_CHANNELS

    def reduced(self, f: torch.Tensor) -> torch.Tensor:
        return self.reduce(f)

    def forward(self, g: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        pts = coords[:, :, None, :] + self.offsets  # (B, N, K, 2)
        grid = 2.0 * pts - 1.0 + 1.0 / self.input_size
        out = F.grid_sample(g, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, N, K)
        return out.permute(0, 2, 3, 1).flatten(2)


class WholeCropNodes(nn.Module):
    """Ablation: the SCC's map-to-node on the decoder map pooled to WHOLE_GRID^2 cells:
    (B, C, H, W) -> (B, N, node_channels * WHOLE_GRID^2)."""

    def __init__(self, channels: int, num_nodes: int, node_channels: int):
        super().__init__()
        self.to_nodes = MapToNode(channels, num_nodes, node_channels)
        self.out_dim = node_channels * WHOLE_GRID * WHOLE_GRID

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.to_nodes(F.adaptive_avg_pool2d(f, WHOLE_GRID))


class GraphStage(nn.Module):
    """Sparse dynamic graph on node features: (B, N, D) -> offsets (B, N, 2), Cholesky parameters
    (B, N, 3) or None, adjacency (B, N, N). kind="fc" is the baseline on the same nodes (FCHead: dense
    layers over all nodes, no graph); its adjacency output is the fixed one."""

    def __init__(self, in_dim: int, channels: int, neighbours: torch.Tensor, hidden: int, blocks: int,
                 dynamic: bool, uncertainty: bool, kind: str = "graph", fc_hidden: int = 256,
                 fc_node_dim: int = 32):
        super().__init__()
        n = neighbours.shape[0]
        self.register_buffer("mask", neighbours.float().clone(), persistent=False)
        self.adjacency = DynamicAdjacency(channels, neighbours) if dynamic and kind == "graph" else None
        self.out_dim = 2 + (3 if uncertainty else 0)
        if kind == "graph":
            self.head = GraphHead(in_dim, hidden, blocks, n, self.out_dim)
            last, bias = self.head.out, self.head.out.bias.view(1, -1)
        else:
            self.head = FCHead(in_dim, fc_hidden, n, self.out_dim, fc_node_dim)
            last = self.head.body[-1]
            bias = last.bias.view(n, self.out_dim)
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)
        if uncertainty:
            with torch.no_grad():
                bias[:, 2] = LOG_SIGMA_INIT
                bias[:, 4] = LOG_SIGMA_INIT

    def forward(self, nodes: torch.Tensor, f: torch.Tensor):
        if self.adjacency is not None:
            adj = self.adjacency(f)
        else:
            adj = binary_adjacency(self.mask).expand(nodes.shape[0], -1, -1)
        out = self.head(nodes, adj)
        return out[..., :2], (out[..., 2:5] if self.out_dim > 2 else None), adj
