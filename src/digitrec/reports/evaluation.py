"""Evaluation: accuracy, per-class precision/recall/F1, confusion matrix, misclassified gallery.

Try: `digitrec evaluate runs/default/model.safetensors` (several models make an ensemble; an
`.onnx` model from `digitrec export` runs on onnxruntime through `Recognizer`, as `digitrec
robustness` and `digitrec predict` run it).

Batch prediction itself (`prepare_batch`, `predict_logits`) lives in `digitrec.nn.predict`; here
are the digit probabilities (optionally averaged over TTA_VIEWS), the error-reject curve, the
report and its charts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..constants import NUM_CLASSES
from ..data.mnist import digits_to_evaluate
from ..errors import DigitrecError
from ..fileio import atomic_write_text, ensure_dir
from ..metadata import temperature_of
from ..nn.augment import affine_view
from ..nn.checkpoint import Checkpoint, load_checkpoint
from ..nn.predict import EVAL_BATCH_SIZE, predict_logits
from ..plotting import pyplot, save_fig
from ..recognition.backends import _is_safetensors  # the same test `Recognizer.load` chooses by
from ..recognition.recognizer import Recognizer

GALLERY_MAX = 100  # misclassified digits shown in the gallery
# Test-time augmentation: the views whose probabilities are averaged, as (rotation in degrees,
# scale, (x, y) shift in pixels), chosen on held-out training digits, never the test set.
# How these were chosen: docs/decisions/tta-views.md
TTA_VIEWS: tuple[tuple[float, float, tuple[float, float]], ...] = (
    (0.0, 1.0, (0.0, 0.0)),
    (0.0, 1.0, (1.0, 0.0)),
    (0.0, 1.0, (-1.0, 0.0)),
    (0.0, 1.0, (0.0, 1.0)),
    (0.0, 1.0, (0.0, -1.0)),
    (-6.0, 1.0, (0.0, 0.0)),
    (6.0, 1.0, (0.0, 0.0)),
    (0.0, 0.92, (0.0, 0.0)),
    (0.0, 1.08, (0.0, 0.0)),
)
# Error-reject curve: rejection shares 0-10% in steps of 0.25% (where thresholds are chosen),
# then coarser to 100%.
REJECT_SHARES = tuple(np.round(np.concatenate([np.linspace(0, 0.1, 41), np.linspace(0.15, 1, 18)]), 4))
REJECT_PLOT_MAX = 10.0  # the plot shows rejection shares up to this percentage
MODEL_FORMATS = "give a .safetensors checkpoint or an .onnx model (from `digitrec export`)"


@torch.no_grad()
def predict_proba(
    model: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    *,
    tta: bool = False,
    views: Sequence[tuple[float, float, tuple[float, float]]] = TTA_VIEWS,
    bf16: bool = False,
    channels_last: bool = False,
    temperature: float = 1.0,
) -> np.ndarray:
    """Digit probabilities (N, 10) as float64, softmax(logits / temperature) (calibration.py)
    over the digits' logits (a "not one digit" output, constants.NOT_ONE_DIGIT, is left out); with
    `tta`, the mean over `views` (see TTA_VIEWS)."""

    images = torch.as_tensor(images)
    if not tta:
        logits = predict_logits(model, images, bf16=bf16, channels_last=channels_last)
        return _digit_softmax(logits, temperature).numpy()
    probs = torch.zeros(len(images), NUM_CLASSES, dtype=torch.float64)
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        x = images[start : start + EVAL_BATCH_SIZE].float() / 255  # (B, 28, 28) in [0, 1]
        for rotate, scale, shift in views:
            view = affine_view(x, rotate=rotate, scale=scale, shift=shift)
            logits = predict_logits(model, view, bf16=bf16, channels_last=channels_last)
            probs[start : start + len(x)] += _digit_softmax(logits, temperature) / len(views)
    return probs.numpy()


def _digit_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float64 softmax of the digits' logits / temperature, as probabilities.digit_probabilities."""
    return torch.softmax(logits[:, :NUM_CLASSES] / temperature, 1).double()


