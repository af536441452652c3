"""The `Recognizer`: digit probabilities from a model file, and the digits read in an image.

Try: `python -c "from digitrec import Recognizer; print(Recognizer.load().info)"`.

Model input and output (loading, normalisation, batching, calibrated probabilities) happen here;
reading a number from its pieces is the decoder's. Torch-free: a checkpoint's backend imports
torch only when one is loaded.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..constants import IMAGE_SIZE, LABELS, MNIST_MEAN, MNIST_STD
from ..errors import DigitrecError
from ..image.decode import MAX_BYTES, MAX_PIXELS, load_image
from ..image.inkmap import InkMap, ink_box
from ..image.presence import looks_like_digit
from ..image.segmentation import Slot, segment_slots, stats_and_inkmap
from ..metadata import temperature_of
from ..probabilities import DEFAULT_TOPK, digit_probabilities, topk
from ..version import __version__
from .backends import Backend, load_backend
from .constraints import MAX_DIGITS, Compiled, Constraints
from .decoder import Decoded, Decoder, Reading
from .lattice import DEFAULT_ALTERNATIVES, MAX_ALTERNATIVES, best_readings
from .profile import Profile
from .results import (
    LOW_CONFIDENCE,
    NO_INK,
    NO_VALID_READING,
    NOT_A_DIGIT,
    NOT_A_DIGIT_MARK,
    Alternative,
    Constrained,
    DigitResult,
    Reason,
    Recognition,
)

BATCH_SIZE = 256  # images per backend call: large enough to amortise the call, small in memory
DEFAULT_REJECT_BELOW = 0.5  # digits less confident than this are flagged; all flagged: rejected
# A piece at least this likely "not a digit" (a model with the NON_DIGIT output) is read as no
# digit: "?" in the text. An image read as one piece is judged at NOT_DIGIT_THRESHOLD; each piece
# of a number at PIECE_NOT_DIGIT_THRESHOLD, since the fragments and touching digits segmentation
# cuts out of numbers look more like scribbles than whole digits do. Chosen on held-out sources
# and training digits, never test digits: docs/decisions/non-digit-threshold.md
NOT_DIGIT_THRESHOLD = 0.2
PIECE_NOT_DIGIT_THRESHOLD = 0.75
MAX_EXPECTED_DIGITS = MAX_DIGITS  # the longest number (a phone number, an amount) on one line
# An image whose ink, with CROP_MARGIN of its height around it, is under CROP_BELOW of its area
# and under SMALL_INK_PX high at the working resolution is read cut to that box: blank paper
# must not decide whether digits are found (a line of digits on a 8000x400 page was "no ink").
CROP_MARGIN = 0.5
CROP_BELOW = 0.25
SMALL_INK_PX = 48
# With constraints, a reading they change is kept when its probability is at least MIN_READING_SHARE
# of the valid readings found (no two corrections compete) and at least MIN_READING_RATIO of the
# best reading of its length, valid or not (the correction is plausible); otherwise the image is
# rejected ("no valid reading"). Chosen on numbers of held-out digits:
# docs/decisions/constrained-reading.md
MIN_READING_SHARE = 0.99
MIN_READING_RATIO = 0.001


class Recognizer:
    """Digit probabilities for MNIST-format images, from a checkpoint or an ONNX model."""

    def __init__(self, backend: Backend, path: Path) -> None:
        meta = backend.metadata
        norm = meta.get("normalization") or {}
        # A foreign ONNX model without our metadata is assumed to expect MNIST's normalisation.
        self.mean = float(norm.get("mean", MNIST_MEAN))
        self.std = float(norm.get("std", MNIST_STD))
        self.labels: tuple[str, ...] = tuple(meta.get("labels") or LABELS)
        self.temperature = temperature_of(meta)  # probabilities = softmax(logits / temperature)
        self._backend = backend
        self.info: dict[str, Any] = _describe(backend, path, self.mean, self.std, bool(norm), self.temperature)

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's own metadata: architecture, training config and time, metrics."""
        return self._backend.metadata

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int | None = None) -> Recognizer:
        """Load a `.safetensors` checkpoint (torch) or an ONNX model (onnxruntime); None loads the
        shipped float32 ONNX model. `threads`: CPU threads for the backend (default: its choice)."""
        return cls(*load_backend(path, threads))

    def _normalise(self, images: np.ndarray) -> np.ndarray:
        """(B, 28, 28) uint8 0..255 or float in [0, 1] -> normalised float32 (B, 1, 28, 28)."""
        x = images.astype(np.float32)
        if images.dtype == np.uint8:
            x *= np.float32(1 / 255)
        x -= np.float32(self.mean)
        x /= np.float32(self.std)
        return x[:, None]

    def predict_logits(self, images: np.ndarray, profile: Profile | None = None) -> np.ndarray:
        """Raw model scores (N, classes) in float32, adjusted by a person's `profile` if one is
        given; most callers want `predict_proba`."""
        if profile is None:
            return self._batched(images, lambda x: (self._backend.run(x),))[0]
        logits, features = self.features(images)
        return profile.adjust(logits, features)

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, classes) and features (N, D), the input of the model's last linear layer,
        for (N, 28, 28) images: what `profile.adapt` is given."""
        run = self._backend.run_with_features
        if run is None:
            raise DigitrecError(
                f"{self.info['path']}: this ONNX model does not give its features, which profiles need; "
                "export it again with `digitrec export`"
            )
        logits, features = self._batched(images, run)
        return logits, features

    def convolutions(self, images: np.ndarray) -> list[np.ndarray]:
        """Each convolution's output, (N, C, H, W) float32 in the model's order, for (N, 28, 28)
        images: what `explain` shows."""
        run = self._backend.run_convs
        if run is None:
            raise DigitrecError(
                f"{self.info['path']}: this ONNX model does not give its convolutions' outputs, which "
                "explanations need; export it again with `digitrec export`"
            )
        return list(self._batched(images, lambda x: tuple(run(x))))

    def _batched(
        self, images: np.ndarray, run: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    ) -> tuple[np.ndarray, ...]:
        """`run` over normalised batches of `images`, its outputs concatenated in float32."""
        images = _as_batch(images)
        step = self._backend.fixed_batch or BATCH_SIZE
        parts: list[tuple[np.ndarray, ...]] = []
        for start in range(0, len(images), step):  # normalised per batch: memory stays bounded
            x = self._normalise(images[start : start + step])
            n = len(x)
            if self._backend.fixed_batch and n < step:  # pad the last batch to the model's size
                x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), np.float32)])
            parts.append(tuple(np.asarray(o, dtype=np.float32)[:n] for o in run(x)))
        if not parts:
            return (np.zeros((0, len(self.labels)), np.float32), np.zeros((0, 0), np.float32))
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Digit probabilities (N, 10), float32, for (N, 28, 28) images: uint8 0..255 or float in
        [0, 1], ink bright on dark (MNIST's format, as `digitrec.image.mnist_format` makes); calibrated
        by the model's temperature (calibration.py); rows add up to 1 (`digit_probabilities`)."""
        return digit_probabilities(self.predict_logits(images), self.temperature)

    def topk(self, probs: np.ndarray, k: int = DEFAULT_TOPK) -> list[list[tuple[str, float]]]:
        """The `k` most probable digits of each row of `probs`, as (label, probability)."""
        return topk(probs, k, self.labels)

    def recognize(
        self,
        source: bytes | str | os.PathLike | np.ndarray | Image.Image,
        *,
        expected_digits: int | None = None,
        reject_below: float = DEFAULT_REJECT_BELOW,
        top_k: int = DEFAULT_TOPK,
        name: str | None = None,
        debug: dict[str, np.ndarray] | None = None,
        max_bytes: int = MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
        strict: bool = False,
        not_digit_threshold: float = NOT_DIGIT_THRESHOLD,
        piece_not_digit_threshold: float = PIECE_NOT_DIGIT_THRESHOLD,
        constraints: Constraints | Compiled | None = None,
        alternatives: int = DEFAULT_ALTERNATIVES,
        min_share: float = MIN_READING_SHARE,
        min_ratio: float = MIN_READING_RATIO,
        profile: Profile | None = None,
    ) -> Recognition:
        """Read the digits in an image (a file's path or bytes, a PIL image or an array): a photo,
        a scan, a canvas export or a 28x28 digit; one digit or a number on one line. Raises DigitrecError for an image that cannot be read.

        `constraints` (its digit count, a pattern, a checksum, a lexicon): the most probable
        reading that satisfies them (lattice.py), with up to `alternatives` more in
        `Recognition.constrained`. A reading that satisfies them as read is kept as read; one
        they change is kept when it has at least `min_share` of the valid readings' probability
        and `min_ratio` of the best reading of its length, else the image is rejected with "no
        valid reading". A digit count alone reads as `expected_digits` does.

        `profile`: a person's profile (profile.py): every piece is read with it.

        An image read as one piece at least `not_digit_threshold` likely to be no digit (models
        with that output), or a piece of a number at least `piece_not_digit_threshold` likely,
        reads as "?" and is flagged; `strict`: such a piece rejects the whole image. Why an image
        is rejected: `rejection_reason`.

        The same pipeline serves the CLI, the Python API and the service: load_image ->
        looks_like_digit ("no digit" without asking the network) -> segment_slots (each piece
        through the MNIST-format preprocessing) -> the decoder (decoder.py), which reads every
        piece in one batch and keeps the most confidently read way to cut each group. The "no
        digit" check and the segmentation share the image's ink signal (stats_and_inkmap)."""
        compiled = constraints.compile() if isinstance(constraints, Constraints) else constraints
        if compiled is not None and not compiled.spec.beyond_count:
            expected_digits, compiled = compiled.spec.digits or expected_digits, None
        if compiled is not None:
            if expected_digits is not None and compiled.spec.digits not in (None, expected_digits):
                raise DigitrecError(f"two digit counts: {expected_digits} and the constraints' {compiled.spec.digits}")
            lengths = compiled.lengths
            expected_digits = next(iter(lengths)) if lengths is not None and len(lengths) == 1 else None
        if not 0 <= alternatives <= MAX_ALTERNATIVES:
            raise DigitrecError(f"alternatives must be 0 to {MAX_ALTERNATIVES}; got {alternatives}")
        if expected_digits is not None and not 1 <= expected_digits <= MAX_EXPECTED_DIGITS:
            raise DigitrecError(f"the expected digit count must be 1 to {MAX_EXPECTED_DIGITS}; got {expected_digits}")
        unnamed = (bytes, np.ndarray, Image.Image)
        path = name if name is not None else (None if isinstance(source, unnamed) else str(source))
        notes: list[str] = []
        image = (
            source
            if isinstance(source, np.ndarray)
            else load_image(source, name=path, max_bytes=max_bytes, max_pixels=max_pixels, notes=notes)
        )
        if isinstance(image, np.ndarray) and image.dtype.kind == "f" and not np.isfinite(image).all():
            raise DigitrecError(f"{path or 'image'}: some pixels are not numbers (NaN or infinite); give finite values")
        stats, inkmap = stats_and_inkmap(image, debug=debug)
        image, offset = _crop_blank_paper(image, inkmap)
        if offset != (0, 0):
            stats, inkmap = stats_and_inkmap(image, debug=debug)
        slots = (
            segment_slots(image, expected=expected_digits, debug=debug, inkmap=inkmap)
            if looks_like_digit(stats)
            else []
        )
        if not slots:
            return Recognition(text="", digits=[], rejected=True, path=path, reason=NO_INK)
        decoder = Decoder(functools.partial(self.predict_logits, profile=profile), self.temperature)
        logits = decoder.crop_logits(slots)
        decoded = decoder.read(slots, expected_digits, logits)
        if debug is not None:
            for i, crop in enumerate(decoded.reading.crops):
                debug[f"seg_digit_{i:02d}"] = crop.image
        limits = (not_digit_threshold, piece_not_digit_threshold)
        digits = _digit_results(decoded, self.labels, reject_below, top_k, limits)
        reason = rejection_reason(digits, strict=strict)
        text = "" if reason else "".join(d.digit for d in digits)
        plain = Recognition(
            text=text, digits=digits, rejected=reason is not None, path=path, reason=reason, notes=notes
        )
        if compiled is None:
            return _shifted(plain, offset)
        return _shifted(
            self._constrained(
                slots,
                logits,
                decoded,
                plain,
                compiled,
                alternatives=alternatives,
                min_share=min_share,
                min_ratio=min_ratio,
                top_k=top_k,
                reject_below=reject_below,
                limits=limits,
                strict=strict,
            ),
            offset,
        )

    def _constrained(
        self,
        slots: list[Slot],
        logits: np.ndarray,
        decoded: Decoded,
        plain: Recognition,
        compiled: Compiled,
        *,
        alternatives: int,
        min_share: float,
        min_ratio: float,
        top_k: int,
        reject_below: float,
        limits: tuple[float, float],
        strict: bool,
    ) -> Recognition:
        """`recognize` with constraints: the best valid readings of the lattice of `slots` (whose
        crops have `logits`), given `plain`, the reading without them (`decoded`). A piece read
        as no digit may still be a digit of a valid reading that stands out: it is flagged, and
        only `strict` rejects the image for it."""
        path, digits = plain.path, plain.digits
        unconstrained = "".join(d.digit for d in digits)
        every = Reading.of([c for slot in slots for c in slot.crops], logits, self.temperature)
        search = best_readings(slots, every.pieces, compiled, 1 + alternatives)
        found = [Alternative(c.text, c.probability) for c in search.candidates]
        total = sum(a.probability for a in found)
        share = found[0].probability / total if found and total > 0 else 0.0
        ratio = min(1.0, math.exp(search.candidates[0].log_probability - search.ceiling)) if found else 0.0
        constrained = Constrained(found, share, ratio, unconstrained, search.exact)
        if found and found[0].text == unconstrained:  # the reading satisfies them as it was read
            return replace(plain, constrained=constrained)
        if not found or share < min_share or ratio < min_ratio:  # a correction must stand out and be plausible
            return Recognition(
                "", digits, True, path, reason=NO_VALID_READING, constrained=constrained, notes=plain.notes
            )
        best = search.candidates[0]
        chosen = every.take(best.pieces)
        kept = Decoded(chosen, None if decoded.not_one_digit is None else chosen.not_one_digit())
        digits = _digit_results(kept, self.labels, reject_below, top_k, limits, best.text)
        if strict and any(d.not_digit is not None and d.not_digit >= limits[len(digits) > 1] for d in digits):
            return Recognition("", digits, True, path, reason=NOT_A_DIGIT, constrained=constrained, notes=plain.notes)
        return Recognition(best.text, digits, False, path, constrained=constrained, notes=plain.notes)

    def __repr__(self) -> str:
        return f"Recognizer({self.info['architecture']}, {self.info['backend']}, {self.info['path']})"


