"""What "not a digit" is fitted and trained on: negatives met the way the recogniser meets them.

Try: `python -c "from digitrec.training.negative_examples import nondigit_examples;
print(nondigit_examples(20, seed=0).shape)"`

The negatives come from `data.negatives` (fonts distorted to look handwritten, stroke-drawn
letters and signs, scribbles, doodles, crossed-out digits). Half are rendered as a user's photo,
scan or canvas and cut by segmentation, half are taken as MNIST-format glyphs. Training
(`run.with_negatives`), the "not a digit" head (`nondigit`) and fitting "not one digit" beside it
(`notdigit`) all use them.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..constants import IMAGE_SIZE
from ..data.negatives import mixed_glyphs, render_input
from ..image.decode import to_uint8
from ..image.segmentation import segment

RENDERED_SHARE = 0.5  # negatives rendered as a user's input and cut by segmentation; the rest as glyphs


def nondigit_examples(
    n: int,
    *,
    seed: int,
    split: str = "fit",
    digits: np.ndarray | None = None,
    rendered: float = RENDERED_SHARE,
    progress: bool = False,
) -> np.ndarray:
    """uint8 (M, 28, 28) MNIST-format pieces that are not digits, from `n` negatives of the
    `split`'s sources (`data.negatives.mixed_glyphs`: family by family): a `rendered` share of
    them drawn as a photo, scan or canvas and cut by `segment` as the recogniser would (every
    piece it keeps), the rest as glyphs. `digits`: uint8 (N, 28, 28) MNIST digits for the
    crossed-out sources. Deterministic for `seed`."""
    glyphs, _ = mixed_glyphs(n, seed, split=split, digits=digits)
    rng = np.random.default_rng([seed, n])
    out: list[np.ndarray] = []
    for glyph in tqdm(glyphs, desc="negatives", unit="glyph", disable=not progress, leave=False):
        if rng.random() < rendered:
            out += [to_uint8(crop.image) for crop in segment(render_input(glyph, rng))]
        else:
            out.append(glyph)
    return np.stack(out) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
