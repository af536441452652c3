"""Real-world recognition: MNIST *test* digits rendered the way people's images look (phone
photos, scans, canvas exports in each polarity and with transparency, whole numbers, blank
pages), recognised end to end from encoded file bytes by the same pipeline as `digitrec predict`.

Try: `python benchmarks/realworld.py --quick` or the full run `python benchmarks/realworld.py`;
`--seed 7` draws and renders another sample, to check that a change is not tuned to one;
`--training-digits` renders training digits, for choosing settings without the test digits;
`--held-out-digits` renders only those the model was trained without (a `--holdout N` run,
e.g. `digitrec train --preset robust --holdout 10000` then `digitrec add-not-a-digit`): the
model has not learned them, so they show its misreads as the test digits do.

Targets with the shipped default model: single digits >= 98.5%, whole numbers (every digit
right) >= 95%, blank and noise-only images rejected 100%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, format_table, write_json  # noqa: E402
from digitrec.data import synthetic as syn

SEED = 2024
CANVAS_STYLES = ("white_on_black", "black_on_white", "black_on_transparent", "white_on_transparent")


def make_sets(images: np.ndarray, labels: np.ndarray, n: int, n_numbers: int, seed: int = SEED):
    """{set name: [(file bytes, expected text)]}, deterministic for `seed`."""

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=n, replace=False)
    sets: dict[str, list[tuple[bytes, str]]] = {}
    sets["mnist_28x28"] = [(syn.encode(images[i]), str(labels[i])) for i in pick]
    sets["scan"] = [(syn.encode(syn.render_scan(images[i], rng)), str(labels[i])) for i in pick]
    sets["photo_jpeg"] = [
        (syn.encode(syn.render_photo(images[i], rng), "JPEG", quality=int(rng.integers(50, 95))), str(labels[i]))
        for i in pick
    ]
    for style in CANVAS_STYLES:
        sets[f"canvas_{style}"] = [(syn.encode(syn.render_canvas(images[i], rng, style)), str(labels[i])) for i in pick]
    numbers = []
    for _ in range(n_numbers):
        k = int(rng.integers(3, 9))
        idx = rng.choice(len(images), size=k, replace=False)
        img, _ = syn.render_number([images[i] for i in idx], rng, kind=str(rng.choice(["photo", "scan"])))
        numbers.append((syn.encode(img, "JPEG", quality=90), "".join(str(labels[i]) for i in idx)))
    sets["numbers_3to8"] = numbers
    sets["blank"] = [(syn.encode(b), "") for b in syn.blank_images(rng, n)]
    return sets


def evaluate_set(recognizer, items: list[tuple[bytes, str]], expected_digits: bool = False) -> dict:
    correct, seconds = 0, []
    for data, truth in items:
        start = time.perf_counter()
        result = recognizer.recognize(data, expected_digits=len(truth) if expected_digits and truth else None)
        seconds.append(time.perf_counter() - start)
        correct += result.text == truth
    return {
        "n": len(items),
        "correct": correct,
        "accuracy": correct / len(items),
        "median_ms": 1000 * statistics.median(seconds),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a .onnx or .safetensors model (default: the shipped one)")
    p.add_argument("--n", type=int, default=1000, help="digits per single-digit set")
    p.add_argument("--numbers", type=int, default=300, help="numbers of 3 to 8 digits")
    p.add_argument("--quick", action="store_true", help="100 digits per set, 50 numbers")
    p.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help="picks the digits and renders them (a second seed checks that a change is not tuned to one sample)",
    )
    p.add_argument(
        "--training-digits",
        action="store_true",
        help="render MNIST training digits instead (for choosing settings: the test digits choose nothing)",
    )
    p.add_argument(
        "--held-out-digits",
        action="store_true",
        help="render only the training digits the model "
        "was trained without (its run's --holdout): unseen, as test digits are, yet fair to choose on",
    )
    p.add_argument("--data-dir")
    p.add_argument("--json-out", type=Path, default=RESULTS_DIR / "realworld.json")
    args = p.parse_args()
    if args.quick:
        args.n, args.numbers = 100, 50

    from digitrec.data.mnist import load_mnist
    from digitrec.recognition.recognizer import Recognizer

    digits = load_mnist(
        "train" if args.training_digits or args.held_out_digits else "test", args.data_dir, progress=False
    )
    recognizer = Recognizer.load(args.model)
    images, labels = digits.images, digits.labels
    if args.held_out_digits:
        from digitrec.data.mnist import holdout_split
        from digitrec.metadata import holdout_of

        holdout = holdout_of(recognizer.metadata)
        if not holdout:
            raise SystemExit(f"{recognizer.info['path']} was trained on every training digit: none is held out")
        held = holdout_split(len(images), holdout)[1]
        images, labels = images[held], labels[held]
    sets = make_sets(images, labels, args.n, args.numbers, args.seed)
    rows = []
    for name, items in sets.items():
        r = evaluate_set(recognizer, items)
        if name == "numbers_3to8":  # also with the count given, as `--digits N` does
            given = evaluate_set(recognizer, items, expected_digits=True)
            rows.append({"set": name, **r, "with_digits_given": given["accuracy"]})
        else:
            rows.append({"set": name, **r})
        print(f"{name}: {100 * r['accuracy']:.2f}%", flush=True)
    singles = [r for r in rows if r["set"] not in ("numbers_3to8", "blank")]
    single_acc = sum(r["correct"] for r in singles) / sum(r["n"] for r in singles)
    write_json(
        args.json_out,
        {
            "model": recognizer.info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "sets": rows,
            "single_digit_accuracy": single_acc,
        },
    )
    table = [
        {
            "set": r["set"],
            "n": r["n"],
            "acc": f"{100 * r['accuracy']:.2f}" + (" (rejected)" if r["set"] == "blank" else ""),
            "given": f"{100 * r['with_digits_given']:.2f}" if "with_digits_given" in r else "",
            "ms": f"{r['median_ms']:.1f}",
        }
        for r in rows
    ]
    table.append({"set": "all single digits", "n": sum(r["n"] for r in singles), "acc": f"{100 * single_acc:.2f}"})
    print(f"\nmodel: {recognizer.info['path']} ({recognizer.info['architecture']}, {recognizer.info['backend']})")
    print(f"results: {args.json_out}")
    print(
        format_table(
            table,
            [("set", "set"), ("n", "n"), ("acc", "correct %"), ("given", "with --digits %"), ("ms", "median ms/image")],
        )
    )


if __name__ == "__main__":
    main()