def rejection_reason(digits: list[DigitResult], *, strict: bool = False) -> Reason | None:
    """Why the pieces read in an image reject it, or None: it is accepted. The first rule that
    applies decides:

    1. no piece at all: NO_INK (`recognize` says so before the model runs, for ink that does not
       look like a digit);
    2. `strict` and any piece read as no digit: NOT_A_DIGIT;
    3. no piece read surely as a digit (each is no digit or under reject_below): NOT_A_DIGIT when
       any piece is no digit, else LOW_CONFIDENCE; nothing trustworthy was read, so say so
       rather than return a confident-looking guess;
    4. otherwise accepted: the text holds "?" for each piece read as no digit.
    """
    if not digits:
        return NO_INK
    strange = any(not d.is_digit for d in digits)
    if strict and strange:
        return NOT_A_DIGIT
    if all(d.flagged for d in digits):
        return NOT_A_DIGIT if strange else LOW_CONFIDENCE
    return None


def _crop_blank_paper(image: np.ndarray, inkmap: InkMap) -> tuple[np.ndarray, tuple[int, int]]:
    """(`image` cut to its ink and a margin, the cut's top-left corner) when the ink is small at
    the working resolution and the paper around it is most of the image; else (`image`, (0, 0)).
    An image is reduced to a working resolution as a whole, so blank paper around a line of
    digits would otherwise shrink the digits until they no longer look like digits."""
    box = ink_box(inkmap, np.shape(image), CROP_MARGIN)
    if box is None:
        return image, (0, 0)
    x0, y0, x1, y1 = box
    small = (y1 - y0) / inkmap.scale < SMALL_INK_PX
    if not small or (x1 - x0) * (y1 - y0) > CROP_BELOW * image.shape[0] * image.shape[1]:
        return image, (0, 0)
    return image[y0:y1, x0:x1], (x0, y0)


