"""Constraints on a reading: checksums, patterns, lexicons, and the lattice search over them.

Run: `.venv/bin/pytest tests/test_constraints.py -q`
"""

from __future__ import annotations

import doctest
import itertools
import math
import re
import time

import numpy as np
import pytest

from digitrec.errors import DigitrecError
from digitrec.image.segmentation import DigitCrop, Slot
from digitrec.recognition import checksums, constraints, lattice
from digitrec.recognition.checksums import CHECKSUMS, gtin, luhn, verhoeff
from digitrec.recognition.constraints import (
    MAX_LEXICON_BYTES,
    ConstraintError,
    Constraints,
    load_lexicon,
    parse_lexicon,
)
from digitrec.recognition.lattice import MAX_EXPANSIONS, best_readings

CROP = DigitCrop(np.zeros((28, 28), np.float32), (0, 0, 1, 1))


def lone_slots(k: int) -> list[Slot]:
    """k groups, each one digit."""
    return [Slot(((0, 1),), (CROP,), (0,))] * k


def sure(text: str, p: float = 0.9) -> np.ndarray:
    """Piece probabilities reading `text`, each digit at p, the rest spread evenly."""
    out = np.full((len(text), 10), (1 - p) / 9)
    out[np.arange(len(text)), [int(c) for c in text]] = p
    return out


def every_reading(probs: np.ndarray, accept) -> list[tuple[str, float]]:
    """Brute force over lone slots: every accepted string and its log-probability, best first."""
    out = []
    for digits in itertools.product(range(10), repeat=len(probs)):
        text = "".join(map(str, digits))
        if accept(text):
            out.append((text, float(sum(math.log(probs[i, d]) for i, d in enumerate(digits)))))
    return sorted(out, key=lambda t: -t[1])


@pytest.mark.parametrize(
    "name, valid, invalid",
    [
        ("luhn", ["79927398713", "4539578763621486", "0"], ["79927398710", "4539578763621487", ""]),
        ("verhoeff", ["2363", "236", "0"], ["2364", "2633", ""]),  # "236": 23 with check digit 6
        ("gtin", ["4006381333931", "036000291452", "96385074"], ["4006381333932", "036000291453", "5"]),
    ],
)
def test_each_checksum_accepts_valid_numbers_and_refuses_wrong_ones(name, valid, invalid):
    assert all(CHECKSUMS[name](v) for v in valid)
    assert not any(CHECKSUMS[name](v) for v in invalid)


@pytest.mark.parametrize("check", [luhn, verhoeff, gtin])
def test_every_checksum_catches_every_single_wrong_digit(check):
    rng = np.random.default_rng(0)
    for _ in range(50):
        body = "".join(map(str, rng.integers(0, 10, 11)))
        number = next(body + c for c in "0123456789" if check(body + c))
        for i, d in itertools.product(range(len(number)), "0123456789"):
            if d != number[i]:
                assert not check(number[:i] + d + number[i + 1 :])


def test_verhoeff_catches_every_swap_of_neighbours():
    for a, b in itertools.permutations("0123456789", 2):
        number = next(f"12{a}{b}9" + c for c in "0123456789" if verhoeff(f"12{a}{b}9" + c))
        assert not verhoeff(number[:2] + b + a + number[4:])


