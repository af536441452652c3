"""What the application knows about the number it expects: its digit count, a regular expression
it matches, a check digit, a list of valid values.

Try: `digitrec predict card.png --digits 16 --checksum luhn`, or
`digitrec predict code.png --lexicon codes.txt` (one valid value per line).

`Constraints` is what a user gives; `Constraints.compile()` checks it (a `ConstraintError` says
what is wrong) and gives a `Compiled` automaton that the lattice search (`lattice.py`) walks one
digit at a time: the count, the pattern (a finite automaton, from `interegular`) and the lexicon
(an implicit trie: a range of its sorted values) refuse a prefix as soon as it cannot end well;
the checksum judges whole strings.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import interegular
import numpy as np

from ..errors import DigitrecError
from .checksums import CHECKSUMS

__all__ = [
    "LEXICON_CACHE",
    "MAX_DIGITS",
    "MAX_LEXICON_BYTES",
    "MAX_PATTERN_CHARS",
    "Compiled",
    "ConstraintError",
    "Constraints",
    "Lexicon",
    "load_lexicon",
]

MAX_DIGITS = 20  # the longest number (a phone number, an amount) on one line
MAX_PATTERN_CHARS = 200  # a --pattern longer than this is refused (its automaton grows with it)
MAX_LEXICON_BYTES = 64 * 1024 * 1024  # a --lexicon file over this size is refused (~5 M 12-digit values)
LEXICON_CACHE = 4  # lexicons kept loaded, by path, size and modification time


class ConstraintError(DigitrecError):
    """A constraint that cannot be used: an invalid pattern, an unknown checksum, a bad lexicon.
    The CLI exits 2; the service answers 422."""


@dataclass(frozen=True, eq=False)
class Lexicon:
    """Valid values, sorted and unique: (n,) bytes array of ASCII digit strings."""

    values: np.ndarray
    lengths: frozenset[int]  # the lengths its values have

    def __len__(self) -> int:
        return len(self.values)

    def __contains__(self, text: object) -> bool:
        key = str(text).encode("ascii", "replace")
        i = int(np.searchsorted(self.values, key))
        return i < len(self.values) and self.values[i] == key

    def narrow(self, lo: int, hi: int, prefix: str) -> tuple[int, int]:
        """The range of values[lo:hi] that start with `prefix` (values[lo:hi] all start with
        `prefix` minus its last digit): one step down the implicit trie."""
        key = prefix.encode("ascii")
        # ":" follows "9" in ASCII: every digit string starting with `prefix` sorts below prefix + ":".
        a, b = np.searchsorted(self.values[lo:hi], [key, key + b":"])
        return lo + int(a), lo + int(b)


_lexicons: OrderedDict[tuple[str, int, int], Lexicon] = OrderedDict()
_lexicons_lock = threading.Lock()
_ALLOWED = np.zeros(256, bool)
_ALLOWED[list(b"0123456789 \t\r\n")] = True


def parse_lexicon(data: bytes, name: str = "the lexicon") -> Lexicon:
    """A Lexicon from a file's bytes: one value per line, blank lines skipped, surrounding spaces
    ignored. Raises ConstraintError for a line that is not 1 to MAX_DIGITS digits.

    Vectorised (numpy): a million lines load in well under a second; sorting them as Python
    strings alone takes about one.

    >>> parse_lexicon(b"560001\\n110001\\n 560001 \\n\\n").values.tolist()
    [b'110001', b'560001']
    """
    if len(data) > MAX_LEXICON_BYTES:
        raise ConstraintError(f"{name} has {len(data)} bytes, over the {MAX_LEXICON_BYTES}-byte limit; split it")
    if not data.strip():
        raise ConstraintError(f"{name} holds no values: write one valid number per line")
    raw = np.frombuffer(data, np.uint8)
    digit = (raw >= 48) & (raw <= 57)
    kept = np.flatnonzero(digit | (raw == 10))  # digits and line ends: spaces dropped
    is_digit = digit[kept]
    # Two digits with only spaces between them: a line holding two values.
    split = np.flatnonzero(is_digit[:-1] & is_digit[1:] & (np.diff(kept) > 1))
    bad = np.flatnonzero(~_ALLOWED[raw])
    positions = [int(bad[0])] if bad.size else []
    positions += [int(kept[split[0]])] if split.size else []
    values = data.split()
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    if lengths.max() > MAX_DIGITS:
        positions.append(data.index(values[int(np.argmax(lengths > MAX_DIGITS))]))
    if positions:
        at = min(positions)
        line = data.count(b"\n", 0, at)
        shown = data.split(b"\n")[line].strip()[:40].decode("ascii", "replace")
        raise ConstraintError(f"{name}, line {line + 1}: {shown!r} is not a string of 1 to {MAX_DIGITS} digits")
    ordered = np.sort(np.array(values, dtype=f"S{lengths.max()}"))
    unique = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
    return Lexicon(unique, frozenset(int(n) for n in np.unique(lengths)))


def load_lexicon(path: str | os.PathLike) -> Lexicon:
    """The Lexicon in the file at `path`, from a cache of the last LEXICON_CACHE loaded (a file
    changed since is read again)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise ConstraintError(
            f"cannot read the lexicon {path}: {e.strerror}; give a file of one value per line"
        ) from None
    if not path.is_file():
        raise ConstraintError(f"the lexicon {path} is not a regular file")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lexicons_lock:
        if key in _lexicons:
            _lexicons.move_to_end(key)
            return _lexicons[key]
    if st.st_size > MAX_LEXICON_BYTES:
        raise ConstraintError(f"the lexicon {path} has {st.st_size} bytes, over the {MAX_LEXICON_BYTES}-byte limit")
    with path.open("rb") as f:
        lexicon = parse_lexicon(f.read(MAX_LEXICON_BYTES + 1), f"the lexicon {path}")
    with _lexicons_lock:
        _lexicons[key] = lexicon
        while len(_lexicons) > LEXICON_CACHE:
            _lexicons.popitem(last=False)
    return lexicon


