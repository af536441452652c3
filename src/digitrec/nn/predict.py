"""Batch prediction: uint8 images to the network's input, and a model over many images.

Try: `python -c "from digitrec.nn.predict import prepare_batch; import torch; print(prepare_batch(torch.zeros(2, 28, 28, dtype=torch.uint8)).shape)"`

Training, calibration, evaluation and export all call these two functions.
"""

from __future__ import annotations

import numpy as np
import torch

from ..constants import MNIST_MEAN, MNIST_STD, NUM_CLASSES
from ..errors import DigitrecError

EVAL_BATCH_SIZE = 256  # large enough to amortise a call, small enough to stay in cache


def prepare_batch(images: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, 28, 28) or float in [0, 1] -> normalised float32 (B, 1, 28, 28)."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    x = ((x - MNIST_MEAN) / MNIST_STD).unsqueeze(1)  # (B, 1, H, W)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    bf16: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits (N, classes) in float32 on the CPU for (N, 28, 28) images; the model is put in
    eval mode and left there."""
    images = torch.as_tensor(images)
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = prepare_batch(images[start : start + batch_size].to(device), channels_last=channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, NUM_CLASSES)


def last_linear(model: torch.nn.Module) -> torch.nn.Linear:
    """The model's last linear layer: its input is the penultimate features a profile adapts to."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise DigitrecError(f"{type(model).__name__} has no linear layer whose input could serve as features")
    return linears[-1]


class WithFeatures(torch.nn.Module):
    """`model` returning (logits (B, classes), features (B, D), conv_1 (B, C1, H1, W1), ...): D is
    the input width of its last linear layer (what profiles adapt to), and conv_k the output of
    its k-th convolution (what `explain` shows). Any registered model works: forward hooks take
    them, so the model itself is unchanged."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._seen: dict[str, torch.Tensor] = {}  # the last input of the last linear layer
        self._convs: list[torch.Tensor] = []
        last_linear(model).register_forward_pre_hook(lambda _m, args: self._seen.update(x=args[0]))
        self.conv_count = 0
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda _m, _args, out: self._convs.append(out))
                self.conv_count += 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self._convs.clear()
        logits = self.model(x)
        convs, self._convs = self._convs, []
        return (logits, self._seen.pop("x").flatten(1), *convs)


def accuracy(logits: torch.Tensor, labels: torch.Tensor | np.ndarray) -> float:
    """Share of digits read right: the most probable of the ten digits (never "not one digit")."""
    return (logits[:, :NUM_CLASSES].argmax(1) == torch.as_tensor(labels).long()).float().mean().item()
