"""Structure Coherence Component (SDFL): attention-guided multi-scale fusion, semantic-guided
CBAM, map-to-node, dynamic sparse adjacency and residual graph convolutions."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin, cout, k=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AttentionFusion(nn.Module):
    """Stage L guides stages L-1 and L-2: x_l' = x_l * sigmoid(FC(GAP(x_L))) * sigmoid(up(conv(x_L)));
    the guided maps are average-pooled to stage L's size and concatenated with it."""

    def __init__(self, in_channels: tuple[int, int, int], channels: int):
        super().__init__()
        self.proj = nn.ModuleList(conv_bn_relu(c, channels) for c in in_channels)
        self.channel_att = nn.ModuleList(nn.Linear(channels, channels) for _ in range(2))
        self.spatial_att = nn.ModuleList(nn.Conv2d(channels, 1, 1) for _ in range(2))
        self.merge = conv_bn_relu(3 * channels, channels)

    def forward(self, feats):
        p = [proj(f) for proj, f in zip(self.proj, feats)]
        top = p[2]
        pooled = top.mean((2, 3))
        guided = []
        for i in range(2):
            ca = torch.sigmoid(self.channel_att[i](pooled))[:, :, None, None]
            sa = torch.sigmoid(F.interpolate(self.spatial_att[i](top), size=p[i].shape[-2:], mode="bilinear",
                                             align_corners=False))
            g = p[i] * ca * sa + p[i]
            guided.append(F.adaptive_avg_pool2d(g, top.shape[-2:]))
        return self.merge(torch.cat(guided + [top], 1)), top


class SemanticCBAM(nn.Module):
    """CBAM whose channel attention also sees the deepest stage's pooled semantics:
    x * sigmoid(MLP([avg(x), max(x), avg(s)])), then x * sigmoid(conv7([mean_c x, max_c x]))."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * channels, channels // reduction), nn.ReLU(inplace=True),
                                 nn.Linear(channels // reduction, channels))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x, semantic):
        desc = torch.cat([x.mean((2, 3)), x.amax((2, 3)), semantic.mean((2, 3))], 1)
        x = x * torch.sigmoid(self.mlp(desc))[:, :, None, None]
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(s))


class MapToNode(nn.Module):
    """Two conv-BN-ReLU layers to N*n channels, reshaped to N nodes of n*H*W features."""

    def __init__(self, channels: int, num_nodes: int, node_channels: int):
        super().__init__()
        self.num_nodes = num_nodes
        self.body = nn.Sequential(conv_bn_relu(channels, channels, 3), conv_bn_relu(channels, num_nodes * node_channels))

    def forward(self, x):
        y = self.body(x)
        return y.reshape(y.shape[0], self.num_nodes, -1)


class DynamicAdjacency(nn.Module):
    """Per-image edge weights on the fixed sparse neighbourhood M:
    A = row_softmax(W) over the non-zeros of M, W from GAP(features) -> FC -> ReLU -> FC."""

    def __init__(self, channels: int, mask: torch.Tensor):
        super().__init__()
        # Derived from the model's `neighbours` buffer at build time, so not saved twice.
        self.register_buffer("mask", mask.float().clone(), persistent=False)
        rows, cols = torch.nonzero(mask > 0, as_tuple=True)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.fc = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, rows.numel()))
        nn.init.zeros_(self.fc[2].weight)  # starts uniform over each neighbourhood
        nn.init.zeros_(self.fc[2].bias)

    def forward(self, feats):
        b, n = feats.shape[0], self.mask.shape[0]
        w = self.fc(feats.mean((2, 3)))
        logits = torch.full((b, n * n), -1e4, dtype=w.dtype, device=w.device)
        logits = logits.index_copy(1, self.rows * n + self.cols, w).reshape(b, n, n)
        return torch.softmax(logits, -1) * self.mask


def binary_adjacency(mask: torch.Tensor) -> torch.Tensor:
    """Uniform weights over each neighbourhood: A = M / rowsum(M)."""
    return mask / mask.sum(-1, keepdim=True)


class GraphConv(nn.Module):
    """H' = A H W + b."""

    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Linear(cin, cout)

    def forward(self, h, adj):
        return self.linear(torch.matmul(adj, h))


class GraphBlock(nn.Module):
    """Residual graph block: H + LN(GC(ReLU(LN(GC(H))))), then ReLU."""

    def __init__(self, hidden):
        super().__init__()
        self.gc1, self.gc2 = GraphConv(hidden, hidden), GraphConv(hidden, hidden)
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def forward(self, h, adj):
        y = F.relu(self.ln1(self.gc1(h, adj)))
        return F.relu(h + self.ln2(self.gc2(y, adj)))


class GraphHead(nn.Module):
    """Node features -> graph conv -> residual graph blocks -> per-node outputs."""

    def __init__(self, in_dim, hidden, blocks, num_nodes, out_dim):
        super().__init__()
        self.inp = GraphConv(in_dim, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.node_embed = nn.Parameter(torch.zeros(num_nodes, hidden))
        self.blocks = nn.ModuleList(GraphBlock(hidden) for _ in range(blocks))
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, nodes, adj):
        h = F.relu(self.ln(self.inp(nodes, adj)) + self.node_embed)
        for blk in self.blocks:
            h = blk(h, adj)
        return self.out(h)


class FCHead(nn.Module):
    """Baseline, no graph: y = W2 ReLU(LN(W1 vec(H P))), H the (N, D) node features, P a (D, node_dim)
    projection shared by the nodes (the graph head's first layer is one too), so every output hears every
    node through the dense W1. The LayerNorm keeps W1's units alive: without it all of them went silent
    on the flagship's nodes and the baseline was a constant."""

    def __init__(self, in_dim, hidden, num_nodes, out_dim, node_dim: int):
        super().__init__()
        self.num_nodes, self.out_dim = num_nodes, out_dim
        self.project = nn.Linear(in_dim, node_dim)
        self.body = nn.Sequential(nn.Linear(node_dim * num_nodes, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, num_nodes * out_dim))

    def forward(self, nodes, adj=None):
        return self.body(self.project(nodes).flatten(1)).reshape(nodes.shape[0], self.num_nodes, self.out_dim)
