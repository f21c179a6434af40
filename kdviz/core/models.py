"""Model registry: MLPs, small CNNs and a small CIFAR ResNet built by name, with parameter and size accounting."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: an architecture from the registry and its size knobs (its meaning depends on arch).

    mlp: `depth` hidden layers of `width` units (Hinton's MNIST teacher is mlp 1200×2).
    cnn: `depth` conv blocks, `width` channels in the first, doubling each block.
    resnet: 3 stages of `depth` basic blocks, `width` channels in the first stage (He et al.'s CIFAR ResNets).
    """

    arch: str = "mlp"
    width: int = 100
    depth: int = 2
    dropout: float = 0.0

    def describe(self, input_shape=None, num_classes=None) -> str:
        if self.arch == "mlp" and input_shape is not None:
            sizes = [math.prod(input_shape)] + [self.width] * self.depth + [num_classes]
            return "MLP " + "-".join(str(s) for s in sizes)
        return f"{self.arch} width {self.width} depth {self.depth}"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    builder: Callable[..., nn.Module]


_REGISTRY: dict[str, ModelInfo] = {}


def register(name: str, description: str):
    def wrap(builder):
        _REGISTRY[name] = ModelInfo(name, description, builder)
        return builder

    return wrap


def list_models() -> list[ModelInfo]:
    return list(_REGISTRY.values())


def check_spec(spec: ModelSpec) -> ModelSpec:
    if spec.arch not in _REGISTRY:
        raise ValueError(f"unknown model {spec.arch!r}: choose one of {', '.join(_REGISTRY)}")
    if not (isinstance(spec.width, int) and 1 <= spec.width <= 8192):
        raise ValueError(f"model width must be an integer in [1, 8192], got {spec.width!r}")
    if not (isinstance(spec.depth, int) and 1 <= spec.depth <= 16):
        raise ValueError(f"model depth must be an integer in [1, 16], got {spec.depth!r}")
    if not (0.0 <= spec.dropout < 1.0):
        raise ValueError(f"dropout must be in [0, 1), got {spec.dropout!r}")
    return spec


def create_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Build an untrained model whose initial weights are drawn from `generator` (never from torch's global RNG,
    which other runs in the same process share). None: a generator seeded 0, for models whose weights are loaded
    right after (a cached teacher, a saved student)."""
    check_spec(spec)
    with torch.device("meta"):  # build without allocating or initialising: PyTorch's own init reads the global RNG
        model = _REGISTRY[spec.arch].builder(spec, tuple(input_shape), num_classes)
    model = model.to_empty(device="cpu")
    initialise(model, generator if generator is not None else torch.Generator().manual_seed(0))
    return model


@torch.no_grad()
def initialise(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default initialisation (`reset_parameters` of Linear, Conv2d and BatchNorm), drawn from generator.

    Linear and Conv2d: weights Kaiming-uniform with a = √5, biases uniform in ±1/√fan_in (torch.nn.Linear's own
    scheme); BatchNorm: weight 1, bias 0, fresh running statistics. Modules are visited in a fixed order, so the same
    generator state gives the same weights on every machine.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif any(True for _ in module.parameters(recurse=False)):
            raise TypeError(f"no seeded initialisation for {type(module).__name__}: add it to initialise()")
    return model


class SeededDropout(nn.Module):
    """Dropout whose masks come from an explicit generator (nn.Dropout draws from the global RNG, shared by every
    run in the process). The engine gives each model its own generator with seed_dropout()."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.generator is None:
            raise RuntimeError("SeededDropout needs a generator before training: call models.seed_dropout(model, g)")
        keep = torch.rand(x.shape, generator=self.generator, device=self.generator.device).to(x.device) >= self.p
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def seed_dropout(model: nn.Module, generator: torch.Generator | None) -> nn.Module:
    """Give every SeededDropout of model the generator (one stream per model: its masks follow from the seed)."""
    for module in model.modules():
        if isinstance(module, SeededDropout):
            module.generator = generator
    return model


def changes_in_training_mode(spec: ModelSpec) -> bool:
    """Whether a model of this spec computes other outputs in train() than in eval(): it has dropout or batch norm.
    Built on the meta device (no weights), at a small input shape: which layers a model has does not depend on it."""
    check_spec(spec)
    with torch.device("meta"):
        model = _REGISTRY[spec.arch].builder(spec, (1, 8, 8), 2)
    return any((isinstance(module, SeededDropout) and module.p > 0)
               or isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_bytes(model: nn.Module) -> int:
    """Bytes of the weights as stored (parameters and buffers), i.e. the checkpoint's payload."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


@register("mlp", "fully connected network (Hinton 2015's MNIST nets: 784-1200-1200-10 teacher, 784-800-800-10)")
def _mlp(spec: ModelSpec, input_shape, num_classes) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = math.prod(input_shape)
    for _ in range(spec.depth):
        layers += [nn.Linear(width_in, spec.width), nn.ReLU()]
        if spec.dropout:
            layers.append(SeededDropout(spec.dropout))
        width_in = spec.width
    layers.append(nn.Linear(width_in, num_classes))
    return nn.Sequential(*layers)


@register("cnn", "small convolutional network: conv-ReLU-pool blocks, then a linear classifier")
def _cnn(spec: ModelSpec, input_shape, num_classes) -> nn.Module:
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for block in range(spec.depth):
        out = spec.width * 2**block
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
        if min(height, width) >= 4:  # pool while the feature map is big enough (8×8 digits allow two pools)
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if spec.dropout:
        layers.append(SeededDropout(spec.dropout))
    layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register("resnet",
          "CIFAR-style ResNet (He et al. 2016): 3 stages of basic blocks; depth 1 is ResNet-8, 3 is ResNet-20")
def _resnet(spec: ModelSpec, input_shape, num_classes) -> nn.Module:
    channels = input_shape[0]
    layers: list[nn.Module] = [nn.Conv2d(channels, spec.width, 3, 1, 1, bias=False), nn.BatchNorm2d(spec.width),
                               nn.ReLU()]
    width_in = spec.width
    for stage in range(3):
        width_out = spec.width * 2**stage
        for block in range(spec.depth):
            layers.append(_BasicBlock(width_in, width_out, 2 if (stage > 0 and block == 0) else 1))
            width_in = width_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width_in, num_classes)]
    return nn.Sequential(*layers)
