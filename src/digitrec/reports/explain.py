"""Gradient attributions of a checkpoint's digits, from Captum: integrated gradients and Grad-CAM.

Try: `digitrec explain digit.png --model src/digitrec/assets/default.safetensors --out why.png`

`gradient_attribution(checkpoint, method)` gives the `attribute` function that
`digitrec.recognition.explain.explain` takes: (N, 28, 28) images in [0, 1] and the digits they
are read as -> (N, 28, 28) attributions. Captum is the maintained attribution library for
PyTorch; torch-free models get occlusion instead (recognition/explain.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam  # type: ignore[import-untyped]

from ..constants import IMAGE_SIZE, MNIST_MEAN, MNIST_STD
from ..errors import DigitrecError
from ..nn.checkpoint import load_checkpoint
from ..recognition.explain import GRAD_CAM, GRADIENT_METHODS, INTEGRATED_GRADIENTS, Attribute

# Steps of the path integral from a blank page to the image: attributions add up to the score
# difference within a few percent at 32 on these networks, and one digit takes ~0.1 s.
IG_STEPS = 32

__all__ = ["gradient_attribution"]


def _last_feature_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last layer, in the order a forward pass runs them, whose output is still a feature
    map (B, C, H, W): Grad-CAM's layer. After the last convolution's batch norm and ReLU, where
    a channel's sign means what it says (the convolution's own output is shifted by batch norm)."""
    order: list[torch.nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda m, _a, out: order.append(m) if out.dim() == 4 else None)
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE))
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise DigitrecError(f"{type(model).__name__} has no feature maps for Grad-CAM; use integrated-gradients")
    return order[-1]


def gradient_attribution(checkpoint: str | Path, method: str = INTEGRATED_GRADIENTS) -> Attribute:
    """The attribution function of `method` on the checkpoint's model (on the CPU).

    Integrated gradients: pixel by pixel, how much the digit's logit owes to the ink, from a
    blank page (the baseline) to the image. Grad-CAM: where the last convolution's channels that
    raise the digit's logit are active, scaled up to 28x28 (coarser, one value per 4x4 pixels
    for three stages)."""
    if method not in GRADIENT_METHODS:
        raise DigitrecError(f"unknown attribution method {method!r}; choose one of: {', '.join(GRADIENT_METHODS)}")
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model.eval()
    norm = ckpt.metadata.get("normalization") or {}
    mean, std = float(norm.get("mean", MNIST_MEAN)), float(norm.get("std", MNIST_STD))
    for m in model.modules():  # Captum's hooks cannot follow a layer that overwrites its input
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    layer = _last_feature_layer(model) if method == GRAD_CAM else None

    def prepared(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)  # (N, 1, 28, 28)
        return ((x - mean) / std).requires_grad_(True)

    def attribute(images: np.ndarray, targets: np.ndarray) -> np.ndarray:
        x = prepared(images)
        target = torch.as_tensor(targets, dtype=torch.long)
        if method == INTEGRATED_GRADIENTS:
            baseline = prepared(np.zeros_like(images)).detach()
            maps = IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=IG_STEPS)
        else:
            cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
            maps = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
        return maps.detach().sum(1).float().numpy()  # (N, 28, 28): channels summed

    return attribute