@dataclass(frozen=True)
class Constraints:
    """What a reading must satisfy. Every field is optional; none set means no constraint.

    digits: the digit count; pattern: a regular expression the digit string matches in full
    (Python syntax, `\\d`, groups, alternation, counts; no look-behinds or back-references);
    checksum: a name in checksums.CHECKSUMS; lexicon: a file of valid values, one per line."""

    digits: int | None = None
    pattern: str | None = None
    checksum: str | None = None
    lexicon: str | os.PathLike | None = None

    @property
    def beyond_count(self) -> bool:
        """Whether anything besides the digit count is asked (the count alone reads as before)."""
        return any(v is not None for v in (self.pattern, self.checksum, self.lexicon))

    def compile(self) -> Compiled:
        """Check every field and build the automaton (a lexicon comes from load_lexicon's cache).
        Raises ConstraintError."""
        if self.digits is not None and not 1 <= self.digits <= MAX_DIGITS:
            raise ConstraintError(f"the digit count must be 1 to {MAX_DIGITS}; got {self.digits}")
        if self.checksum is not None and self.checksum not in CHECKSUMS:
            raise ConstraintError(f"unknown checksum '{self.checksum}'; choose one of: {', '.join(CHECKSUMS)}")
        fsm = _pattern_fsm(self.pattern) if self.pattern is not None else None
        lexicon = None if self.lexicon is None else load_lexicon(self.lexicon)
        compiled = Compiled(self, fsm, lexicon)
        lengths = compiled.lengths or frozenset(range(1, MAX_DIGITS + 1))
        if fsm is not None:
            lengths &= fsm.lengths
        if not lengths & frozenset(range(1, MAX_DIGITS + 1)):
            raise ConstraintError(f"no number of 1 to {MAX_DIGITS} digits satisfies {self.describe()}")
        return compiled

    def describe(self) -> str:
        """The constraints in words, for messages: "16 digits, checksum luhn"."""
        parts = [
            f"{self.digits} digits" if self.digits is not None else "",
            f"the pattern '{self.pattern}'" if self.pattern is not None else "",
            f"checksum {self.checksum}" if self.checksum is not None else "",
            f"the lexicon {self.lexicon}" if self.lexicon is not None else "",
        ]
        return ", ".join(p for p in parts if p) or "nothing"


