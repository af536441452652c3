"""The registered architectures: pure nn.Modules that take (B, 1, 28, 28) and return logits.

Try: `python -c "from digitrec.nn.models import create_model; m = create_model('default'); print(m)"`.

Flatten sizes are computed from the input size, never typed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from ...constants import IMAGE_SIZE, NUM_CLASSES, OUTPUT_COUNTS
from ...errors import DigitrecError
from .registry import Bound, register_model

# Bounds on configs read from files (checkpoint metadata), so a hostile or damaged file cannot ask
# for a network of gigabytes. With all three at their maximum DigitNet has about 150 MB of weights.
MAX_WIDTH = 256  # channels per stage: twice the shipped model's widest stage
MAX_STAGES = 4  # each stage halves the image: 28 px is 1 px after four
MAX_DEPTH = 3  # convolutions per stage; `best` uses 2
MAX_KERNEL = 7  # side of a convolution's kernel; past 7 it covers most of a 28 px digit
MAX_HIDDEN = 4096  # torch-example's hidden units: 32x its 128, about 150 MB of weights
CLASSES = Bound(choices=OUTPUT_COUNTS)  # digits, plus "not one digit", plus "not a digit"


def _flat_size(features: nn.Module, channels: int = 1, size: int = IMAGE_SIZE) -> int:
    """Number of features `features` produces for one image, found by running it once."""
    with torch.no_grad():
        return features(torch.zeros(1, channels, size, size)).numel()


@dataclass(frozen=True)
class SeedCNNConfig:
    num_classes: int = NUM_CLASSES
    BOUNDS: ClassVar[dict[str, Bound]] = {"num_classes": CLASSES}


@register_model("seed-cnn", SeedCNNConfig, "the seed's SimpleCNN: two 3x3 convs, three FC layers")
class SeedCNN(nn.Module):
    def __init__(self, config: SeedCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 6, 13, 13)
            nn.Conv2d(6, 16, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_size(self.features), 120),
            nn.ReLU(),  # 400 -> 120
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, classes)
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class LeNet5Config:
    num_classes: int = NUM_CLASSES
    BOUNDS: ClassVar[dict[str, Bound]] = {"num_classes": CLASSES}


@register_model("lenet5", LeNet5Config, "LeCun et al. 1998, 28x28 input padded to the paper's 32x32")
class LeNet5(nn.Module):
    """LeNet-5 with the paper's tanh and average-pool subsampling. Differences from 1998: C3 is
    fully connected to S2 (the paper's sparse table was a compute saving), and the RBF output
    layer is a linear layer, so the model returns logits like every other model here."""

    def __init__(self, config: LeNet5Config) -> None:
        super().__init__()
        self.config = config
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.Tanh(),
            nn.AvgPool2d(2),  # C1, S2: (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),  # C3, S4: (B, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_size(self.features), 120),
            nn.Tanh(),  # C5
            nn.Linear(120, 84),
            nn.Tanh(),  # F6
            nn.Linear(84, config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class TorchExampleConfig:
    num_classes: int = NUM_CLASSES
    hidden: int = 128
    BOUNDS: ClassVar[dict[str, Bound]] = {"num_classes": CLASSES, "hidden": Bound(1, MAX_HIDDEN)}


@register_model("torch-example", TorchExampleConfig, "the PyTorch examples' MNIST network (benchmark reference)")
class TorchExample(nn.Module):
    def __init__(self, config: TorchExampleConfig) -> None:
        super().__init__()
        self.config = config
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),  # (B, 32, 26, 26)
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),  # (B, 64, 24, 24)
            nn.MaxPool2d(2),
            nn.Dropout(0.25),  # (B, 64, 12, 12)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_size(self.features), config.hidden),
            nn.ReLU(),  # 9216 -> 128
            nn.Dropout(0.5),
            nn.Linear(config.hidden, config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class DigitNetConfig:
    num_classes: int = NUM_CLASSES
    widths: tuple[int, ...] = (32, 64, 128)  # channels of each stage; each stage halves the size
    depth: int = 1  # convolutions per stage; the extra ones run at full resolution, before the pool
    kernel: int = 3  # side of every convolution's kernel (odd: padding keeps the size)
    dropout: float = 0.0
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_classes": CLASSES,
        "widths": Bound(1, MAX_WIDTH, max_items=MAX_STAGES),
        "depth": Bound(1, MAX_DEPTH),
        "kernel": Bound(1, MAX_KERNEL),  # odd: DigitNet says so itself
        "dropout": Bound(0, 1),
    }


@register_model(
    "default", DigitNetConfig, "the project's network: 3 conv-BN stages, chosen for accuracy per CPU-second"
)
class DigitNet(nn.Module):
    """Stages of conv (3x3 unless `kernel` says otherwise), 2x2 max-pool, batch norm and ReLU,
    then one linear layer. With `depth` > 1 a stage starts with (depth - 1) conv-BN-ReLU blocks
    at full resolution.

    Pooling straight after the convolution, before batch norm and ReLU, makes those two run on a
    quarter of the values: on a CPU they cost as much as the convolutions themselves. (Max-pool
    commutes with ReLU, and with batch norm for a positive scale, so little is lost.)"""

    def __init__(self, config: DigitNetConfig) -> None:
        super().__init__()
        self.config = config
        if config.kernel < 1 or config.kernel % 2 == 0:
            raise DigitrecError(f"kernel must be odd and positive, got {config.kernel}")
        # No conv bias: batch norm's shift does that job. The padding keeps H and W.
        conv = partial(nn.Conv2d, kernel_size=config.kernel, padding=config.kernel // 2, bias=False)
        layers: list[nn.Module] = []
        cin = 1
        for width in config.widths:
            for _ in range(config.depth - 1):
                layers += [conv(cin, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                cin = width
            layers += [
                conv(cin, width),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]  # halves H and W
            cin = width
        self.features = nn.Sequential(*layers)  # (B, widths[-1], 3, 3) for three stages
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(_flat_size(self.features), config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
