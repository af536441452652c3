"""What the network sees in an image: each digit's input, its convolutions' feature maps, and
which pixels made it read that digit.

Try: `python -c "from digitrec import Recognizer; from digitrec.recognition.explain import explain; print(explain(Recognizer.load(), 'digit.png'))"`

Torch-free. The attribution here is occlusion: grey out a patch, see how much the digit's
score falls, for every patch position; it needs only forward passes, so it runs on
onnxruntime. With torch, `digitrec.reports.explain` gives gradient methods from Captum
(integrated gradients, Grad-CAM) through the same `explain(..., attribute=...)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..constants import IMAGE_SIZE, NUM_CLASSES
from ..errors import DigitrecError
from .recognizer import Recognizer
from .results import Box

# A patch about a stroke's width and a quarter of the digit box, moved two pixels at a time:
# 12 x 12 forward passes in one batch (about 20 ms on one core), fine enough to show a stroke.
OCCLUSION_PATCH = 6
OCCLUSION_STRIDE = 2
STAGE_CHANNELS = 8  # feature maps shown per convolution: its most active channels
TOP = 3  # probabilities listed per digit
OCCLUSION = "occlusion"
INTEGRATED_GRADIENTS, GRAD_CAM = "integrated-gradients", "grad-cam"  # from Captum: reports/explain.py
GRADIENT_METHODS = (INTEGRATED_GRADIENTS, GRAD_CAM)

# (N, 28, 28) float images in [0, 1], the N digits they are read as -> (N, 28, 28) attributions
Attribute = Callable[[np.ndarray, np.ndarray], np.ndarray]

__all__ = [
    "GRADIENT_METHODS",
    "GRAD_CAM",
    "INTEGRATED_GRADIENTS",
    "OCCLUSION",
    "Attribute",
    "Explanation",
    "PieceExplanation",
    "Stage",
    "explain",
    "occlusion",
]


class MethodError(DigitrecError):
    """An attribution method the model cannot give: a gradient method of a model not run by torch."""


def attribution_method(method: str, recognizer: Recognizer) -> str:
    """The method `method` stands for on `recognizer`: "auto" is integrated gradients where torch
    runs the model (a checkpoint), else occlusion. Raises MethodError for a gradient method of a
    model torch does not run."""
    torch_backend = recognizer.info["backend"] == "torch"
    if method == "auto":
        return INTEGRATED_GRADIENTS if torch_backend else OCCLUSION
    if method != OCCLUSION and not torch_backend:
        raise MethodError(
            f"{method} needs the model's gradients: give a .safetensors checkpoint (a server serves one "
            "with --model), or use occlusion"
        )
    return method


@dataclass(frozen=True)
class Stage:
    """One convolution's output for one digit: its most active channels."""

    name: str  # conv_1, conv_2, ...: the model's convolutions in order
    channels: list[int]  # the channels shown, most active first
    maps: np.ndarray  # (len(channels), H, W) float32

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "maps": np.round(self.maps, decimals).tolist()}


@dataclass(frozen=True)
class PieceExplanation:
    """One digit: what the network saw, read as what, and why."""

    digit: str  # as read: a digit, or "?" for a piece read as no digit
    target: str  # the digit whose score the attribution explains: the most probable one
    top: list[tuple[str, float]]  # the TOP most probable digits with their probabilities
    box: Box  # where it is in the image
    image: np.ndarray  # (28, 28) float32 in [0, 1]: the network's input
    attribution: np.ndarray  # (28, 28) float32: > 0 where ink raised the digit's score, < 0 where it lowered it
    stages: list[Stage]

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "target": self.target,
            "top_k": [{"digit": d, "probability": round(p, 6)} for d, p in self.top],
            "box": list(self.box),
            "image": np.round(self.image, decimals).tolist(),
            "attribution": np.round(self.attribution, decimals).tolist(),
            "stages": [s.to_dict(decimals) for s in self.stages],
        }


