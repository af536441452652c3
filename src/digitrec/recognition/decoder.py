"""The number decoder: how to cut each group of ink into digits, chosen by how surely they read.

Try: `python -c "from digitrec import Recognizer; print(Recognizer.load().recognize('number.png').text)"`
(the `Recognizer` runs this decoder over its model).

Segmentation offers each group of ink as a `Slot`: the ways to cut it into digit-sized pieces.
The decoder reads every piece with a `score` function ((N, 28, 28) MNIST-format images ->
(N, classes) logits) and keeps, for each slot, the way of joining its pieces that reads most
confidently (`choose_readings`). A model with a "not one digit" output (constants.NOT_ONE_DIGIT)
also says when a kept piece is two digits or a fragment; such a piece is cut again at forced cuts
(`Decoder.cut_again`), and a group still holding one is read again with many more candidate cuts
(`Decoder.recut`). A model with a "not a digit" output (constants.NON_DIGIT) also says, for each
kept piece, how likely it is ink that is no digit at all (`Decoded.not_digit`); the readings are
chosen as without it: piece probabilities leave that output out.
It needs no model of its own: any function from images to logits will do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..constants import NON_DIGIT, NUM_CLASSES
from ..image.segmentation import DigitCrop, Slot
from ..probabilities import digit_probabilities, piece_probabilities, softmax

__all__ = [
    "PIECE_SHIFTS",
    "RECUT_OTHER",
    "RESPLIT_CONFIDENCE",
    "RESPLIT_OTHER",
    "RESPLIT_PARTS",
    "Decoded",
    "Decoder",
    "Reading",
    "Score",
    "choose_readings",
    "prefer_split",
]

Score = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) float images -> (N, classes) float32 logits

# A piece cut out of a number sits less surely where MNIST centres a digit than a lone digit
# does: pieces are read at these small shifts too, their logits averaged; a lone digit once.
# Chosen on held-out numbers: docs/decisions/piece-shifts.md
PIECE_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (rows, columns)
# A kept piece the model reads as "not one digit" (digits leaning into each other without a
# valley) is cut at forced cuts, and read so only when every part reads surely.
# Chosen on training and held-out numbers: docs/decisions/cutting-again.md
RESPLIT_OTHER = 0.9  # a piece is cut again when "not one digit" has at least this probability
RESPLIT_PARTS = 3  # ... into 2 to this many digits
RESPLIT_CONFIDENCE = 0.9  # the cut is kept when each part's digit has at least this probability
# A group still holding a piece more likely "not one digit" than one (digits written into each
# other have no valley where they meet) is read again with a cut every RECUT_STEP of its height.
# Chosen on held-out numbers: docs/decisions/recut.md
RECUT_OTHER = 0.5


@dataclass(frozen=True)
class Reading:
    """Pieces of an image read as digits, left to right.

    Attributes
    ----------
    crops : tuple of DigitCrop, length n
        The pieces, each a (28, 28) float32 MNIST-format image and its box.
    digits : (n, 10) float32 array
        Calibrated digit probabilities (`probabilities.digit_probabilities`); rows add up to 1.
    pieces : (n, 10) float32 array
        Piece probabilities (`probabilities.piece_probabilities`): with a "not one digit" output,
        the digits' share of the digits and it, so a row adds up to less than 1 where the piece is
        two digits or a fragment; without that output, the digit probabilities.
    non_digit : (n,) float32 array, optional
        Each piece's "not a digit" probability: that output's share of the softmax over all
        outputs, from the same logits; None where the model has no such output.

    Examples
    --------
    >>> import numpy as np
    >>> from digitrec.image.segmentation import DigitCrop
    >>> crop = DigitCrop(np.zeros((28, 28), np.float32), (0, 0, 10, 20))
    >>> one = Reading((crop,), np.full((1, 10), 0.1, np.float32), np.full((1, 10), 0.05, np.float32))
    >>> len(Reading.join([one, one]))
    2
    """

    crops: tuple[DigitCrop, ...]
    digits: np.ndarray
    pieces: np.ndarray
    non_digit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.crops)

    def piece(self, j: int) -> Reading:
        """Piece `j` alone."""
        return self.take([j])

    def take(self, keep: Sequence[int]) -> Reading:
        """The pieces at the indices `keep`, in that order."""
        keep = list(keep)
        non_digit = None if self.non_digit is None else self.non_digit[keep]
        return Reading(tuple(self.crops[i] for i in keep), self.digits[keep], self.pieces[keep], non_digit)

    def nothing(self) -> Reading:
        """No piece (arrays (0, 10))."""
        return self.take([])

    @staticmethod
    def join(readings: Sequence[Reading]) -> Reading:
        """Several readings one after another."""
        shares = [r.non_digit for r in readings]
        return Reading(
            tuple(c for reading in readings for c in reading.crops),
            np.concatenate([r.digits for r in readings]),
            np.concatenate([r.pieces for r in readings]),
            np.concatenate([s for s in shares if s is not None]) if all(s is not None for s in shares) else None,
        )

    def not_one_digit(self) -> np.ndarray:
        """(n,) each piece's "not one digit" probability (may be a hair below 0): the rest of its
        piece probability after the digits ("not a digit" takes no part in it)."""
        return 1 - self.pieces.sum(axis=1)

    @staticmethod
    def of(crops: Sequence[DigitCrop], logits: np.ndarray, temperature: float) -> Reading:
        """`crops` read from their `logits` (one row each): digit, piece and "not a digit"
        probabilities at `temperature`."""
        probs = digit_probabilities(logits, temperature)
        pieces = piece_probabilities(logits, temperature) if logits.shape[1] > NUM_CLASSES else probs
        non_digit = softmax(logits, temperature)[:, NON_DIGIT] if logits.shape[1] > NON_DIGIT else None
        return Reading(tuple(crops), probs, pieces, non_digit)


@dataclass(frozen=True)
class Decoded:
    """The digits read in an image: the reading kept for every slot, left to right.

    `not_one_digit`: (n,) each digit's probability of being "not one digit" (may be a hair
    below 0); None where the model has no such output."""

    reading: Reading
    not_one_digit: np.ndarray | None

    @property
    def not_digit(self) -> np.ndarray | None:
        """(n,) each piece's probability of being no digit at all; None where the model has no
        such output."""
        return self.reading.non_digit


@dataclass(frozen=True)
class Decoder:
    """Reads numbers from segmentation's slots with a `score` function and its temperature
    (probabilities = softmax(logits / temperature), calibration.py).

    Examples
    --------
    >>> import numpy as np
    >>> from digitrec.image.segmentation import DigitCrop, Slot
    >>> def score(images):  # a "model" reading every image as a sure 7
    ...     logits = np.zeros((len(images), 10), np.float32)
    ...     logits[:, 7] = 20
    ...     return logits
    >>> crop = DigitCrop(np.zeros((28, 28), np.float32), (0, 0, 10, 20))
    >>> decoded = Decoder(score).read([Slot(((0, 1),), (crop,), (0,))] * 2)
    >>> decoded.reading.digits.argmax(axis=1).tolist(), decoded.not_one_digit
    ([7, 7], None)
    """

    score: Score
    temperature: float = 1.0

    def read(self, slots: Sequence[Slot], expected: int | None = None, logits: np.ndarray | None = None) -> Decoded:
        """The digits in `slots` (segment_slots' output, non-empty), read in one batch, then,
        with a "not one digit" output and no `expected` count, cut again and recut where a
        kept piece reads as not one digit. `expected`: the digit count the readings add up to
        where they can. `logits`: `crop_logits(slots)`, where the caller has them already."""
        crops = [c for slot in slots for c in slot.crops]
        logits = self.crop_logits(slots) if logits is None else logits
        has_class = logits.shape[1] > NUM_CLASSES  # a "not one digit" output
        reading = Reading.of(crops, logits, self.temperature)
        pieces = reading.pieces
        if any(len(slot.crops) > len(slot.primary) for slot in slots):
            # Where segmentation was unsure how to cut a group, the most confidently read way.
            starts = np.cumsum([0] + [len(slot.crops) for slot in slots])
            picks = choose_readings(slots, [pieces[a:b] for a, b in zip(starts[:-1], starts[1:])], expected)
            reading = reading.take([int(start) + i for start, chain in zip(starts, picks) for i in chain])
        else:
            picks = [list(slot.primary) for slot in slots]
        if has_class and expected is None:
            owners = [(k, i) for k, chain in enumerate(picks) for i in chain]
            reading, held = self.cut_again(slots, reading, owners)
            reading = self.recut(slots, reading, held)
        return Decoded(reading, reading.not_one_digit() if has_class else None)

    def crop_logits(self, slots: Sequence[Slot]) -> np.ndarray:
        """(crops, classes): the logits of every crop of `slots`, flattened in order; pieces of a
        number at PIECE_SHIFTS, a lone crop once."""
        batch = np.stack([c.image for slot in slots for c in slot.crops])
        return self.piece_logits(batch) if len(batch) > 1 else self.score(batch)

    def piece_logits(self, images: np.ndarray) -> np.ndarray:
        """`score` of (N, 28, 28) pieces averaged over their PIECE_SHIFTS, in one call: (N, classes)."""
        views = np.concatenate([np.roll(images, shift, axis=(1, 2)) for shift in PIECE_SHIFTS])
        return self.score(views).reshape(len(PIECE_SHIFTS), len(images), -1).mean(axis=0)

    def cut_again(
        self, slots: Sequence[Slot], reading: Reading, owners: Sequence[tuple[int, int]]
    ) -> tuple[Reading, list[int]]:
        """Each piece of `reading` the model reads as "not one digit" (RESPLIT_OTHER), cut into
        2 to RESPLIT_PARTS digits at forced cuts (Slot.split), and read so where `prefer_split`
        says. `owners[j]`: (slot index, segment index) of piece j. Returns the new reading and
        the slot index of each of its pieces."""
        readings = [reading.piece(j) for j in range(len(reading))]
        # Only "not one digit" asks for a cut: ink that is no digit at all is not cut into digits.
        other = reading.not_one_digit()
        for j, (k, i) in enumerate(owners):
            if other[j] >= RESPLIT_OTHER and slots[k].split:
                readings[j] = self.best_cut(slots[k], i, readings[j])
        held = [k for (k, _), part in zip(owners, readings) for _ in part.crops]
        return Reading.join(readings), held

    def recut(self, slots: Sequence[Slot], reading: Reading, held: Sequence[int]) -> Reading:
        """Each slot holding a piece still more likely "not one digit" than one (RECUT_OTHER),
        read again with many more candidate cuts (Slot.recut), in one batch, and kept so where
        `prefer_split` says. `held[j]`: the slot index of piece j of `reading`."""
        pieces = reading.pieces
        other = reading.not_one_digit()  # as in cut_again: ink that is no digit is not recut
        poor = sorted({k for j, k in enumerate(held) if other[j] >= RECUT_OTHER and slots[k].recut})
        if not poor:
            return reading
        dense = [recut() for k in poor if (recut := slots[k].recut) is not None]
        # Read once, not at PIECE_SHIFTS: as many held-out numbers read right, with a fifth of
        # the network work (docs/decisions/recut.md).
        logits = self.score(np.stack([c.image for slot in dense for c in slot.crops]))
        readings = [reading.piece(j) for j in range(len(reading))]
        start = 0
        for k, slot in zip(poor, dense):
            rows = logits[start : start + len(slot.crops)]
            start += len(slot.crops)
            p = piece_probabilities(rows, self.temperature)
            chain = choose_readings([slot], [p])[0]
            own = [j for j, owner in enumerate(held) if owner == k]
            if chain and prefer_split(pieces[own], p[chain]):
                # The slot's new reading in place of its first piece; its other pieces go.
                readings[own[0]] = Reading.of([slot.crops[i] for i in chain], rows[chain], self.temperature)
                for j in own[1:]:
                    readings[j] = reading.nothing()
        return Reading.join(readings)

    def best_cut(self, slot: Slot, i: int, whole: Reading) -> Reading:
        """Segment `i` of `slot`: `whole` (its reading as one piece), or its forced cut into 2 to
        RESPLIT_PARTS digits (Slot.split) that `prefer_split` reads best."""
        split = slot.split
        options = [c for k in range(2, RESPLIT_PARTS + 1) if split is not None and (c := split(i, k))]
        if not options:
            return whole
        logits = self.piece_logits(np.stack([c.image for option in options for c in option]))
        best, start = whole, 0
        for option in options:
            rows = logits[start : start + len(option)]
            start += len(option)
            p = piece_probabilities(rows, self.temperature)
            if prefer_split(best.pieces, p):  # of the cuts, the one read most confidently
                best = Reading.of(option, rows, self.temperature)
        return best


def choose_readings(
    slots: Sequence[Slot], probabilities: Sequence[np.ndarray], expected: int | None = None
) -> list[list[int]]:
    """The reading of each slot to keep: its segments, left to right.

    Parameters
    ----------
    slots : sequence of Slot
        Segmentation's groups of ink, each with its candidate segments.
    probabilities : sequence of (segments, classes) arrays
        For each slot, the calibrated piece probabilities of each segment's crop
        (`probabilities.piece_probabilities`): a row adds up to less than 1 where a model with
        the "not one digit" output says the piece is two digits or a fragment.
    expected : int, optional
        The digit count the readings must add up to, where they can.

    Each slot keeps the reading whose digits are read most confidently (mean log-confidence);
    with `expected`, the readings are chosen together, with the best total log-confidence.
    The probabilities must be calibrated: no prior on the digit count is needed then
    (docs/decisions/calibrated-readings.md).

    Examples
    --------
    >>> import numpy as np
    >>> from digitrec.image.segmentation import DigitCrop, Slot
    >>> crop = DigitCrop(np.zeros((28, 28), np.float32), (0, 0, 1, 1))
    >>> slot = Slot(((0, 2), (0, 1), (1, 2)), (crop,) * 3, (0,))  # one digit, or two
    >>> probs = np.full((3, 10), 0.01)
    >>> probs[:, 1] = [0.4, 0.9, 0.9]  # the whole reads poorly, its halves well
    >>> choose_readings([slot], [probs])
    [[1, 2]]
    """
    options = []  # per slot: {digit count: (total log-confidence, segments)}
    for slot, probs in zip(slots, probabilities):
        scores = _log_confidences(probs)
        options.append(_best_chains(slot, scores) or {len(slot.primary): (0.0, list(slot.primary))})
    # max(k, 1): a slot whose cuts leave no chain across it offers a reading of no digits.
    free = [max(o.items(), key=lambda kv: kv[1][0] / max(kv[0], 1))[1][1] for o in options]
    if expected is None:
        return free
    # Best total for each digit count so far, with the chains that reach it.
    totals: dict[int, tuple[float, list[list[int]]]] = {0: (0.0, [])}
    for o in options:
        step: dict[int, tuple[float, list[list[int]]]] = {}
        for n, (score, chains) in totals.items():
            for k, (s, chain) in o.items():
                if n + k <= expected and (n + k not in step or score + s > step[n + k][0]):
                    step[n + k] = (score + s, chains + [chain])
        totals = step
    return totals[expected][1] if expected in totals else free


def prefer_split(current: np.ndarray, parts: np.ndarray) -> bool:
    """Whether a piece is better read as the `parts` it was cut into than as `current` reads it.

    `current` (m, classes) and `parts` (k, classes) are piece probabilities of the piece whole
    (m = 1) or of another cut of it. Each part must read at least RESPLIT_CONFIDENCE, and more
    confidently on average (mean log-confidence, as `choose_readings`).

    Examples
    --------
    >>> import numpy as np
    >>> whole = np.full((1, 10), 0.005)  # the rest, 0.95, is "not one digit"
    >>> halves = np.full((2, 10), 0.005)
    >>> halves[:, 3] = 0.955
    >>> prefer_split(whole, halves), prefer_split(halves, whole)
    (True, False)
    """
    if np.asarray(parts).max(axis=1).min() < RESPLIT_CONFIDENCE:
        return False
    cut, kept = _log_confidences(parts), _log_confidences(current)
    return sum(cut) / len(cut) > sum(kept) / len(kept)


def _log_confidences(probs: np.ndarray) -> list[float]:
    """The log of each row's highest probability (its reading's confidence), floored at 1e-9."""
    return [math.log(max(c, 1e-9)) for c in np.asarray(probs).max(axis=1).tolist()]


def _best_chains(slot: Slot, scores: list[float]) -> dict[int, tuple[float, list[int]]]:
    """For each digit count k, the chain of k segments across the slot with the highest total
    score: {k: (total, segment indices left to right)}."""
    end = max(b for _, b in slot.segments)
    best: list[dict[int, tuple[float, list[int]]]] = [{} for _ in range(end + 1)]
    best[0][0] = (0.0, [])
    for i in sorted(range(len(slot.segments)), key=lambda i: slot.segments[i]):
        a, b = slot.segments[i]
        for k, (total, chain) in list(best[a].items()):
            if k + 1 not in best[b] or total + scores[i] > best[b][k + 1][0]:
                best[b][k + 1] = (total + scores[i], chain + [i])
    return best[end]
