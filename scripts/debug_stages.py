"""Draw every stage `Recognizer.recognize(..., debug=...)` records, for one synthetic phone photo
of a number, as one labelled grid: docs/debug_stages.png.

Try: `DIGITREC_DATA=/path/to/mnist .venv/bin/python scripts/debug_stages.py` (MNIST test digits;
without the data, digits drawn from stroke templates). The same seed gives the same picture.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from digitrec.data import synthetic as syn

ROOT = Path(__file__).resolve().parent.parent
SEED = 3  # picks the digits and renders the photo
DIGITS = 5  # a number of this many digits
JPEG_QUALITY = 80  # phone photos arrive as JPEGs
COLUMNS = 4  # stages per row of the grid; the digits the network saw get a row of their own
TILE_INCHES = 3.2  # width of one stage in the figure

# What each stage is (keys as recognize() stores them; "seg_digit_NN" are added per digit).
CAPTIONS = {
    "0_input": "0 input, decoded to grey",
    "1_gray": "1 working resolution, denoised",
    "2_background": "2 paper level (lighting)",
    "3_flattened": "3 ink signal, lighting removed",
    "4_ink": "4 soft ink around the mask",
    "5_mask": "5 ink mask",
    "seg_0_mask": "segmentation: mask",
    "seg_1_lines": "segmentation: lines (underlines) found",
    "seg_2_digits": "segmentation: digits (geometry)",
}


def photo(seed: int, data_dir: str | None) -> tuple[bytes, str, str]:
    """(JPEG bytes of a phone photo of a number, its digits, where the digits come from)."""

    rng = np.random.default_rng(seed)
    try:
        from digitrec.data.mnist import load_mnist

        test = load_mnist("test", data_dir, progress=False)
        idx = rng.choice(len(test.images), size=DIGITS, replace=False)
        digits, labels, source = [test.images[i] for i in idx], [int(test.labels[i]) for i in idx], "MNIST test"
    except Exception:  # noqa: BLE001 - no MNIST here: template digits still show every stage
        labels = [int(d) for d in rng.integers(0, 10, DIGITS)]
        digits, source = [syn.draw_digit(d, rng) for d in labels], "stroke templates"
    img, _ = syn.render_number(digits, rng, kind="photo")
    return syn.encode(img, "JPEG", quality=JPEG_QUALITY), "".join(map(str, labels)), source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--data-dir", help="MNIST folder (default: $DIGITREC_DATA)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "debug_stages.png")
    args = p.parse_args()

    from digitrec.plotting import pyplot
    from digitrec.recognition.recognizer import Recognizer

    plt = pyplot()

    data, truth, source = photo(args.seed, args.data_dir)
    stages: dict[str, np.ndarray] = {}
    result = Recognizer.load().recognize(data, debug=stages)
    big = [k for k in stages if not k.startswith("seg_digit_")]
    small = [k for k in stages if k.startswith("seg_digit_")]
    rows = math.ceil(len(big) / COLUMNS) + (1 if small else 0)
    shape = stages["0_input"].shape
    tile_h = TILE_INCHES * shape[0] / shape[1] + 0.4  # room for the caption
    fig = plt.figure(figsize=(COLUMNS * TILE_INCHES, rows * tile_h + 0.6))
    grid = fig.add_gridspec(rows, 1)
    top = grid[: rows - (1 if small else 0)].subgridspec(rows - (1 if small else 0), COLUMNS)
    for n, key in enumerate(big):
        ax = fig.add_subplot(top[n // COLUMNS, n % COLUMNS])
        ax.imshow(stages[key], cmap="gray", vmin=0, vmax=1)
        ax.set_title(CAPTIONS.get(key, key), fontsize=9)
        ax.axis("off")
    if small:
        strip = grid[rows - 1].subgridspec(1, max(len(small), COLUMNS))
        for n, (key, digit) in enumerate(zip(small, result.digits)):
            ax = fig.add_subplot(strip[0, n])
            ax.imshow(stages[key], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{key}: read {digit.digit} ({digit.confidence:.2f})", fontsize=9)
            ax.axis("off")
    fig.suptitle(
        f"recognize(debug=...) stages: a phone photo of {truth} ({source} digits, seed {args.seed}) "
        f"read as {result.text or '(rejected)'}",
        fontsize=11,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    print(f"{args.out}: {len(stages)} stages; {truth} read as {result.text or '(rejected)'}")


if __name__ == "__main__":
    main()
