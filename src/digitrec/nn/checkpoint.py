"""Checkpoints: safetensors weights plus JSON metadata in the same file; loading never unpickles.

Try: `digitrec evaluate runs/default/model.safetensors` after `digitrec train`.

The metadata (architecture name and config, normalisation, training config, metrics, data
checksum, versions) is enough to rebuild the model without the code that trained it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

from ..constants import IMAGE_SIZE, LABELS, MNIST_MEAN, MNIST_STD, NUM_CLASSES
from ..errors import DigitrecError
from ..fileio import atomic_write_bytes
from ..metadata import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, CHECKPOINT_METADATA_KEY
from ..version import __version__
from .models.registry import check_config, create_model, model_config, shown

MAX_LABEL_CHARS = 32  # a class label is a short name ("7", "not a digit"), never a document
BAD_METADATA_HINT = "the file is damaged or not made by digitrec; retrain it or get a good copy"


@dataclass
class Checkpoint:
    model: Any  # nn.Module, in eval mode
    metadata: dict[str, Any]


def _versions() -> dict[str, str]:
    return {"digitrec": __version__, "torch": torch.__version__, "python": platform.python_version()}


def build_metadata(
    model: nn.Module, *, training: dict | None = None, metrics: dict | None = None, data_sha256: str | None = None
) -> dict[str, Any]:

    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": {"name": model.model_name, "config": model_config(model)},
        "input": {
            "size": IMAGE_SIZE,
            "channels": 1,
            "layout": "NCHW",
            "ink": "bright on dark, [0, 1] before normalisation",
        },
        "normalization": {"mean": MNIST_MEAN, "std": MNIST_STD},
        "labels": list(LABELS),
        "training": training or {},
        "metrics": metrics or {},
        "data_sha256": data_sha256,
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def save_tensors(path: str | Path, tensors: dict, metadata: dict[str, Any]) -> None:
    """Write `tensors` and a JSON `metadata` document atomically to a safetensors file."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    # Bytes through our own atomic writer: safetensors' save_file renames its own 0600 temporary.
    atomic_write_bytes(path, save(tensors, metadata={CHECKPOINT_METADATA_KEY: json.dumps(metadata)}))


def save_checkpoint(path: str | Path, model: nn.Module, **metadata_fields: Any) -> dict[str, Any]:
    metadata = build_metadata(model, **metadata_fields)
    save_tensors(path, model.state_dict(), metadata)
    return metadata


def read_metadata(path: str | Path, expected_format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """The metadata of a checkpoint, checked for format and version, without loading weights."""
    path = Path(path)
    if not path.is_file():
        raise DigitrecError(f"{path}: no such checkpoint file; train one with `digitrec train`")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(CHECKPOINT_METADATA_KEY)
    except Exception as e:  # safetensors raises several types for a non-safetensors file
        raise DigitrecError(f"{path}: not a digitrec checkpoint (not a safetensors file: {e})") from None
    try:
        metadata = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != expected_format:
        raise DigitrecError(f"{path}: a safetensors file, but not a {expected_format} (its metadata is missing)")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise DigitrecError(
            f"{path}: {expected_format} format version {version} is newer than this digitrec "
            f"understands ({CHECKPOINT_FORMAT_VERSION}); upgrade digitrec"
        )
    return metadata


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata(metadata: dict[str, Any], path: str | Path) -> None:
    """Refuse checkpoint metadata a model must not be built from (see `check_config`), or whose
    normalisation, calibration or labels would give wrong numbers: one-line DigitrecError naming
    `path` and the field. Runs before anything is built, so a bad file costs no allocation."""
    try:
        spec = metadata.get("model")
        if not isinstance(spec, dict):
            raise DigitrecError(f"model is {shown(spec)}, not an object with a name and config")
        config = spec.get("config", {})
        check_config(spec.get("name"), config)
        norm = metadata.get("normalization")
        if not isinstance(norm, dict):
            raise DigitrecError(f"normalization is {shown(norm)}, not an object with mean and std")
        if not _finite(norm.get("mean")):
            raise DigitrecError(f"normalization.mean is {shown(norm.get('mean'))}, not a finite number")
        if not (_finite(norm.get("std")) and norm["std"] > 0):
            raise DigitrecError(f"normalization.std is {shown(norm.get('std'))}, not a finite number above 0")
        calibration = metadata.get("calibration")
        if calibration is not None:
            temperature = calibration.get("temperature") if isinstance(calibration, dict) else None
            if not (_finite(temperature) and temperature > 0):
                raise DigitrecError(f"calibration.temperature is {shown(temperature)}, not a finite number above 0")
        labels = metadata.get("labels")
        if labels is not None:
            # The digits' labels, or one per output when the later outputs are named too.
            outputs = config.get("num_classes", NUM_CLASSES)
            counts = sorted({NUM_CLASSES, outputs})
            if not isinstance(labels, list) or len(labels) not in counts:
                raise DigitrecError(f"labels is {shown(labels)}, not a list of {' or '.join(map(str, counts))} labels")
            for i, label in enumerate(labels):
                if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL_CHARS:
                    raise DigitrecError(
                        f"labels[{i}] is {shown(label)}, not a name of 1 to {MAX_LABEL_CHARS} characters"
                    )
    except DigitrecError as e:
        raise DigitrecError(f"{path}: bad metadata: {e}; {BAD_METADATA_HINT}") from None


def load_tensors(path: str | Path) -> dict:
    return load_file(str(path))


def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Rebuild the model a checkpoint describes and load its weights."""

    metadata = read_metadata(path)
    check_metadata(metadata, path)  # before create_model: the metadata may ask for gigabytes
    spec = metadata["model"]
    model = create_model(spec["name"], **spec.get("config", {}))
    try:
        model.load_state_dict(load_tensors(path))
    except RuntimeError as e:
        raise DigitrecError(f"{path}: weights do not fit model {spec['name']!r}: {e}") from None
    return Checkpoint(model.to(device).eval(), metadata)