def test_a_lexicon_is_sorted_unique_digit_strings_and_bad_lines_are_named():
    lexicon = parse_lexicon(b"560001\r\n110001\n\n 560001 \n42\n")
    assert lexicon.values.tolist() == [b"110001", b"42", b"560001"] and lexicon.lengths == {2, 6}
    assert "42" in lexicon and "4" not in lexicon
    with pytest.raises(ConstraintError, match=r"line 3: '56A001' is not a string of 1 to 20 digits"):
        parse_lexicon(b"110001\n\n56A001\n")
    with pytest.raises(ConstraintError, match=r"line 2: '12 34' is not"):
        parse_lexicon(b"110001\n12 34\n")
    with pytest.raises(ConstraintError, match=r"line 1: '1{21}' is not"):
        parse_lexicon(b"1" * 21 + b"\n")
    with pytest.raises(ConstraintError, match="holds no values"):
        parse_lexicon(b"\n \n")
    with pytest.raises(ConstraintError, match="over the"):
        parse_lexicon(b"1\n" * (MAX_LEXICON_BYTES // 2 + 1))


def test_a_lexicon_file_is_loaded_once_and_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "codes.txt"
    path.write_text("123456\n654321\n")
    first = load_lexicon(path)
    assert load_lexicon(path) is first
    path.write_text("111111\n")
    assert load_lexicon(path).values.tolist() == [b"111111"]
    with pytest.raises(ConstraintError, match="cannot read the lexicon"):
        load_lexicon(tmp_path / "missing.txt")
    with pytest.raises(ConstraintError, match="not a regular file"):
        load_lexicon(tmp_path)
    monkeypatch.setattr(constraints, "MAX_LEXICON_BYTES", 5)
    (tmp_path / "long.txt").write_text("123456\n")
    with pytest.raises(ConstraintError, match="over the 5-byte limit"):
        load_lexicon(tmp_path / "long.txt")


def test_a_million_line_lexicon_loads_in_under_two_seconds(tmp_path):
    path = tmp_path / "million.txt"
    values = np.random.default_rng(0).choice(10**9, 1_000_000, replace=False)
    path.write_text("\n".join(f"{v:09d}" for v in values) + "\n")
    start = time.perf_counter()
    lexicon = load_lexicon(path)
    seconds = time.perf_counter() - start
    assert len(lexicon) == 1_000_000 and seconds < 2.0, seconds
    start = time.perf_counter()
    assert load_lexicon(path) is lexicon and time.perf_counter() - start < 0.05  # cached


@pytest.mark.parametrize(
    "spec, message",
    [
        (Constraints(pattern="("), "the pattern '(' is not a valid regular expression"),
        (Constraints(pattern=r"(?<=1)2"), "cannot be turned into a finite automaton"),
        (Constraints(pattern=r"(\d)\1"), r"the pattern '(\d)\1' cannot be turned"),
        (Constraints(pattern="[a-z]+"), "matches no string of digits"),
        (Constraints(pattern="1" * 300), "over the limit"),
        (Constraints(checksum="mod97"), "unknown checksum 'mod97'; choose one of: luhn, verhoeff, gtin"),
        (Constraints(digits=0), "the digit count must be 1 to 20"),
        (Constraints(pattern=""), "no number of 1 to 20 digits satisfies the pattern ''"),
        (Constraints(pattern=r"\d{30}"), "no number of 1 to 20 digits"),
        (Constraints(digits=5, pattern=r"\d{6}"), r"no number of 1 to 20 digits satisfies 5 digits, the pattern"),
    ],
)
def test_bad_constraints_say_what_is_wrong(spec, message):
    with pytest.raises(ConstraintError, match=re.escape(message)):
        spec.compile()
    assert issubclass(ConstraintError, DigitrecError)


def test_the_search_finds_the_best_readings_a_brute_force_finds_in_the_same_order():
    rng = np.random.default_rng(1)
    cases = [
        (Constraints(checksum="luhn"), luhn),
        (Constraints(pattern=r"(19|20)\d"), lambda t: t[:2] in ("19", "20")),
        (Constraints(pattern=r"[0-4]*7"), lambda t: t.endswith("7") and all(c in "01234" for c in t[:-1])),
    ]
    for spec, accept in cases:
        probs = rng.dirichlet(np.ones(10) * 0.3, size=3)
        want = every_reading(probs, accept)[:5]
        got = best_readings(lone_slots(3), probs, spec.compile(), n=5)
        assert got.exact
        assert [c.text for c in got.candidates] == [t for t, _ in want]
        assert np.allclose([c.log_probability for c in got.candidates], [s for _, s in want])


def test_the_search_chooses_how_to_cut_a_group_by_the_constraints():
    # One group read whole as a sure 0, or cut into 1 and 7: only the cut has the count asked for.
    slot = Slot(((0, 2), (0, 1), (1, 2)), (CROP,) * 3, (0,))
    probs = np.concatenate([sure("0", 0.95), sure("1", 0.8), sure("7", 0.8)])
    assert best_readings([slot], probs, Constraints(checksum="luhn").compile(), 1).candidates[0].text == "0"
    got = best_readings([slot], probs, Constraints(pattern=r"\d\d").compile(), 1).candidates[0]
    assert got.text == "17" and got.pieces == (1, 2)


def test_a_lexicon_walk_finds_the_value_nearest_the_reading(tmp_path):
    path = tmp_path / "codes.txt"
    path.write_text("123456\n128456\n923456\n")
    probs = sure("123956", 0.9)  # one digit misread: 9 for 4
    probs[3, 4] = 0.08
    probs[0, 9] = 0.05  # 923456 needs one unlikely digit less than 128456 does
    got = best_readings(lone_slots(6), probs, Constraints(lexicon=path).compile(), n=5)
    assert [c.text for c in got.candidates] == ["123456", "923456", "128456"] and got.exact


def test_no_valid_reading_is_an_empty_exact_search_and_a_hopeless_one_stops_at_its_bound():
    probs = sure("1234")
    none = best_readings(lone_slots(4), probs, Constraints(pattern=r"\d{5}").compile())
    assert none.candidates == () and none.exact
    # Twenty flat pieces under a checksum that never holds: the search gives up, and says so.
    flat = np.full((20, 10), 0.1)
    never = Constraints(pattern=r"\d{20}", checksum="luhn").compile()
    spec = never.spec
    hopeless = constraints.Compiled(constraints.Constraints(spec.digits, spec.pattern, None, None), never.fsm, None)
    object.__setattr__(hopeless, "accepts", lambda state, text: False)
    result = best_readings(lone_slots(20), flat, hopeless)
    assert not result.exact and result.expansions == MAX_EXPANSIONS


def test_a_16_digit_number_is_searched_in_under_5_ms():
    probs = sure("4539578763621486", 0.97)
    probs[5] = 0.01
    probs[5, 3], probs[5, 7] = 0.6, 0.32  # the 7 misread as a 3, which breaks the check digit
    compiled = Constraints(digits=16, checksum="luhn").compile()
    slots = lone_slots(16)
    best_readings(slots, probs, compiled)  # warm-up
    times = []
    for _ in range(20):
        start = time.perf_counter()
        found = best_readings(slots, probs, compiled)
        times.append(time.perf_counter() - start)
    assert found.candidates[0].text == "4539578763621486"
    assert sorted(times)[len(times) // 2] < 0.005


def test_the_docstring_examples_run():
    for module in (checksums, constraints, lattice):
        assert doctest.testmod(module).failed == 0
