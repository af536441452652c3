"""Checkpoints: safetensors weights plus JSON metadata in the same file; loading never unpickles.

Try: `digitrec evaluate runs/default/model.safetensors` after `digitrec train`.

The metadata (architecture name and config, normalisation, training config, metrics, data
checksum, versions) is enough to rebuild the model without the code that trained it.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load, save
from torch import nn

from ..constants import IMAGE_SIZE, LABELS, MNIST_MEAN, MNIST_STD, NUM_CLASSES
from ..errors import DigitrecError
from ..fileio import atomic_write_bytes
from ..integrity import DIGEST_KEY, PLACEHOLDER, seal, verify
from ..metadata import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    CHECKPOINT_METADATA_KEY,
    check_readout,
)
from ..version import __version__
from .models.registry import check_config, create_model, model_config, shown

BAD_METADATA_HINT = "the file is damaged or not made by digitrec; retrain it or get a good copy"
# The digest in the safetensors JSON header's metadata, as serialised: "sha256":"<64 hex>"
DIGEST_BEFORE, DIGEST_AFTER = f'"{DIGEST_KEY}":"'.encode(), b'"'
HEADER_LENGTH_BYTES = 8  # a safetensors file starts with its JSON header's length, little-endian
REMEDY = "train it again"


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
    """Write `tensors` and a JSON `metadata` document atomically to a safetensors file, sealed
    with the SHA-256 of its bytes (`integrity`)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(tensors, metadata={CHECKPOINT_METADATA_KEY: json.dumps(metadata), DIGEST_KEY: PLACEHOLDER})
    # Bytes through our own atomic writer: safetensors' save_file renames its own 0600 temporary.
    atomic_write_bytes(path, seal(data, DIGEST_BEFORE, DIGEST_AFTER))


def _verified_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's bytes, and whether they carry a digest; a digest that does not match, or a
    damaged one, is a DigitrecError. The digest is looked for in the JSON header only."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DigitrecError(f"{path}: cannot read the checkpoint ({e.strerror or e}); check its permissions") from None
    header_end = HEADER_LENGTH_BYTES + int.from_bytes(data[:HEADER_LENGTH_BYTES], "little")
    return data, verify(data, DIGEST_BEFORE, DIGEST_AFTER, path, REMEDY, within=min(header_end, len(data)))


def save_checkpoint(path: str | Path, model: nn.Module, **metadata_fields: Any) -> dict[str, Any]:
    metadata = build_metadata(model, **metadata_fields)
    save_tensors(path, model.state_dict(), metadata)
    return metadata


def read_metadata(path: str | Path, expected_format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """The metadata of a checkpoint, checked for format and version, without loading weights."""
    path = Path(path)
    if not path.is_file():
        raise DigitrecError(f"{path}: no such checkpoint file; train one with `digitrec train`")
    _, sealed = _verified_bytes(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a non-safetensors file
        raise DigitrecError(f"{path}: not a digitrec checkpoint (not a safetensors file: {e})") from None
    if DIGEST_KEY in header and not sealed:  # a digest whose surroundings were damaged
        raise DigitrecError(f"{path}: the file is damaged (its digest is unreadable); get a good copy or {REMEDY}")
    raw = header.get(CHECKPOINT_METADATA_KEY)
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
        check_readout(metadata, config.get("num_classes", NUM_CLASSES) if isinstance(config, dict) else NUM_CLASSES)
    except DigitrecError as e:
        raise DigitrecError(f"{path}: bad metadata: {e}; {BAD_METADATA_HINT}") from None


def load_tensors(path: str | Path) -> dict:
    """The tensors of a safetensors file, from the very bytes whose digest was checked."""
    path = Path(path)
    data, _ = _verified_bytes(path)
    try:
        return load(data)
    except Exception as e:  # safetensors raises several types for a damaged file
        raise DigitrecError(f"{path}: not a digitrec checkpoint (not a safetensors file: {e})") from None


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
