"""Facts about digitrec's model files that both their writers and their readers need, torch-free.

Try: `python -c "from digitrec.metadata import CHECKPOINT_FORMAT, ONNX_FORMAT; print(CHECKPOINT_FORMAT, ONNX_FORMAT)"`

A checkpoint is a safetensors file whose metadata holds one JSON document under
CHECKPOINT_METADATA_KEY (`nn.checkpoint` writes and reads it); an exported ONNX model copies
that document into its metadata_props, one top-level key each (`export` writes it,
`recognition.backends` reads it).
"""

from __future__ import annotations

import json
from typing import Any

CHECKPOINT_FORMAT = "digitrec-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_METADATA_KEY = "digitrec"  # safetensors metadata is str -> str; ours is one JSON document
# The ONNX files `digitrec export` writes. Their metadata_props hold the checkpoint's metadata,
# one top-level key each ("normalization", "labels", "model", "metrics", ...) with a JSON value,
# plus "export" (precision, measured test accuracy, parity) and the two keys below.
ONNX_FORMAT = "digitrec-onnx"
ONNX_FORMAT_VERSION = 1
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"
META_FORMAT, META_VERSION = "digitrec_format", "digitrec_format_version"


def parse_onnx_props(props: dict[str, str]) -> dict[str, Any]:
    """ONNX metadata_props (str -> JSON text) as a dict; values that are not JSON stay strings."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def temperature_of(metadata: dict[str, Any]) -> float:
    """The calibrated temperature in a checkpoint's (or an exported model's) metadata; 1.0 when
    it has none (an older or foreign model: its probabilities are used as they are)."""
    value = (metadata.get("calibration") or {}).get("temperature", 1.0)
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0


def holdout_of(metadata: dict[str, Any]) -> int:
    """How many training digits the checkpoint's run held out (its metadata's training config)."""
    return int(((metadata.get("training") or {}).get("config") or {}).get("holdout") or 0)
