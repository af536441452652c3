"""The `Recognizer`: digit probabilities from a model file, and the digits read in an image.

Try: `python -c "from digitrec import Recognizer; print(Recognizer.load().info)"`.

Model input and output (loading, normalisation, batching, calibrated probabilities) happen here;
reading a number from its pieces is the decoder's. Torch-free: a checkpoint's backend imports
torch only when one is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import IMAGE_SIZE, LABELS, MNIST_MEAN, MNIST_STD, NUM_CLASSES
from ..errors import DigitrecError
from ..image.decode import MAX_BYTES, MAX_PIXELS, load_image
from ..image.presence import looks_like_digit
from ..image.segmentation import (
    RECUT_OTHER,
    RESPLIT_OTHER,
    RESPLIT_PARTS,
    DigitCrop,
    Slot,
    choose_readings,
    prefer_split,
    segment_slots,
    stats_and_inkmap,
)
from ..metadata import temperature_of
from ..probabilities import DEFAULT_TOPK, digit_probabilities, piece_probabilities, topk
from ..version import __version__
from .backends import Backend, load_backend
from .results import DigitResult, Recognition

BATCH_SIZE = 256  # images per backend call: large enough to amortise the call, small in memory


# The pieces of a number are read at small shifts too, their logits averaged: a piece cut out of
# a number sits less surely where MNIST centres a digit than a lone digit does. Numbers of the
# 10,000 digits a `--holdout 10000` model never saw (two sets of three renderings of 200): 547
# and 555 of 600 read right against 543 and 551. A lone digit is read once (its latency).
PIECE_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (rows, columns)
DEFAULT_REJECT_BELOW = 0.5  # digits less confident than this are flagged; all flagged: rejected
MAX_EXPECTED_DIGITS = 20  # the longest number (a phone number, an amount) on one line


def _concatenate(
    readings: list[tuple[list[DigitCrop], np.ndarray, np.ndarray]],
) -> tuple[list[DigitCrop], np.ndarray, np.ndarray]:
    """(crops, digit probabilities, piece probabilities) of several readings, one after another."""
    return (
        [c for reading in readings for c in reading[0]],
        np.concatenate([r[1] for r in readings]),
        np.concatenate([r[2] for r in readings]),
    )


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
        model = meta.get("model") or {}
        # An exported model records the accuracy measured on itself; a checkpoint, training's.
        accuracy = (meta.get("export") or {}).get("test_accuracy", (meta.get("metrics") or {}).get("test_accuracy"))
        self.info: dict[str, Any] = {
            "architecture": model.get("name", "unknown (not a digitrec model)"),
            "config": model.get("config"),
            **backend.info,
            "path": str(path),
            "file_bytes": path.stat().st_size,
            "test_accuracy": accuracy,
            "normalization": {"mean": self.mean, "std": self.std, "from_metadata": bool(norm)},
            "temperature": self.temperature,
            "model_digitrec_version": (meta.get("versions") or {}).get("digitrec"),
            "digitrec_version": __version__,
        }

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's own metadata: architecture, training config and time, metrics."""
        return self._backend.metadata

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int | None = None) -> Recognizer:
        """Load a `.safetensors` checkpoint (torch) or an ONNX model (onnxruntime); None loads the
        shipped float32 ONNX model. `threads`: CPU threads for the backend (default: its choice)."""
        return cls(*load_backend(path, threads))

    @staticmethod
    def _as_batch(images: np.ndarray) -> np.ndarray:
        """Check and reshape the input to (N, 28, 28), uint8 or float."""
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

    def _normalise(self, images: np.ndarray) -> np.ndarray:
        """(B, 28, 28) uint8 0..255 or float in [0, 1] -> normalised float32 (B, 1, 28, 28)."""
        x = images.astype(np.float32)
        if images.dtype == np.uint8:
            x *= np.float32(1 / 255)
        x -= np.float32(self.mean)
        x /= np.float32(self.std)
        return x[:, None]

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """Raw model scores (N, classes) in float32; most callers want `predict_proba`."""
        images = self._as_batch(images)
        step = self._backend.fixed_batch or BATCH_SIZE
        out = []
        for start in range(0, len(images), step):  # normalised per batch: memory stays bounded
            x = self._normalise(images[start : start + step])
            n = len(x)
            if self._backend.fixed_batch and n < step:  # pad the last batch to the model's size
                x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), np.float32)])
            out.append(np.asarray(self._backend.run(x), dtype=np.float32)[:n])
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

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
        source: bytes | str | os.PathLike | np.ndarray,
        *,
        expected_digits: int | None = None,
        reject_below: float = DEFAULT_REJECT_BELOW,
        top_k: int = DEFAULT_TOPK,
        name: str | None = None,
        debug: dict[str, np.ndarray] | None = None,
        max_bytes: int = MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
    ) -> Recognition:
        """Read the digits in an image: a photo, a scan, a canvas export or a 28x28 digit; one
        digit or a number on one line. Raises DigitrecError for an image that cannot be read.

        The same pipeline serves the CLI, the Python API and the service: load_image ->
        has_digit ("no digit" without asking the network) -> segment (each digit through the
        MNIST-format preprocessing) -> one batched prediction. The "no digit" check and the
        segmentation share the image's ink signal (segmentation.stats_and_inkmap). Where
        segmentation is unsure how to cut (touching digits, a wide digit), every plausible
        reading is in that batch and the most confidently read one is kept. Several pieces are
        read at PIECE_SHIFTS; a piece the model still calls "not one digit" is cut again
        (`_cut_again`) in a second batch, and its group read again with many more candidate
        cuts (`_recut`) in a third."""
        if expected_digits is not None and not 1 <= expected_digits <= MAX_EXPECTED_DIGITS:
            raise DigitrecError(f"the expected digit count must be 1 to {MAX_EXPECTED_DIGITS}; got {expected_digits}")
        path = name if name is not None else (None if isinstance(source, (bytes, np.ndarray)) else str(source))
        image = (
            source
            if isinstance(source, np.ndarray)
            else load_image(source, name=path, max_bytes=max_bytes, max_pixels=max_pixels)
        )
        stats, inkmap = stats_and_inkmap(image, debug=debug)
        slots = (
            segment_slots(image, expected=expected_digits, debug=debug, inkmap=inkmap)
            if looks_like_digit(stats)
            else []
        )
        if not slots:
            return Recognition(text="", digits=[], rejected=True, path=path)
        # Every crop of every slot in one batch. Where segmentation was unsure how to cut a group
        # (touching digits, or one wide digit?), the most confidently read way is kept.
        crops = [c for slot in slots for c in slot.crops]
        batch = np.stack([c.image for c in crops])
        logits = self._piece_logits(batch) if len(crops) > 1 else self.predict_logits(batch)
        probs = digit_probabilities(logits, self.temperature)
        has_class = logits.shape[1] > NUM_CLASSES  # a "not one digit" output
        pieces = piece_probabilities(logits, self.temperature) if has_class else probs
        if any(len(slot.crops) > len(slot.primary) for slot in slots):
            starts = np.cumsum([0] + [len(slot.crops) for slot in slots])
            picks = choose_readings(slots, [pieces[a:b] for a, b in zip(starts[:-1], starts[1:])], expected_digits)
            keep = [int(start) + i for start, chain in zip(starts, picks) for i in chain]
            crops, probs, pieces = [crops[i] for i in keep], probs[keep], pieces[keep]
        else:
            picks = [list(slot.primary) for slot in slots]
        if has_class and expected_digits is None:
            owners = [(k, i) for k, chain in enumerate(picks) for i in chain]
            crops, probs, pieces, held = self._cut_again(slots, owners, crops, probs, pieces)
            crops, probs, pieces = self._recut(slots, held, crops, probs, pieces)
        # With a "not one digit" output, the rest of each piece's probability is that.
        not_one = 1 - pieces.sum(axis=1) if has_class else [None] * len(crops)
        if debug is not None:
            for i, crop in enumerate(crops):
                debug[f"seg_digit_{i:02d}"] = crop.image
        tops = self.topk(probs, top_k)
        digits = []
        for crop, p, top, other in zip(crops, probs, tops, not_one):
            best = int(p.argmax())
            digits.append(
                DigitResult(
                    digit=self.labels[best],
                    confidence=float(p[best]),
                    probabilities=[float(v) for v in p],
                    box=tuple(int(v) for v in crop.box),
                    flagged=bool(p[best] < reject_below),
                    top_k=top,
                    image=crop.image,
                    not_one_digit=None if other is None else float(max(0.0, other)),
                )
            )
        # Nothing trustworthy was read: say so rather than return a confident-looking guess.
        rejected = all(d.flagged for d in digits)
        return Recognition(
            text="" if rejected else "".join(d.digit for d in digits), digits=digits, rejected=rejected, path=path
        )

    def _piece_logits(self, images: np.ndarray) -> np.ndarray:
        """`predict_logits` of (N, 28, 28) pieces averaged over their PIECE_SHIFTS, in one call."""
        views = np.concatenate([np.roll(images, shift, axis=(1, 2)) for shift in PIECE_SHIFTS])
        return self.predict_logits(views).reshape(len(PIECE_SHIFTS), len(images), -1).mean(axis=0)

    def _cut_again(
        self,
        slots: list[Slot],
        owners: list[tuple[int, int]],
        crops: list[DigitCrop],
        probs: np.ndarray,
        pieces: np.ndarray,
    ) -> tuple[list[DigitCrop], np.ndarray, np.ndarray, list[int]]:
        """Each kept piece the model reads as "not one digit" (segmentation.RESPLIT_OTHER), cut
        into 2 to RESPLIT_PARTS digits at forced cuts, and read so where `prefer_split` says.
        `owners[j]`: (slot index, segment index) of crop j. Returns the new (crops, probs,
        pieces) and the slot index of each new crop."""
        readings = [([crop], probs[j : j + 1], pieces[j : j + 1]) for j, crop in enumerate(crops)]
        for j, (k, i) in enumerate(owners):
            if 1 - pieces[j].sum() >= RESPLIT_OTHER and slots[k].split:
                readings[j] = self._best_cut(slots[k], i, readings[j])
        held = [k for (k, _), reading in zip(owners, readings) for _ in reading[0]]
        return (*_concatenate(readings), held)

    def _recut(
        self, slots: list[Slot], held: list[int], crops: list[DigitCrop], probs: np.ndarray, pieces: np.ndarray
    ) -> tuple[list[DigitCrop], np.ndarray, np.ndarray]:
        """Each slot holding a piece still read as more likely "not one digit" than one
        (segmentation.RECUT_OTHER) read again with many more candidate cuts (Slot.recut), in one
        batch, and kept so where `prefer_split` says. `held[j]`: the slot index of crop j."""
        poor = sorted({k for j, k in enumerate(held) if 1 - pieces[j].sum() >= RECUT_OTHER and slots[k].recut})
        if not poor:
            return crops, probs, pieces
        dense = [slots[k].recut() for k in poor]  # type: ignore[misc]
        # Read once, not at PIECE_SHIFTS: as many held-out numbers read right (segmentation.py), with
        # a fifth of the network work.
        logits = self.predict_logits(np.stack([c.image for slot in dense for c in slot.crops]))
        readings = [([crop], probs[j : j + 1], pieces[j : j + 1]) for j, crop in enumerate(crops)]
        start = 0
        for k, slot in zip(poor, dense):
            rows = logits[start : start + len(slot.crops)]
            start += len(slot.crops)
            p = piece_probabilities(rows, self.temperature)
            chain = choose_readings([slot], [p])[0]
            now = [j for j, owner in enumerate(held) if owner == k]
            if chain and prefer_split(pieces[now], p[chain]):
                # The slot's new reading in place of its first piece; its other pieces go.
                readings[now[0]] = (
                    [slot.crops[i] for i in chain],
                    digit_probabilities(rows[chain], self.temperature),
                    p[chain],
                )
                for j in now[1:]:
                    readings[j] = ([], probs[:0], pieces[:0])
        return _concatenate(readings)

    def _best_cut(
        self, slot: Slot, i: int, whole: tuple[list[DigitCrop], np.ndarray, np.ndarray]
    ) -> tuple[list[DigitCrop], np.ndarray, np.ndarray]:
        """Segment `i` of `slot` as (crops, digit probabilities, piece probabilities): `whole`, or
        its forced cut into 2 to RESPLIT_PARTS digits that `prefer_split` reads best."""
        options = [c for k in range(2, RESPLIT_PARTS + 1) if (c := slot.split(i, k))]
        if not options:
            return whole
        logits = self._piece_logits(np.stack([c.image for option in options for c in option]))
        best, start = whole, 0
        for option in options:
            rows = logits[start : start + len(option)]
            start += len(option)
            p = piece_probabilities(rows, self.temperature)
            if prefer_split(best[2], p):  # of the cuts, the one read most confidently
                best = (list(option), digit_probabilities(rows, self.temperature), p)
        return best

    def __repr__(self) -> str:
        return f"Recognizer({self.info['architecture']}, {self.info['backend']}, {self.info['path']})"
