"""What augmentation does to a training batch: a frozen dataclass, torch-free so that presets
(training.config) can name it without importing torch. `nn.augment` applies it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentConfig:
    """Random distortions applied to each training batch (see augment.py). Zero turns one off."""

    rotate: float = 0.0  # maximum rotation, degrees
    scale: float = 0.0  # maximum relative scale change (0.1: 90% to 110%)
    shift: float = 0.0  # maximum translation, pixels
    shear: float = 0.0  # maximum shear, degrees
    elastic_alpha: float = 0.0  # elastic displacement strength, pixels (Simard et al. 2003)
    elastic_sigma: float = 4.0  # smoothness of the elastic field, pixels
    noise: float = 0.0  # standard deviation of added Gaussian noise, in [0, 1] pixel units
    p: float = 1.0  # share of the images that are distorted; the rest stay clean
    # Degradations real inputs have (scanner speckle, a blunt or fine pen, blur, uneven light,
    # stray strokes). Each hits its own random `corrupt_p` share of the images.
    corrupt_p: float = 0.0
    thickness: bool = False  # thicken or thin the strokes by one pixel (3x3 max / min filter)
    blur: float = 0.0  # maximum Gaussian blur sigma, pixels
    impulse: float = 0.0  # maximum share of pixels set to black or white (salt and pepper)
    fog: float = 0.0  # maximum amplitude of a smooth brightness field added over the image
    lines: float = 0.0  # maximum brightness of a random stroke (1-3 straight pieces) across the image
    outline: bool = False  # hollow strokes: only the ring around them stays (outlined, stencil digits)
    invert: bool = False  # a random band along one side turned negative (over-exposure, a marker)
