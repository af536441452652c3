"""Batched augmentation on tensors: random affine (rotation, scale, shift, shear) and elastic
distortion (Simard et al. 2003), in one resampling pass per batch; never per-sample Python.

Try: `python -c "import torch; from digitrec.augment import augment_batch; from digitrec.presets import AugmentConfig; print(augment_batch(torch.rand(4, 28, 28), AugmentConfig(rotate=10)).shape)"`.

Randomness comes from torch's global generator, which training seeds per epoch, so augmented runs
are reproducible and resumable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .presets import AugmentConfig

SIGMA_WIDTH = 3  # the Gaussian smoothing kernel reaches this many sigmas each side


def _uniform(n: int, bound: float, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, device=device) * 2 - 1) * bound


def affine_matrices(n: int, cfg: AugmentConfig, size: int, device: torch.device) -> torch.Tensor:
    """(n, 2, 3) matrices for F.affine_grid: output coordinates -> input coordinates, in the
    normalised [-1, 1] space of a size x size image."""
    angle = torch.deg2rad(_uniform(n, cfg.rotate, device))
    shear = torch.deg2rad(_uniform(n, cfg.shear, device))
    scale = 1 + _uniform(n, cfg.scale, device)
    shift = _uniform(2 * n, cfg.shift * 2 / size, device).view(n, 2)  # pixels -> normalised units
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # Inverse mapping: sampling at A·x shows the digit transformed by A⁻¹; the ranges are symmetric,
    # so the distribution is the same either way.
    a = torch.stack([torch.stack([cos, -sin + tan * cos], 1), torch.stack([sin, cos + tan * sin], 1)], 1)
    a = a / scale.view(n, 1, 1)
    return torch.cat([a, shift.unsqueeze(2)], 2)


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(SIGMA_WIDTH * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def elastic_field(n: int, size: int, alpha: float, sigma: float, device: torch.device) -> torch.Tensor:
    """(n, size, size, 2) smooth random displacements in normalised units: uniform noise blurred
    by a Gaussian of `sigma` pixels, scaled to `alpha` pixels."""
    field = torch.rand(n * 2, 1, size, size, device=device) * 2 - 1
    k = _gaussian_kernel(sigma, device)
    pad = len(k) // 2
    field = F.conv2d(F.pad(field, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))  # blur rows
    field = F.conv2d(F.pad(field, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))  # blur columns
    return (field * alpha * 2 / size).view(n, 2, size, size).permute(0, 2, 3, 1)


def augment_batch(images: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """(B, H, W) float images in [0, 1], ink bright on a zero background -> distorted copies."""
    n, size = images.shape[0], images.shape[-1]
    device = images.device
    x = images.unsqueeze(1)  # (B, 1, H, W)
    if cfg.rotate or cfg.scale or cfg.shift or cfg.shear or cfg.elastic_alpha:
        grid = F.affine_grid(affine_matrices(n, cfg, size, device), list(x.shape), align_corners=False)
        if cfg.elastic_alpha:
            grid = grid + elastic_field(n, size, cfg.elastic_alpha, cfg.elastic_sigma, device)
        moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        keep = (torch.rand(n, 1, 1, 1, device=device) >= cfg.p)  # these stay clean
        x = torch.where(keep, x, moved)
    if cfg.noise:
        x = (x + torch.randn_like(x) * cfg.noise).clamp_(0, 1)
    return x.squeeze(1)


def affine_view(images: torch.Tensor, *, rotate: float = 0.0, scale: float = 1.0,
                shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """One fixed affine transform of every image: (B, H, W) float in [0, 1] -> (B, H, W).
    `rotate` in degrees (counter-clockwise), `scale` > 1 enlarges, `shift` (x, y) in pixels
    (right, down). Test-time augmentation averages the predictions over a few such views."""
    n, size = images.shape[0], images.shape[-1]
    angle = math.radians(rotate)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    # Output -> input mapping, as F.affine_grid wants: the inverse of the transform shown.
    theta = torch.tensor([[cos, -sin, -shift[0] * 2 / size], [sin, cos, -shift[1] * 2 / size]],
                         dtype=images.dtype, device=images.device).expand(n, 2, 3)
    x = images.unsqueeze(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(1)