@dataclass(frozen=True)
class Explanation:
    method: str  # "occlusion", "integrated-gradients" or "grad-cam"
    text: str  # what the image reads as
    pieces: list[PieceExplanation]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "text": self.text, "digits": [p.to_dict() for p in self.pieces]}

    def __repr__(self) -> str:
        return f"Explanation({self.method}, {self.text!r}, {len(self.pieces)} digits)"


def _log_odds(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log P(target) - log P(not target) over the ten digits: a score that keeps moving where the
    probability is already 0.999."""
    digits = logits[:, :NUM_CLASSES].astype(np.float64)
    chosen = digits[np.arange(len(digits)), targets]
    others = digits.copy()
    others[np.arange(len(digits)), targets] = -np.inf
    top = others.max(1)
    return chosen - (top + np.log(np.exp(others - top[:, None]).sum(1)))


def occlusion(
    recognizer: Recognizer,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    patch: int = OCCLUSION_PATCH,
    stride: int = OCCLUSION_STRIDE,
) -> np.ndarray:
    """(N, 28, 28) attributions of (N, 28, 28) images in [0, 1] for the digits `targets`: at each
    pixel, the mean fall of the digit's log-odds when a `patch` x `patch` square over it is blanked.

    >>> import numpy as np
    >>> from digitrec import Recognizer
    >>> seven = np.zeros((1, 28, 28), np.float32); seven[0, 6:9, 6:22] = 1; seven[0, 9:22, 17:20] = 1
    >>> occlusion(Recognizer.load(), seven, np.array([7])).shape
    (1, 28, 28)
    """
    starts = range(0, IMAGE_SIZE - patch + 1, stride)
    corners = [(r, c) for r in starts for c in starts]
    out = np.zeros(images.shape, np.float32)
    for i, (image, target) in enumerate(zip(images, targets)):
        batch = np.repeat(image[None], len(corners) + 1, axis=0)
        for k, (r, c) in enumerate(corners, start=1):
            batch[k, r : r + patch, c : c + patch] = 0
        scores = _log_odds(recognizer.predict_logits(batch), np.full(len(batch), target))
        total = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
        covered = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
        for (r, c), score in zip(corners, scores[1:]):
            total[r : r + patch, c : c + patch] += scores[0] - score
            covered[r : r + patch, c : c + patch] += 1
        out[i] = total / np.maximum(covered, 1)
    return out


def _stages(recognizer: Recognizer, images: np.ndarray, channels: int) -> list[list[Stage]]:
    """Per image, per convolution: its `channels` most active channels (by mean positive output)."""
    per_conv = recognizer.convolutions(images)
    out: list[list[Stage]] = [[] for _ in images]
    for k, maps in enumerate(per_conv, start=1):  # (N, C, H, W)
        activity = np.maximum(maps, 0).mean(axis=(2, 3))  # (N, C)
        for i in range(len(images)):
            chosen = np.argsort(-activity[i], kind="stable")[:channels]
            out[i].append(Stage(f"conv_{k}", chosen.tolist(), maps[i, chosen].astype(np.float32)))
    return out


def explain(
    recognizer: Recognizer,
    source: bytes | str | os.PathLike | np.ndarray | Image.Image,
    *,
    attribute: Attribute | None = None,
    method: str = OCCLUSION,
    expected_digits: int | None = None,
    channels: int = STAGE_CHANNELS,
    stages_shown: int | None = None,
    **recognize_options: Any,
) -> Explanation:
    """Read `source` (as `Recognizer.recognize` does, with its options) and explain each digit:
    its input, the most active `channels` of each convolution (the first `stages_shown` of them;
    None: all), and an attribution map, from
    `attribute` (named `method`) or, by default, occlusion. Raises DigitrecError as `recognize`
    does, and for an image with no digit-like ink."""
    result = recognizer.recognize(source, expected_digits=expected_digits, top_k=TOP, **recognize_options)
    if not result.digits:
        raise DigitrecError(f"{result.path or 'image'}: no digit-like ink to explain; draw or photograph a digit")
    images = np.stack([d.image for d in result.digits]).astype(np.float32)
    probabilities = np.array([d.probabilities for d in result.digits])
    targets = probabilities.argmax(1)
    attribution = (
        attribute(images, targets) if attribute is not None else occlusion(recognizer, images, targets)
    ).astype(np.float32)
    stages = _stages(recognizer, images, channels)
    pieces = [
        PieceExplanation(
            d.digit, str(targets[i]), list(d.top_k), d.box, images[i], attribution[i], stages[i][:stages_shown]
        )
        for i, d in enumerate(result.digits)
    ]
    text = result.text or "".join(d.digit for d in result.digits)
    return Explanation(method if attribute is not None else OCCLUSION, text, pieces)


# --- the picture ------------------------------------------------------------------------------------
# Drawn with Pillow, not matplotlib: explanations work in the torch-free install, which has no
# matplotlib.
SCALE = 4  # the 28x28 input and its attribution, 4x
THUMB = 56  # each feature map, scaled to this side
GAP = 8
TITLE = 18  # a line of text
BACKGROUND, INK = (255, 255, 255), (20, 20, 20)


def _grey(values: np.ndarray, side: int) -> Image.Image:
    """A map as a grey picture of `side` pixels, its own range stretched to black..white."""
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return Image.fromarray((scaled * 255).astype(np.uint8), "L").resize((side, side), Image.Resampling.NEAREST)


def overlay(image: np.ndarray, attribution: np.ndarray) -> np.ndarray:
    """(28, 28, 3) uint8: the input in grey under the attribution, red where the ink raised the
    digit's score and blue where it lowered it (the strongest of either at full colour).

    >>> overlay(np.zeros((28, 28)), np.eye(28)).shape
    (28, 28, 3)
    """
    scale = float(np.abs(attribution).max()) or 1.0
    a = np.clip(attribution / scale, -1, 1)[..., None]  # (28, 28, 1)
    grey = np.repeat((0.35 + 0.4 * (1 - np.asarray(image, np.float64)))[..., None], 3, axis=2)
    red, blue = np.array([0.85, 0.1, 0.1]), np.array([0.1, 0.3, 0.9])
    rgb = grey * (1 - np.abs(a)) + np.where(a > 0, red, blue) * np.abs(a)
    return np.asarray(np.clip(rgb * 255, 0, 255), dtype=np.uint8)


def render(explanation: Explanation) -> Image.Image:
    """One picture of `explanation`: for each digit, the network's input, the attribution over it
    and the top probabilities, then each convolution's most active feature maps."""
    from PIL import ImageDraw

    big = IMAGE_SIZE * SCALE
    width = max(2 * big + 3 * GAP + 160, GAP + STAGE_CHANNELS * (THUMB + GAP))
    blocks = []
    for i, piece in enumerate(explanation.pieces):
        height = TITLE + big + GAP + len(piece.stages) * (TITLE + THUMB + GAP) + GAP
        block = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(block)
        draw.text((GAP, 2), f"digit {i + 1}: {piece.digit}    attribution: {explanation.method}", fill=INK)
        block.paste(_grey(piece.image, big).convert("RGB"), (GAP, TITLE))
        colour = Image.fromarray(overlay(piece.image, piece.attribution), "RGB")
        block.paste(colour.resize((big, big), Image.Resampling.NEAREST), (2 * GAP + big, TITLE))
        for k, (d, p) in enumerate(piece.top):
            draw.text((3 * GAP + 2 * big, TITLE + 4 + 16 * k), f"{d}: {p:.3f}", fill=INK)
        y = TITLE + big + GAP
        for stage in piece.stages:
            draw.text((GAP, y + 2), f"{stage.name}: channels {', '.join(map(str, stage.channels))}", fill=INK)
            for j, fmap in enumerate(stage.maps):
                block.paste(_grey(fmap, THUMB).convert("RGB"), (GAP + j * (THUMB + GAP), y + TITLE))
            y += TITLE + THUMB + GAP
        blocks.append(block)
    picture = Image.new("RGB", (width, sum(b.height for b in blocks)), BACKGROUND)
    y = 0
    for b in blocks:
        picture.paste(b, (0, y))
        y += b.height
    return picture
