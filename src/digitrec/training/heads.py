"""Adding an output to a trained model: one new row of its last linear layer, fitted on the frozen
features, so that every output it had keeps exactly the logits it gave.

Try: `digitrec add-not-a-digit CKPT` (the "not one digit" output) or `digitrec add-non-digit CKPT`
(the "not a digit" output); both call `append_output`.

Only the new row and its bias are fitted, with cross-entropy over all the outputs: the old rows
are fixed, so the digits read exactly as before and only the new output's share changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from ..data.mnist import holdout_split, load_mnist
from ..metadata import holdout_of
from ..nn.checkpoint import load_checkpoint, save_tensors
from ..nn.models.registry import create_model, model_config
from ..nn.predict import prepare_batch
from .calibration import Calibration, calibrate_checkpoint, calibration_digits

HEAD_EPOCHS = 20
HEAD_LR = 0.01
HEAD_BATCH = 1024
HEAD_SMOOTHING = 0.1  # label smoothing, as the presets train with


@dataclass(frozen=True)
class AppendedOutput:
    """The model with its new output, and the logits of all its outputs on what it was fitted on."""

    model: nn.Module  # in eval mode
    logits: torch.Tensor  # (N, outputs + 1)


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the model's last nn.Linear: the layer that gives the logits."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def frozen_features(model: nn.Module, images: np.ndarray, batch: int = HEAD_BATCH) -> torch.Tensor:
    """What the last linear layer sees, (N, its inputs) float32, for uint8 (N, 28, 28) images."""
    _, head = last_linear(model)
    features: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: features.append(inputs[0].detach().float()))
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                model(prepare_batch(torch.from_numpy(images[start : start + batch])))
    finally:
        hook.remove()
    return torch.cat(features)


def append_output(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    epochs: int = HEAD_EPOCHS,
    smoothing: float = HEAD_SMOOTHING,
) -> AppendedOutput:
    """`model` with one more output, whose row is fitted on uint8 (N, 28, 28) `images` with
    `labels` in 0..outputs (the new output's index is the old output count).

    Example: a ten-digit model and `labels` holding 10 for pieces that are not one digit gives
    an 11-output model whose first ten logits are the old ones (to float rounding: a wider
    matrix product may sum in another order)."""
    return fit_output(
        model, images, labels, index=last_linear(model)[1].out_features, seed=seed, epochs=epochs, smoothing=smoothing
    )


def fit_output(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    index: int,
    seed: int,
    epochs: int = HEAD_EPOCHS,
    smoothing: float = HEAD_SMOOTHING,
) -> AppendedOutput:
    """`model` with the row `index` of its last layer fitted anew on the frozen features of
    uint8 (N, 28, 28) `images`, with `labels` in 0..outputs-1; `index` equal to the output count
    appends a new row. Every other row keeps its weights, so every other logit stays as it was.

    Example: a model trained with "not a digit" as its 12th output but no pieces for its 11th
    gets an 11th output that says "not one digit", and reads digits exactly as before."""
    head_name, head = last_linear(model)
    if not 0 <= index <= head.out_features:
        raise ValueError(f"output {index} is neither one of the model's {head.out_features} nor the next one")
    outputs = max(head.out_features, index + 1)
    f = frozen_features(model, images)  # (N, the head's inputs)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    kept = [i for i in range(head.out_features) if i != index]
    weight, bias0 = head.weight.detach()[kept], head.bias.detach()[kept]
    fixed = f @ weight.T + bias0  # (N, outputs - 1): unchanged
    row = torch.zeros(f.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)

    def with_row(fixed_rows: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return torch.cat([fixed_rows[:, :index], new[:, None], fixed_rows[:, index:]], 1)

    optimizer = torch.optim.Adam([row, bias], lr=HEAD_LR)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=generator).split(HEAD_BATCH):
            logits = with_row(fixed[idx], f[idx] @ row + bias)
            loss = nn.functional.cross_entropy(logits, y[idx], label_smoothing=smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        logits = with_row(fixed, f @ row + bias)
        new_weight = with_row(weight.T, row.detach()).T  # (outputs, inputs)
        new_bias = with_row(bias0[None], bias.detach())[0]
    new = create_model(str(model.model_name), **{**model_config(model), "num_classes": outputs})
    state = model.state_dict()
    state[f"{head_name}.weight"] = new_weight.contiguous()
    state[f"{head_name}.bias"] = new_bias.contiguous()
    new.load_state_dict(state)
    return AppendedOutput(new.eval(), logits)


class Fit(Protocol):
    """What fitting a new output did, as saved in the checkpoint's metadata."""

    def to_dict(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=Fit)


@dataclass(frozen=True)
class HeadReport(Generic[F]):
    """What adding an output to a checkpoint did: the fit, and the calibration fitted again after it."""

    fit: F
    calibration: Calibration

    def to_dict(self) -> dict[str, Any]:
        """The JSON the CLI's --json prints: the fit's keys and "calibration"."""
        return {**self.fit.to_dict(), "calibration": self.calibration.to_dict()}


def add_output_to_checkpoint(
    path: str | Path,
    out: str | Path | None,
    key: str,
    add: Callable[[nn.Module, np.ndarray, np.ndarray], tuple[nn.Module, F]],
    *,
    data_dir: Path | None = None,
    progress: bool = True,
) -> HeadReport[F]:
    """`add(model, digits, labels)` for the checkpoint at `path`, on the MNIST training digits
    its run trained on (not its held-out ones); the new model is saved to `out` (default: in
    place) with the fit's report under metadata `key`, and calibrated again."""
    path = Path(path)
    out = Path(out) if out is not None else path
    ckpt = load_checkpoint(path)
    holdout = holdout_of(ckpt.metadata)
    train = load_mnist("train", data_dir, progress=progress)
    kept = holdout_split(len(train.images), holdout)[0] if holdout else np.arange(len(train.images))
    model, fit = add(ckpt.model, train.images[kept], train.labels[kept])
    metadata = {k: v for k, v in ckpt.metadata.items() if k != "calibration"}  # fitted again below
    metadata["model"] = {**metadata["model"], "config": model_config(model)}
    metadata[key] = fit.to_dict()
    save_tensors(out, model.state_dict(), metadata)
    calibration = calibrate_checkpoint(out, *calibration_digits(train.images, train.labels, holdout))
    return HeadReport(fit, calibration)
