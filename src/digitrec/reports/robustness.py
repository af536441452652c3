"""Robustness: a model's accuracy on the 15 MNIST-C corruptions of the test set.

Try: `digitrec robustness src/digitrec/assets/default.safetensors --out runs/robustness`.

Each corruption of the 10,000 test digits is generated once and cached (see `corruptions`);
the model (a .safetensors checkpoint or an .onnx model, several make an ensemble averaging
their probabilities) runs through `Recognizer`, the same path as `digitrec predict`, so an ONNX
model needs no torch. The report gives clean accuracy, each corruption's accuracy, their mean
and the worst one, as a table, JSON (robustness.json), a bar chart (robustness.png) and a grid
of corrupted examples (robustness_examples.png).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..constants import NUM_CLASSES
from ..data.corruption_cache import corrupted_test_set
from ..data.corruptions import DEFAULT_SEED, check_corruptions, check_seed, resolve_severity
from ..data.mnist import digits_to_evaluate
from ..errors import DigitrecError
from ..fileio import atomic_write_text, ensure_dir
from ..plotting import pyplot, save_fig
from ..recognition.recognizer import Recognizer

EXAMPLE_COLUMNS = NUM_CLASSES  # the example grid shows one digit of each class
REPORT_FILE, CHART_FILE, EXAMPLES_FILE = "robustness.json", "robustness.png", "robustness_examples.png"
CHART_MARGIN = 5.0  # percentage points left of the worst bar in the chart


@dataclass
class RobustnessResult:
    report: dict[str, Any]
    files: dict[str, str]


def _training_seconds(recognizer: Recognizer) -> float | None:
    # The checkpoint's (or exported model's) metadata records how long training took.
    seconds = (recognizer.metadata.get("training") or {}).get("seconds")
    return float(seconds) if isinstance(seconds, (int, float)) else None


def _example_indices(labels: np.ndarray) -> np.ndarray:
    """The first image of each class present, topped up with the first others to fill a row."""
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(NUM_CLASSES) if (labels == c).any()]
    rest = [i for i in range(min(len(labels), 2 * EXAMPLE_COLUMNS)) if i not in firsts]
    return np.array((firsts + rest)[:EXAMPLE_COLUMNS], dtype=np.intp)


def run_robustness(
    models: Sequence[Path | str],
    *,
    corruptions: Sequence[str] | None = None,
    severity: int | None = None,
    seed: int = DEFAULT_SEED,
    data_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    out_dir: Path | str | None = None,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> RobustnessResult:
    """Accuracy of `models` (one, or an ensemble) on the clean and corrupted test set, or on
    `images`/`labels`; `severity` None uses MNIST-C's level for each corruption; `limit` keeps
    the first that many digits. Writes robustness.json and the PNGs to `out_dir` if given."""
    # Every argument is checked before anything slow runs.
    names = check_corruptions(list(corruptions) if corruptions is not None else None)
    levels = {name: resolve_severity(name, severity) for name in names}
    seed = check_seed(seed)
    if limit is not None and limit < 1:
        raise DigitrecError(f"--limit must be at least 1, got {limit}")
    if not models:
        raise DigitrecError("give at least one checkpoint or .onnx model")
    out = ensure_dir(out_dir, "robustness report folder") if out_dir is not None else None
    recognizers = [Recognizer.load(p) for p in models]  # a bad model fails before data is read
    images, labels, data_name = digits_to_evaluate(images, labels, data_dir, progress=progress)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
        data_name += f", first {len(images)}"
    labels = np.asarray(labels)
    if not len(labels):
        raise DigitrecError("no images to evaluate")

    def errors(x: np.ndarray) -> int:
        total = recognizers[0].predict_proba(x)
        for r in recognizers[1:]:
            total = total + r.predict_proba(x)
        return int(((total / len(recognizers)).argmax(1) != labels).sum())

    start = time.perf_counter()
    clean = 1 - errors(images) / len(labels)
    shown = _example_indices(labels)
    examples = {"clean": images[shown]}
    rows: list[dict[str, Any]] = []
    for name in tqdm(names, desc="corruptions", unit="set", disable=not progress, file=sys.stderr, leave=False):
        begun = time.perf_counter()
        corrupted = corrupted_test_set(name, seed, levels[name], cache_dir=cache_dir, source=(images, labels))
        wrong = errors(corrupted.images)
        acc = 1 - wrong / len(labels)
        examples[name] = corrupted.images[shown]
        rows.append(
            {
                "name": name,
                "severity": levels[name],
                "accuracy": acc,
                "errors": wrong,
                "drop": clean - acc,
                "cached": not corrupted.generated,
                "seconds": time.perf_counter() - begun,
                "images_file": str(corrupted.image_file),
                "labels_file": str(corrupted.label_file),
                "images_sha256": corrupted.sha256,
            }
        )
    worst = min(rows, key=lambda r: r["accuracy"])
    mean = float(np.mean([r["accuracy"] for r in rows]))
    report: dict[str, Any] = {
        "models": [{**r.info, "training_seconds": _training_seconds(r)} for r in recognizers],
        "data": data_name,
        "n": int(len(labels)),
        "seed": seed,
        "severity": severity if severity is not None else "mnist-c",
        "clean_accuracy": clean,
        "mean_accuracy": mean,
        "mean_drop": clean - mean,
        "worst": {"name": worst["name"], "severity": worst["severity"], "accuracy": worst["accuracy"]},
        "corruptions": rows,
        "seconds": time.perf_counter() - start,
    }
    files: dict[str, str] = {}
    if out is not None:
        files["report"] = str(out / REPORT_FILE)
        try:
            plot_accuracies(report, out / CHART_FILE)
            plot_examples(examples, {r["name"]: r["accuracy"] for r in rows}, clean, out / EXAMPLES_FILE)
            files.update(chart=str(out / CHART_FILE), examples=str(out / EXAMPLES_FILE))
        except ImportError:  # matplotlib comes with the train extra; an ONNX-only install has none
            report["plots"] = "skipped: matplotlib is not installed (pip install 'digitrec[train]')"
        report["files"] = files
        atomic_write_text(files["report"], json.dumps(report, indent=2))
    return RobustnessResult(report, files)


def format_robustness(report: dict[str, Any]) -> str:
    """The terminal table: clean, each corruption, then the mean and the worst."""
    lines = [
        f"{'corruption':<14} {'severity':>8} {'accuracy':>9} {'drop':>7}",
        f"{'clean':<14} {'-':>8} {100 * report['clean_accuracy']:>8.2f}%",
    ]
    for r in report["corruptions"]:
        lines.append(f"{r['name']:<14} {r['severity']:>8} {100 * r['accuracy']:>8.2f}% {100 * r['drop']:>7.2f}")
    lines.append("-" * len(lines[0]))
    mean_label = f"mean of {len(report['corruptions'])}"
    lines.append(f"{mean_label:<14} {'':>8} {100 * report['mean_accuracy']:>8.2f}% {100 * report['mean_drop']:>7.2f}")
    worst = report["worst"]
    lines.append(f"worst: {worst['name']} (severity {worst['severity']}) {100 * worst['accuracy']:.2f}%")
    return "\n".join(lines)


def plot_accuracies(report: dict[str, Any], path: Path) -> None:
    """Horizontal bars, one per corruption, with the clean accuracy and the mean marked."""
    plt = pyplot()
    rows = report["corruptions"]
    acc = np.array([100 * r["accuracy"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.6))
    y = np.arange(len(rows))
    ax.barh(y, acc, color="tab:blue")
    for yi, a in zip(y, acc):
        ax.text(a, yi, f" {a:.1f}", va="center", fontsize=7)
    clean, mean = 100 * report["clean_accuracy"], 100 * report["mean_accuracy"]
    ax.axvline(clean, color="tab:green", linestyle="--", label=f"clean {clean:.2f}%")
    ax.axvline(mean, color="tab:red", linestyle=":", label=f"mean {mean:.2f}%")
    ax.set(
        yticks=y,
        yticklabels=[f"{r['name']} ({r['severity']})" for r in rows],
        xlabel="accuracy %",
        xlim=(max(0.0, min(acc.min(), clean) - CHART_MARGIN), 100.5),
        title=f"Accuracy on corrupted digits (n={report['n']}, seed {report['seed']})",
    )
    ax.invert_yaxis()  # first corruption on top
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_fig(fig, path)


def plot_examples(examples: dict[str, np.ndarray], accuracies: dict[str, float], clean: float, path: Path) -> None:
    """One row per corruption (the clean digits first), the same digits in every row."""
    plt = pyplot()
    cols = max(len(v) for v in examples.values())
    fig, axes = plt.subplots(len(examples), cols, figsize=(cols * 0.8 + 1.6, len(examples) * 0.8), squeeze=False)
    for row, (name, images) in zip(axes, examples.items()):
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("off")
        for ax, image in zip(row, images):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)  # MNIST's own look: white ink on black
        acc = clean if name == "clean" else accuracies[name]
        row[0].text(
            -0.15, 0.5, f"{name}\n{100 * acc:.1f}%", transform=row[0].transAxes, ha="right", va="center", fontsize=7
        )
    fig.subplots_adjust(left=0.16, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.08)
    save_fig(fig, path)