def _shifted(result: Recognition, offset: tuple[int, int]) -> Recognition:
    """`result` with its digits' boxes in the pixels of the image before it was cut at `offset`."""
    if offset == (0, 0):
        return result
    dx, dy = offset
    digits = [replace(d, box=(d.box[0] + dx, d.box[1] + dy, d.box[2] + dx, d.box[3] + dy)) for d in result.digits]
    return replace(result, digits=digits)


def _as_batch(images: np.ndarray) -> np.ndarray:
    """Check and reshape model input to (N, 28, 28), uint8 or float."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    elif images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DigitrecError(f"images must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}); got shape {images.shape}")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise DigitrecError(f"images must be uint8 0..255 or float in [0, 1]; got {images.dtype}")
    return images


def _describe(
    backend: Backend, path: Path, mean: float, std: float, from_metadata: bool, temperature: float
) -> dict[str, Any]:
    """`Recognizer.info`: what the model is, where it came from, how it is run."""
    meta = backend.metadata
    model = meta.get("model") or {}
    # An exported model records the accuracy measured on itself; a checkpoint, training's.
    accuracy = (meta.get("export") or {}).get("test_accuracy", (meta.get("metrics") or {}).get("test_accuracy"))
    return {
        "architecture": model.get("name", "unknown (not a digitrec model)"),
        "config": model.get("config"),
        **backend.info,
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "test_accuracy": accuracy,
        "normalization": {"mean": mean, "std": std, "from_metadata": from_metadata},
        "temperature": temperature,
        "model_digitrec_version": (meta.get("versions") or {}).get("digitrec"),
        "digitrec_version": __version__,
    }


def _digit_results(
    decoded: Decoded,
    labels: tuple[str, ...],
    reject_below: float,
    top_k: int,
    not_digit_thresholds: tuple[float, float],
    chosen: str | None = None,
) -> list[DigitResult]:
    """One DigitResult per piece the decoder kept, left to right; a piece at least as likely to be
    no digit as its threshold (`not_digit_thresholds`: for a lone piece, for a piece of a number)
    is NOT_A_DIGIT_MARK, flagged (its confidence and top_k still describe the digit it reads best
    as). `chosen`: the digit each piece is read as (a constrained reading), in place of its most
    probable one; a piece likely no digit then keeps that digit, flagged."""
    reading = decoded.reading
    not_digit_threshold = not_digit_thresholds[0] if len(reading) == 1 else not_digit_thresholds[1]
    none: list[None] = [None] * len(reading)
    not_one = none if decoded.not_one_digit is None else decoded.not_one_digit.tolist()
    not_digit = none if decoded.not_digit is None else decoded.not_digit.tolist()
    digits = []
    picks = [int(p.argmax()) for p in reading.digits] if chosen is None else [int(c) for c in chosen]
    for crop, p, top, other, strange, best in zip(
        reading.crops, reading.digits, topk(reading.digits, top_k, labels), not_one, not_digit, picks
    ):
        odd = strange is not None and strange >= not_digit_threshold
        non_digit = odd and chosen is None  # a constrained reading names a digit even here, flagged
        x0, y0, x1, y1 = crop.box
        digits.append(
            DigitResult(
                digit=NOT_A_DIGIT_MARK if non_digit else labels[best],
                confidence=float(p[best]),
                probabilities=[float(v) for v in p],
                box=(int(x0), int(y0), int(x1), int(y1)),
                flagged=bool(odd or p[best] < reject_below),
                top_k=top,
                image=crop.image,
                not_one_digit=None if other is None else float(max(0.0, other)),
                not_digit=None if strange is None else float(strange),
            )
        )
    return digits
