import pytest
import torch

from digitrec.nn.augment import affine_view, augment_batch, elastic_field
from digitrec.nn.augment_config import AugmentConfig


def square_digits(n: int) -> torch.Tensor:
    x = torch.zeros(n, 28, 28)
    x[:, 10:18, 12:16] = 1.0
    return x


def test_no_distortion_is_identity():
    x = square_digits(4)
    assert torch.equal(augment_batch(x, AugmentConfig()), x)


def test_shift_moves_the_ink_by_at_most_the_bound():
    torch.manual_seed(0)
    x = square_digits(64)
    y = augment_batch(x, AugmentConfig(shift=3))
    cols = torch.arange(28.0)
    centre = (y.sum(1) * cols).sum(1) / y.sum((1, 2))
    moved = centre - 13.5
    assert moved.abs().max() <= 3.01 and moved.std() > 0.5
    assert torch.allclose(y.sum((1, 2)), x.sum((1, 2)), rtol=0.05)  # ink is moved, not lost


def test_every_distortion_changes_images_differently_and_keeps_range():
    torch.manual_seed(0)
    x = square_digits(8)
    cfg = AugmentConfig(rotate=15, scale=0.15, shift=2, shear=10, elastic_alpha=3, noise=0.1)
    y = augment_batch(x, cfg)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(y[0], y[1])


def test_same_seed_same_batch_and_p_keeps_some_clean():
    x = square_digits(32)
    cfg = AugmentConfig(rotate=20, p=0.5)
    torch.manual_seed(1)
    a = augment_batch(x, cfg)
    torch.manual_seed(1)
    assert torch.equal(a, augment_batch(x, cfg))
    clean = (a == x).all(2).all(1)
    assert 0 < clean.sum() < 32


def test_elastic_field_is_smooth_and_scaled():
    torch.manual_seed(0)
    f = elastic_field(4, 28, alpha=8, sigma=4, device=torch.device("cpu")) * 28 / 2  # back to pixels
    assert f.shape == (4, 28, 28, 2)
    neighbour_step = (f[:, 1:] - f[:, :-1]).abs().mean()
    assert neighbour_step < f.abs().mean() / 2  # neighbours move together


def test_affine_view_is_exact_for_whole_pixel_shifts_and_rotates_counter_clockwise():
    x = torch.zeros(1, 28, 28)
    x[0, 10, 5] = 1.0
    assert torch.allclose(affine_view(x), x, atol=1e-6)
    assert affine_view(x, shift=(2, 1))[0, 11, 7] == pytest.approx(1.0, abs=1e-5)
    x = torch.zeros(1, 28, 28)
    x[0, 14, 20] = 1.0  # right of the centre ...
    y = affine_view(x, rotate=90)
    assert divmod(int(y.argmax()), 28) == (7, 14)  # ... turns to above it


def test_each_degradation_changes_some_images_and_keeps_range():
    x = square_digits(32)
    for field in (
        {"thickness": True},
        {"blur": 1.5},
        {"impulse": 0.1},
        {"fog": 0.5},
        {"lines": 1.0},
        {"outline": True},
        {"invert": True},
    ):
        torch.manual_seed(0)
        y = augment_batch(x, AugmentConfig(corrupt_p=0.5, **field))
        changed = ~torch.isclose(y, x, atol=1e-6).all(2).all(1)
        assert 0 < changed.sum() < 32, field  # a share of the batch, not all of it
        assert y.min() >= 0 and y.max() <= 1 and y.shape == x.shape


def test_thickening_adds_ink_and_blur_keeps_it():
    x = square_digits(64)
    torch.manual_seed(0)
    y = augment_batch(x, AugmentConfig(corrupt_p=1.0, thickness=True))
    assert (y.sum((1, 2)) != x.sum((1, 2))).all()
    torch.manual_seed(0)
    y = augment_batch(x, AugmentConfig(corrupt_p=1.0, blur=2.0))
    assert torch.allclose(y.sum((1, 2)), x.sum((1, 2)), rtol=1e-3)  # ink spread, not lost (away from edges)
