"""A person's profile: prototypes of their samples' features, added as evidence to the logits.

Run: `.venv/bin/pytest tests/test_profile.py -q`
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from digitrec.constants import NUM_CLASSES
from digitrec.data import writers as wr
from digitrec.errors import DigitrecError
from digitrec.recognition import profile as pm
from digitrec.recognition.profile import Profile, adapt

# A writer far from MNIST for the shipped model (benchmarks/personalize.py reads it under 90%).
FAR_FONT = "font:DejaVuSerifCondensed-Bold"


def _random(n: int, width: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, width)).astype(np.float32), rng.integers(0, NUM_CLASSES, n)


def test_the_doctests_hold():
    assert doctest.testmod(pm).failed == 0


def test_adapt_keeps_each_digits_mean_direction_and_its_count():
    features, labels = _random(40)
    labels[labels == 3] = 4  # no samples of 3
    p = adapt(features, labels)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    for d in range(NUM_CLASSES):
        mean = unit[labels == d].sum(0)
        if d == 3:
            assert not p.prototypes[d].any() and p.counts[d] == 0
        else:
            np.testing.assert_allclose(p.prototypes[d], mean / np.linalg.norm(mean), rtol=1e-5)
            assert p.counts[d] == np.count_nonzero(labels == d)
    assert p.samples == 40 and p.prototypes.dtype == np.float32
    assert (p.strength, p.margin) == (pm.PROFILE_STRENGTH, pm.PROFILE_MARGIN)


def test_adjust_adds_strength_times_the_cosine_over_the_margin():
    p = adapt(np.array([[1, 0, 0], [0, 1, 0]], np.float32), np.array([2, 6]), strength=10.0, margin=0.5)
    features = np.array([[3, 0, 0], [1, 1, 0], [0, 0, 1]], np.float32)  # cosines to 2: 1, 0.707, 0
    out = p.adjust(np.zeros((3, 10), np.float32), features)
    np.testing.assert_allclose(out[:, 2], [5.0, 10 * (np.sqrt(0.5) - 0.5), 0.0], rtol=1e-5)
    np.testing.assert_allclose(out[:, 6], [0.0, 10 * (np.sqrt(0.5) - 0.5), 0.0], rtol=1e-5)
    assert not out[:, [0, 1, 3, 4, 5, 7, 8, 9]].any()  # digits without samples: as the model reads them


def test_a_profile_only_raises_digit_logits():
    features, labels = _random(60, seed=1)
    p = adapt(features, labels, strength=50.0, margin=0.0)
    logits = np.random.default_rng(2).normal(0, 3, (25, NUM_CLASSES + 2)).astype(np.float32)
    queries, _ = _random(25, seed=3)
    out = p.adjust(logits, queries)
    assert out.shape == logits.shape and out.dtype == np.float32
    assert (out[:, :NUM_CLASSES] >= logits[:, :NUM_CLASSES]).all() and (out > logits).any()
    assert np.array_equal(out[:, NUM_CLASSES:], logits[:, NUM_CLASSES:])  # "not one digit", "not a digit"
    assert np.array_equal(logits, np.random.default_rng(2).normal(0, 3, (25, 12)).astype(np.float32))  # not in place


def test_a_profile_survives_to_bytes_and_back():
    features, labels = _random(30, width=1152)
    p = adapt(features, labels, strength=12.5, margin=0.65)
    data = p.to_bytes()
    q = Profile.from_bytes(data)
    assert np.array_equal(q.prototypes, p.prototypes) and np.array_equal(q.counts, p.counts)
    assert (q.strength, q.margin) == (12.5, 0.65)
    assert len(data) < 64 * 1024  # DigitNet's width, every digit: within the store's budget
    np.testing.assert_array_equal(
        q.adjust(np.zeros((2, 10), np.float32), features[:2]), p.adjust(np.zeros((2, 10), np.float32), features[:2])
    )


def test_a_width_mismatch_raises_digitrec_error():
    p = adapt(*_random(20, width=16))
    with pytest.raises(DigitrecError, match="width 16"):
        p.adjust(np.zeros((1, 10), np.float32), np.ones((1, 8), np.float32))


def test_adapt_refuses_samples_it_cannot_use():
    features, labels = _random(5)
    with pytest.raises(DigitrecError):
        adapt(features, labels[:4])  # a label missing
    with pytest.raises(DigitrecError):
        adapt(features, np.array([0, 1, 2, 3, 10]))  # not a digit
    with pytest.raises(DigitrecError):
        adapt(features[0], labels[:1])  # not (N, D)
    with pytest.raises(DigitrecError):
        adapt(np.ones((1, pm.MAX_FEATURES + 1), np.float32), labels[:1])


def test_a_profile_of_five_samples_per_digit_lifts_a_far_font_writer():
    """The shipped model misreads a bold serif hand; five of its samples per digit fix most of
    that, and the base model reads as before."""
    from digitrec.recognition.recognizer import Recognizer

    fonts = {w.name: w for w in wr.writers(kinds=("font",))}
    if FAR_FONT not in fonts:
        pytest.skip(f"{FAR_FONT} is not installed")
    writer, per_digit, test = fonts[FAR_FONT], 5, 10
    recognizer = Recognizer.load()
    pieces, labels = [], []
    for d in range(NUM_CLASSES):
        for image in writer.digits(d, per_digit + test, seed=11):
            pieces.append(recognizer.recognize(image, expected_digits=1).digits[0].image)
            labels.append(d)
    pieces_a, labels_a = np.stack(pieces), np.array(labels)
    is_sample = np.tile(np.arange(per_digit + test) < per_digit, NUM_CLASSES)
    before = recognizer.predict_logits(pieces_a[~is_sample])
    _, features = recognizer.features(pieces_a[is_sample])
    profile = adapt(features, labels_a[is_sample])
    base = float(np.mean(before[:, :NUM_CLASSES].argmax(1) == labels_a[~is_sample]))
    personal = recognizer.predict_logits(pieces_a[~is_sample], profile=profile)[:, :NUM_CLASSES].argmax(1)
    accuracy = float(np.mean(personal == labels_a[~is_sample]))
    assert base < 0.92 and accuracy >= 0.97 and accuracy >= base + 0.08, (base, accuracy)
    assert np.array_equal(recognizer.predict_logits(pieces_a[~is_sample]), before)  # the model is unchanged