def error_reject_curve(
    probs: np.ndarray, labels: np.ndarray, shares: Sequence[float] = REJECT_SHARES
) -> dict[str, list[float]]:
    """Error rate among the accepted inputs when the least confident share is rejected, for
    shares 0..1: what a postal or banking system reads to choose its rejection threshold."""
    labels = np.asarray(labels).astype(np.int64)
    confidence = probs.max(1)
    wrong = probs.argmax(1) != labels
    order = np.argsort(-confidence, kind="stable")  # most confident first
    wrong_sorted = wrong[order]
    n = len(labels)
    errors, thresholds = [], []
    for share in shares:
        kept = n - int(round(share * n))
        errors.append(float(wrong_sorted[:kept].mean()) if kept else 0.0)
        # The confidence below which inputs are rejected to reach this share.
        thresholds.append(float(confidence[order[kept - 1]]) if kept else 1.0)
    return {"rejected_share": [float(s) for s in shares], "error_rate": errors, "threshold": thresholds}


def plot_error_reject(curve: dict[str, list[float]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    shares = 100 * np.array(curve["rejected_share"])
    errors = 100 * np.array(curve["error_rate"])
    shown = shares <= REJECT_PLOT_MAX
    ax.plot(shares[shown], errors[shown], marker=".")
    ax.set(
        xlabel="rejected (least confident first), %",
        ylabel="error among accepted, %",
        title="error-reject curve",
        ylim=(0, None),
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_fig(fig, path)


def classification_report(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows: true, columns: predicted) and per-class figures."""
    labels = np.asarray(labels).astype(np.int64)
    preds = probs.argmax(1)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "errors": int((preds != labels).sum()),
        "per_class": [
            {
                "class": c,
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c in range(NUM_CLASSES)
        ],
        "confusion_matrix": cm.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """The terminal table: per-class figures, then the totals."""
    lines = [f"{'class':>5} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>7}"]
    for row in report["per_class"]:
        lines.append(
            f"{row['class']:>5} {row['precision']:>9.4f} {row['recall']:>7.4f} {row['f1']:>7.4f} {row['support']:>7}"
        )
    lines.append(
        f"accuracy {report['accuracy']:.4f} ({report['n'] - report['errors']}/{report['n']}, {report['errors']} errors)"
    )
    return "\n".join(lines)


def plot_confusion(cm: np.ndarray, path: Path, title: str = "Confusion matrix (test set)") -> None:
    plt = pyplot()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # Log colour scale: the diagonal (~1000) would otherwise hide the errors (~1-10).
    im = ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if i == j else "black")
    ax.set(xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    save_fig(fig, path)


def plot_misclassified(
    images: np.ndarray, labels: np.ndarray, probs: np.ndarray, path: Path, limit: int = GALLERY_MAX
) -> None:
    """A grid of misclassified digits, each titled 'true→predicted (confidence)'."""
    plt = pyplot()
    preds = probs.argmax(1)
    wrong = np.flatnonzero(preds != labels)[:limit]
    cols = 10
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"{labels[i]}→{preds[i]} ({probs[i, preds[i]]:.2f})", fontsize=7)
    fig.suptitle(
        f"misclassified: {int((preds != labels).sum())} (first {len(wrong)} shown, true→predicted)", fontsize=9
    )
    fig.tight_layout()
    save_fig(fig, path)


@dataclass
class EvaluationResult:
    report: dict[str, Any]
    probs: np.ndarray
    files: dict[str, str]


def load_model(path: Path) -> Checkpoint | Recognizer:
    """The model at `path`: a checkpoint (a .safetensors file, on torch) or a Recognizer (an ONNX
    model, on onnxruntime). Anything else is refused in one line naming the formats accepted."""
    if path.suffix.lower() == ".safetensors" or (path.is_file() and _is_safetensors(path)):
        return load_checkpoint(path)  # its own messages: no such checkpoint, not a checkpoint
    if not path.is_file():
        raise DigitrecError(f"{path}: no such model file; {MODEL_FORMATS}")
    if path.suffix.lower() == ".onnx":
        return Recognizer.load(path)  # its own messages: not valid ONNX, wrong input or output
    try:  # no suffix to go by: an ONNX model under another name still works
        return Recognizer.load(path)
    except DigitrecError:
        raise DigitrecError(f"{path}: neither a checkpoint nor an ONNX model; {MODEL_FORMATS}") from None


def model_proba(model: Checkpoint | Recognizer, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Calibrated digit probabilities (N, 10) as float64 from a checkpoint or an ONNX model; with
    `tta`, the mean over TTA_VIEWS (the views are made with torch, then fed to either model)."""
    if isinstance(model, Checkpoint):
        return predict_proba(model.model, images, tta=tta, temperature=temperature_of(model.metadata))
    if not tta:
        return model.predict_proba(images).astype(np.float64)
    probs = np.zeros((len(images), NUM_CLASSES), dtype=np.float64)
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        x = torch.as_tensor(images[start : start + EVAL_BATCH_SIZE]).float() / 255  # in [0, 1]
        for rotate, scale, shift in TTA_VIEWS:
            view = affine_view(x, rotate=rotate, scale=scale, shift=shift).numpy()
            probs[start : start + len(x)] += model.predict_proba(view) / len(TTA_VIEWS)
    return probs


def _describe_member(path: Path, model: Checkpoint | Recognizer) -> dict[str, Any]:
    if isinstance(model, Checkpoint):
        return {"checkpoint": str(path), "format": "safetensors", "model": model.metadata["model"]["name"]}
    # A foreign ONNX model carries none of our metadata, so no architecture name.
    name = (model.metadata.get("model") or {}).get("name", "unknown")
    return {"checkpoint": str(path), "format": "onnx", "model": name, "precision": model.info.get("precision")}


def evaluate_checkpoints(
    paths: Sequence[Path],
    *,
    data_dir: Path | None = None,
    out_dir: Path | None = None,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    progress: bool = True,
    tta: bool = False,
    data_name: str | None = None,
    limit: int | None = None,
) -> EvaluationResult:
    """Evaluate one model, or an ensemble (mean of probabilities) of several, on the MNIST test
    set or on the given images/labels (called `data_name` in the report); `limit` keeps the first
    that many digits; write report.json and PNGs to `out_dir`. A model is a .safetensors
    checkpoint (torch) or an .onnx model (onnxruntime); they may be mixed. With `tta`, each
    model's probabilities are averaged over TTA_VIEWS first."""

    if limit is not None and limit < 1:
        raise DigitrecError(f"--limit must be at least 1, got {limit}")
    if not paths:
        raise DigitrecError(f"no model to evaluate; {MODEL_FORMATS}")
    if out_dir is not None:
        ensure_dir(out_dir, "report folder")
    paths = [Path(p) for p in paths]
    models = [load_model(p) for p in paths]  # a bad model fails before data is fetched
    images, labels, data_name = digits_to_evaluate(images, labels, data_dir, name=data_name, progress=progress)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
        data_name += f", first {len(images)}"
    if not len(labels):
        raise DigitrecError("no images to evaluate")
    start = time.perf_counter()
    probs = np.zeros((len(images), NUM_CLASSES), dtype=np.float64)
    members = []
    # The steps that take seconds: reading the digits with each model, then drawing the report.
    steps = tqdm(
        total=len(models) + (out_dir is not None), desc="evaluating", unit="step", disable=not progress, leave=False
    )
    for path, model in zip(paths, models):
        steps.set_postfix_str(path.name)
        p = model_proba(model, images, tta=tta)
        members.append({**_describe_member(path, model), "accuracy": float((p.argmax(1) == labels).mean())})
        probs += p / len(models)
        steps.update()
    report = classification_report(probs, labels)
    report.update(
        data=data_name, members=members, tta=len(TTA_VIEWS) if tta else 0, seconds=time.perf_counter() - start
    )
    report["error_reject"] = error_reject_curve(probs, np.asarray(labels))
    files: dict[str, str] = {}
    if out_dir is not None:
        steps.set_postfix_str("the report's charts")
        files = {
            "report": str(out_dir / "report.json"),
            "confusion": str(out_dir / "confusion.png"),
            "misclassified": str(out_dir / "misclassified.png"),
            "error_reject": str(out_dir / "error_reject.png"),
        }
        report["files"] = files
        plot_error_reject(report["error_reject"], Path(files["error_reject"]))
        plot_confusion(np.array(report["confusion_matrix"]), Path(files["confusion"]))
        plot_misclassified(images, np.asarray(labels), probs, Path(files["misclassified"]))
        atomic_write_text(files["report"], json.dumps(report, indent=2))
        steps.update()
    steps.close()
    return EvaluationResult(report, probs.astype(np.float32), files)
