"""The model registry: `create_model(name)` builds ML-ResNet and the paper's baselines.

Every model maps a (N, 1, 96, 96) float batch of pixel/255 to (N, 2K) targets normalised as (xy - 48) / 48.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn

    return deco


def create_model(name: str, num_keypoints: int = 15, **kwargs) -> nn.Module:
    """Build a registered model by name; ValueError lists the known names."""
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](num_keypoints=num_keypoints, **kwargs)


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """The paper's initialisation: conv and linear weights N(0, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with BN; the second is strided to halve the size; 1x1 strided shortcut."""

    def __init__(self, cin: int, cout: int, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)) if shortcut else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return torch.relu(y)


class KeypointCNN(nn.Module):
    """11x11 conv 32 + BN + ReLU + 2x2 max-pool, then blocks 32->64->128 (12x12), FC 500, dropout, 2K outputs."""

    def __init__(self, num_keypoints: int = 15, shortcut: bool = True, fc: int = 500, dropout: float = 0.5,
                 widths: tuple[int, ...] = (64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 32, 11, padding=5, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        blocks, cin = [], 32
        for w in widths:
            blocks.append(ResidualBlock(cin, w, shortcut))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        side = 48 // (2 ** len(widths))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * side * side, fc), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc, 2 * num_keypoints),
        )
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class MLP(nn.Module):
    """The classic tutorial baseline: 9216 inputs, one hidden layer of 100 tanh units, 2K outputs."""

    def __init__(self, num_keypoints: int = 15, hidden: int = 100) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(96 * 96, hidden), nn.Tanh(), nn.Linear(hidden, 2 * num_keypoints))
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register("mlresnet")
def mlresnet(num_keypoints: int = 15, **kw) -> nn.Module:
    """ML-ResNet exactly as the paper (Wu et al.): residual blocks 32->64->128."""
    return KeypointCNN(num_keypoints, shortcut=True, **kw)


@register("cnn")
def cnn(num_keypoints: int = 15, **kw) -> nn.Module:
    """The paper's 6-layer CNN baseline: the same trunk without shortcuts."""
    return KeypointCNN(num_keypoints, shortcut=False, **kw)


@register("mlp")
def mlp(num_keypoints: int = 15, **kw) -> nn.Module:
    return MLP(num_keypoints, **kw)
