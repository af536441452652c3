"""Batched augmentation on tensors: random affine (rotation, scale, shift, shear) and elastic
distortion (Simard et al. 2003), in one resampling pass per batch; never per-sample Python.

Try: `python -c "import torch; from digitrec.nn.augment import augment_batch; from digitrec.nn.augment_config import AugmentConfig; print(augment_batch(torch.rand(4, 28, 28), AugmentConfig(rotate=10)).shape)"`.

Randomness comes from torch's global generator, which training seeds per epoch, so augmented runs
are reproducible and resumable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .augment_config import AugmentConfig

SIGMA_WIDTH = 3  # the Gaussian smoothing kernel reaches this many sigmas each side
THIN_KEEPS = 0.3  # a digit is thinned only if it keeps this share of its ink
MIN_BLUR = 0.5  # blur sigmas are drawn from MIN_BLUR..AugmentConfig.blur pixels
LINE_WIDTH = (1.0, 2.5)  # stray strokes are this many pixels wide
MIN_LINE = 0.3  # ... and at least this bright
MAX_LINE_PIECES = 3  # a stray stroke has 1 to this many straight pieces (a zigzag)
MIN_BAND, MAX_BAND = 2, 9  # width in pixels of an inverted band along a side
FOG_GRID = 4  # the fog field is random on this coarse grid, smoothly upsampled


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
        keep = torch.rand(n, 1, 1, 1, device=device) >= cfg.p  # these stay clean
        x = torch.where(keep, x, moved)
    if cfg.corrupt_p:
        x = degrade(x, cfg)
    if cfg.noise:
        x = (x + torch.randn_like(x) * cfg.noise).clamp_(0, 1)
    return x.squeeze(1)


def _chosen(n: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, device=device) < p  # (n, 1, 1, 1): which images to change


def blur_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) blurred by a Gaussian of per-image `sigma` (B,) pixels, in one grouped conv."""
    n = x.shape[0]
    radius = max(1, math.ceil(SIGMA_WIDTH * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma.clamp_min(1e-3).view(n, 1)) ** 2)  # (B, taps)
    k = k / k.sum(1, keepdim=True)
    x = x.transpose(0, 1)  # (1, B, H, W): one group per image
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0)), k.view(n, 1, 1, -1), groups=n)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius)), k.view(n, 1, -1, 1), groups=n)
    return x.transpose(0, 1)


def line_strokes(n: int, size: int, width: float, device: torch.device, pieces: int = 1) -> torch.Tensor:
    """(n, 1, size, size) in [0, 1]: one random stroke of `pieces` straight segments per image,
    anti-aliased, drawn from each pixel's distance to the nearest segment."""
    points = torch.rand(n, pieces + 1, 2, device=device) * size  # (n, corner, (x, y))
    coords = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    pix = torch.stack([xx, yy], -1).unsqueeze(0)  # (1, H, W, 2)
    dist = torch.full((n, size, size), float("inf"), device=device)
    for i in range(pieces):
        a, b = points[:, i].view(n, 1, 1, 2), points[:, i + 1].view(n, 1, 1, 2)
        ab = b - a
        t = (((pix - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)
        dist = torch.minimum(dist, (pix - (a + t.unsqueeze(-1) * ab)).norm(dim=-1))
    return (1 - (dist - width / 2)).clamp(0, 1).unsqueeze(1)


def side_bands(n: int, size: int, device: torch.device) -> torch.Tensor:
    """(n, 1, size, size) bool: a band of random width along a random side of each image."""
    coords = torch.arange(size, device=device)
    width = torch.randint(MIN_BAND, MAX_BAND + 1, (n, 1), device=device)
    side = torch.randint(0, 4, (n,), device=device)  # left, right, top, bottom
    from_start = coords.view(1, -1) < width  # (n, size)
    from_end = coords.view(1, -1) >= size - width
    band = torch.where((side % 2 == 0).view(n, 1), from_start, from_end)
    rows = band.view(n, size, 1).expand(n, size, size)
    cols = band.view(n, 1, size).expand(n, size, size)
    return torch.where((side < 2).view(n, 1, 1), cols, rows).unsqueeze(1)


def degrade(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Batched degradations of (B, 1, H, W) images in [0, 1]; see AugmentConfig."""
    n, size, device, p = x.shape[0], x.shape[-1], x.device, cfg.corrupt_p
    if cfg.thickness:
        thick, thin = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
        # Thinning erases a 1-2 pixel stroke: thin only digits that keep most of their ink.
        keeps_ink = thin.sum((2, 3), keepdim=True) > THIN_KEEPS * x.sum((2, 3), keepdim=True)
        which = torch.rand(n, 1, 1, 1, device=device)
        x = torch.where(which < p / 2, thick, torch.where((which < p) & keeps_ink, thin, x))
    if cfg.blur:
        sigma = MIN_BLUR + torch.rand(n, device=device) * max(0.0, cfg.blur - MIN_BLUR)
        x = torch.where(_chosen(n, p, device), blur_batch(x, sigma), x)
    if cfg.lines:
        width = LINE_WIDTH[0] + torch.rand(1).item() * (LINE_WIDTH[1] - LINE_WIDTH[0])
        pieces = int(torch.randint(1, MAX_LINE_PIECES + 1, (1,)).item())
        strokes = line_strokes(n, size, width, device, pieces)
        strokes = strokes * (MIN_LINE + torch.rand(n, 1, 1, 1, device=device) * max(0.0, cfg.lines - MIN_LINE))
        x = torch.where(_chosen(n, p, device), torch.maximum(x, strokes), x)
    if cfg.outline:
        ring = (F.max_pool2d(x, 3, 1, 1) - x).clamp(0, 1)  # the outer edge of every stroke
        x = torch.where(_chosen(n, p, device), ring / ring.amax((2, 3), keepdim=True).clamp_min(1e-6), x)
    if cfg.invert:
        x = torch.where(_chosen(n, p, device) & side_bands(n, size, device), 1 - x, x)
    if cfg.fog:
        # A smooth field: coarse noise upsampled, like uneven light or MNIST-C's fog.
        coarse = torch.rand(n, 1, FOG_GRID, FOG_GRID, device=device)
        field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        amp = torch.rand(n, 1, 1, 1, device=device) * cfg.fog
        x = torch.where(_chosen(n, p, device), (x + amp * field).clamp(0, 1), x)
    if cfg.impulse:
        share = torch.rand(n, 1, 1, 1, device=device) * cfg.impulse
        r = torch.rand_like(x)
        salted = torch.where(r < share / 2, torch.zeros_like(x), torch.where(r < share, torch.ones_like(x), x))
        x = torch.where(_chosen(n, p, device), salted, x)
    return x


def affine_view(
    images: torch.Tensor, *, rotate: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> torch.Tensor:
    """One fixed affine transform of every image: (B, H, W) float in [0, 1] -> (B, H, W).
    `rotate` in degrees (counter-clockwise), `scale` > 1 enlarges, `shift` (x, y) in pixels
    (right, down). Test-time augmentation averages the predictions over a few such views."""
    n, size = images.shape[0], images.shape[-1]
    angle = math.radians(rotate)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    # Output -> input mapping, as F.affine_grid wants: the inverse of the transform shown.
    theta = torch.tensor(
        [[cos, -sin, -shift[0] * 2 / size], [sin, cos, -shift[1] * 2 / size]], dtype=images.dtype, device=images.device
    ).expand(n, 2, 3)
    x = images.unsqueeze(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(1)
