"""The model registry: `create_model(name)` builds ML-ResNet, the paper's baselines and a small ResNet-18.

Every model maps a (N, 1, 96, 96) float batch of pixel/255 to (N, 2K) targets normalised as (xy - 48) / 48;
with attribute heads, `forward_all` also gives each attribute's logits from the same shared features.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


ARCH_OPTIONS: dict[str, dict[str, object]] = {}  # {architecture: {option: default}}, what --arch-option takes


def register(name: str, model_class: type | None = None, fixed: tuple[str, ...] = (), **defaults):
    """Register a model builder; `model_class`'s keyword arguments, less `fixed` (set by the builder), are the
    architecture's options, with the class's defaults or the builder's own `defaults`."""

    def deco(fn):
        MODELS[name] = fn
        if model_class is not None:
            params = inspect.signature(model_class).parameters.values()
            ARCH_OPTIONS[name] = {p.name: defaults.get(p.name, p.default) for p in params
                                  if p.name not in ("num_keypoints", *fixed) and p.default is not p.empty}
        return fn

    return deco


def describe_options(name: str) -> str:
    """`fc (default 500), dropout (default 0.5), ...`: the options architecture `name` takes."""
    opts = ARCH_OPTIONS.get(name, {})
    return ", ".join(f"{k} (default {','.join(map(str, v)) if isinstance(v, tuple) else v})"
                     for k, v in opts.items()) or "none"


def create_model(name: str, num_keypoints: int = 15, attributes: dict[str, int] | None = None,
                 **kwargs) -> KeypointModel:
    """Build a registered model by name, with a linear softmax head per attribute ({name: classes});
    ValueError lists the known names."""
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(MODELS)}")
    unknown = [k for k in kwargs if name in ARCH_OPTIONS and k not in ARCH_OPTIONS[name]]
    if unknown:
        raise ValueError(f"{name}: unexpected keyword {', '.join(unknown)}; its options: {describe_options(name)}")
    try:
        model = MODELS[name](num_keypoints=num_keypoints, **kwargs)
    except TypeError as err:  # an option's value of the wrong kind (an unknown option is refused above)
        raise ValueError(f"{name}: {err}") from None
    for attr, classes in (attributes or {}).items():
        head = nn.Linear(model.feature_dim, int(classes))
        init_normal(head)
        model.attribute_heads[attr] = head
    return model


def parse_arch_options(items: list[str]) -> dict:
    """`KEY=VALUE` strings -> model keyword arguments: `fc=1000`, `dropout=0.3`, `widths=64,128,256`.

    Values are ints, floats, true/false, or comma-separated lists of those (kept as tuples).
    """

    def value(text: str):
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        for kind in (int, float):
            try:
                return kind(low)
            except ValueError:
                pass
        raise ValueError(f"{text!r} is not a number or true/false")

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ValueError(f"{item!r}: expected KEY=VALUE, e.g. fc=1000")
        out[key.strip()] = tuple(value(v) for v in raw.split(",")) if "," in raw else value(raw)
    return out


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """The paper's initialisation: conv and linear weights N(0, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class KeypointModel(nn.Module):
    """Shared features -> keypoint regression, plus optional attribute heads on the same features.

    Subclasses set `feature_dim` and implement `features` and `regress`; `forward` gives keypoints only, so
    every model (with heads or not) keeps the (N, 2K) contract. An empty head dict adds no weights.
    """

    feature_dim: int

    def __init__(self) -> None:
        super().__init__()
        self.attribute_heads = nn.ModuleDict()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def regress(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._regress_fp32(self.features(x))

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(N, 2K) keypoint targets and {attribute: (N, classes) logits} from one pass over the trunk."""
        f = self.features(x)
        return self._regress_fp32(f), {name: head(f) for name, head in self.attribute_heads.items()}

    def _regress_fp32(self, features: torch.Tensor) -> torch.Tensor:
        """The regression head, in float32 under autocast: a bf16 output would quantise targets (|t| < 1,
        8 significant bits) by 0.1-0.2 px at the 48 px scale, in the loss and in the RMSE that picks best.pt."""
        device = features.device.type
        if not torch.is_autocast_enabled(device):
            return self.regress(features)
        with torch.autocast(device, enabled=False):
            return self.regress(features.float())


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