@dataclass(frozen=True)
class _Fsm:
    """A deterministic automaton over the digits: transitions[state][digit] (-1: refused), and
    the states from which a final state can still be reached."""

    initial: int
    transitions: tuple[tuple[int, ...], ...]
    finals: frozenset[int]
    lengths: frozenset[int]  # the lengths up to MAX_DIGITS of the digit strings it accepts


@functools.lru_cache(maxsize=64)  # a service sees the same few patterns again and again
def _pattern_fsm(pattern: str) -> _Fsm:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ConstraintError(f"the pattern has {len(pattern)} characters, over the limit of {MAX_PATTERN_CHARS}")
    try:
        re.compile(pattern)
    except re.error as e:
        raise ConstraintError(f"the pattern '{pattern}' is not a valid regular expression: {e}") from None
    try:
        fsm = interegular.parse_pattern(pattern).to_fsm()
    except Exception:  # interegular's own types for syntax it does not turn into an automaton
        raise ConstraintError(
            f"the pattern '{pattern}' cannot be turned into a finite automaton: use digits, \\d, [0-9] "
            "classes, groups, | and counts, without look-behinds or back-references"
        ) from None
    states = sorted(fsm.states)
    index = {s: i for i, s in enumerate(states)}
    table = []
    for s in states:
        moves = fsm.map.get(s, {})
        row = []
        for d in "0123456789":
            nxt = moves.get(fsm.alphabet[d])
            row.append(index[nxt] if nxt is not None else -1)
        table.append(row)
    # Keep only states that can still reach a final one: a prefix elsewhere is refused at once.
    live = {index[s] for s in fsm.finals}
    grew = True
    while grew:
        grew = False
        for i, row in enumerate(table):
            if i not in live and any(n in live for n in row):
                live.add(i)
                grew = True
    pruned = tuple(tuple(n if n in live else -1 for n in row) for row in table)
    if index[fsm.initial] not in live:
        raise ConstraintError(f"the pattern '{pattern}' matches no string of digits")
    finals = frozenset(index[s] for s in fsm.finals)
    lengths, reached = set(), {index[fsm.initial]}
    for n in range(1, MAX_DIGITS + 1):  # the states n digits can reach
        reached = {t for r in reached for t in pruned[r] if t >= 0}
        lengths.update([n] if reached & finals else [])
    return _Fsm(index[fsm.initial], pruned, finals, frozenset(lengths))


@dataclass(frozen=True)
class Compiled:
    """Constraints ready for the search. A state is (digits so far, pattern state, lexicon range)."""

    spec: Constraints
    fsm: _Fsm | None
    lexicon: Lexicon | None

    @property
    def lengths(self) -> frozenset[int] | None:
        """The digit counts a valid reading can have; None: any."""
        counts = None if self.spec.digits is None else frozenset({self.spec.digits})
        if self.lexicon is not None:
            counts = self.lexicon.lengths if counts is None else counts & self.lexicon.lengths
        return counts

    def start(self) -> tuple[int, int, int]:
        fsm = -1 if self.fsm is None else self.fsm.initial
        return fsm, 0, len(self.lexicon) if self.lexicon is not None else 0

    def step(self, state: tuple[int, int, int], text: str) -> tuple[int, int, int] | None:
        """The state after the last digit of `text` (the prefix so far, that digit included), or
        None when no valid reading starts with `text`."""
        fsm, lo, hi = state
        if self.spec.digits is not None and len(text) > self.spec.digits:
            return None
        if self.fsm is not None:
            fsm = self.fsm.transitions[fsm][ord(text[-1]) - 48]
            if fsm < 0:
                return None
        if self.lexicon is not None:
            lo, hi = self.lexicon.narrow(lo, hi, text)
            if lo >= hi:
                return None
        return fsm, lo, hi

    def accepts(self, state: tuple[int, int, int], text: str) -> bool:
        """Whether `text`, which reached `state`, is a valid reading."""
        fsm, lo, _ = state
        if self.spec.digits is not None and len(text) != self.spec.digits:
            return False
        if self.fsm is not None and fsm not in self.fsm.finals:
            return False
        if self.lexicon is not None and self.lexicon.values[lo] != text.encode("ascii"):
            return False
        return self.spec.checksum is None or CHECKSUMS[self.spec.checksum](text)