class KeypointCNN(KeypointModel):
    """11x11 conv 32 + BN + ReLU + 2x2 max-pool, then blocks 32->64->128 (12x12), FC 500, dropout, 2K outputs.

    `stem_stride` 2 runs the 11x11 conv at stride 2 (same field of view, a quarter of the positions), so the
    blocks run at 24 and 12 px and the FC reads 6x6: about a quarter of the multiply-adds."""

    def __init__(self, num_keypoints: int = 15, shortcut: bool = True, fc: int = 500, dropout: float = 0.5,
                 widths: tuple[int, ...] = (64, 128), stem_stride: int = 1) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise TypeError("stem_stride must be 1 or 2")
        self.feature_dim = fc
        self.stem = nn.Sequential(
            nn.Conv2d(1, 32, 11, stride=stem_stride, padding=5, bias=False), nn.BatchNorm2d(32),
            nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        blocks, cin = [], 32
        for w in widths:
            blocks.append(ResidualBlock(cin, w, shortcut))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        side = 48 // stem_stride // (2 ** len(widths))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * side * side, fc), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc, 2 * num_keypoints),
        )
        init_normal(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The FC-500 layer after ReLU and dropout (the shared representation)."""
        return self.head[:-1](self.blocks(self.stem(x)))

    def regress(self, features: torch.Tensor) -> torch.Tensor:
        return self.head[-1](features)


class MLP(KeypointModel):
    """The classic tutorial baseline: 9216 inputs, one hidden layer of 100 tanh units, 2K outputs."""

    def __init__(self, num_keypoints: int = 15, hidden: int = 100) -> None:
        super().__init__()
        self.feature_dim = hidden
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(96 * 96, hidden), nn.Tanh(), nn.Linear(hidden, 2 * num_keypoints)
        )
        init_normal(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[:-1](x)

    def regress(self, features: torch.Tensor) -> torch.Tensor:
        return self.net[-1](features)


class BasicBlock(nn.Module):
    """ResNet's basic block: 3x3 conv (stride s) + BN + ReLU, 3x3 conv + BN, identity or 1x1 shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(KeypointModel):
    """ResNet-18 layout (BasicBlocks [2, 2, 2, 2]) for 96x96 grey faces, trained from scratch.

    Stem: 5x5 conv stride 2 (96 -> 48) + BN + ReLU, no max-pool; stages of `widths` channels at 48, 24, 12,
    6 px; global average pool, dropout, linear 2K outputs. Half of ImageNet ResNet-18's widths by default.
    """

    def __init__(self, num_keypoints: int = 15, widths: tuple[int, ...] = (32, 64, 128, 256),
                 blocks: tuple[int, ...] = (2, 2, 2, 2), dropout: float = 0.2) -> None:
        super().__init__()
        self.feature_dim = widths[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
        self.stages = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.out = nn.Linear(cin, 2 * num_keypoints)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.stages.modules():  # zero-init each block's last BN: blocks start as identities
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
        nn.init.normal_(self.out.weight, 0.0, 0.02)
        nn.init.zeros_(self.out.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))

    def regress(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(features)


@register("mlresnet", KeypointCNN, fixed=("shortcut",))
def mlresnet(num_keypoints: int = 15, **kw) -> nn.Module:
    """ML-ResNet exactly as the paper (Wu et al.): residual blocks 32->64->128."""
    return KeypointCNN(num_keypoints, shortcut=True, **kw)


@register("mlresnet_fast", KeypointCNN, fixed=("shortcut",), stem_stride=2)
def mlresnet_fast(num_keypoints: int = 15, **kw) -> nn.Module:
    """The efficient ML-ResNet variant: the paper's net with a strided stem (blocks at 24 and 12 px, FC from 6x6),
    about 4x fewer multiply-adds."""
    kw.setdefault("stem_stride", 2)
    return KeypointCNN(num_keypoints, shortcut=True, **kw)


@register("cnn", KeypointCNN, fixed=("shortcut",))
def cnn(num_keypoints: int = 15, **kw) -> nn.Module:
    """The paper's 6-layer CNN baseline: the same trunk without shortcuts."""
    return KeypointCNN(num_keypoints, shortcut=False, **kw)


@register("mlp", MLP)
def mlp(num_keypoints: int = 15, **kw) -> nn.Module:
    return MLP(num_keypoints, **kw)


@register("resnet18", ResNet18)
def resnet18(num_keypoints: int = 15, **kw) -> nn.Module:
    """A ResNet-18-style trunk from scratch (no pretrained weights), for comparison with ML-ResNet."""
    return ResNet18(num_keypoints, **kw)
