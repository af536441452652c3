"""Facts about digitrec's model files that both their writers and their readers need, torch-free.

Try: `python -c "from digitrec.metadata import CHECKPOINT_FORMAT, ONNX_FORMAT; print(CHECKPOINT_FORMAT, ONNX_FORMAT)"`

A checkpoint is a safetensors file whose metadata holds one JSON document under
CHECKPOINT_METADATA_KEY (`nn.checkpoint` writes and reads it); an exported ONNX model copies
that document into its metadata_props, one top-level key each (`export` writes it,
`recognition.backends` reads it).
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

from .errors import DigitrecError
from .integrity import DIGEST_CHARS, DIGEST_KEY

MAX_LABEL_CHARS = 32  # a class label is a short name ("7", "not a digit"), never a document
SHOWN_CHARS = 40  # of a bad value quoted in an error message: enough to recognise, short enough for one line
DIGIT_CLASSES = 10  # as constants.NUM_CLASSES: labels name the digits, or every output

CHECKPOINT_FORMAT = "digitrec-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_METADATA_KEY = "digitrec"  # safetensors metadata is str -> str; ours is one JSON document
# The ONNX files `digitrec export` writes. Their metadata_props hold the checkpoint's metadata,
# one top-level key each ("normalization", "labels", "model", "metrics", ...) with a JSON value,
# plus "export" (precision, measured test accuracy, parity) and the two keys below.
ONNX_FORMAT = "digitrec-onnx"
ONNX_FORMAT_VERSION = 1
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"
# The second output: the input of the last linear layer, which personal profiles adapt to.
ONNX_FEATURES = "features"
# Then the output of each convolution, in order (conv_1, conv_2, ...): what `explain` shows.
ONNX_CONV_PREFIX = "conv_"
META_FORMAT, META_VERSION = "digitrec_format", "digitrec_format_version"
# Where an ONNX file holds its digest (`integrity`): the metadata_props entry key "sha256", value
# the JSON string of the hex digest, as protobuf serialises it (field 1: 6 bytes; field 2: 66).
ONNX_DIGEST_BEFORE = (
    b"\x0a" + bytes([len(DIGEST_KEY)]) + DIGEST_KEY.encode() + b"\x12" + bytes([DIGEST_CHARS + 2]) + b'"'
)
ONNX_DIGEST_AFTER = b'"'


def parse_onnx_props(props: dict[str, str]) -> dict[str, Any]:
    """ONNX metadata_props (str -> JSON text) as a dict; values that are not JSON stay strings."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def shown(value: Any) -> str:
    """A value from a file, as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_readout(metadata: dict[str, Any], outputs: int) -> None:
    """Refuse metadata whose normalisation, calibration or labels would give wrong numbers or
    names for a model with `outputs` outputs: a one-line DigitrecError naming the field (the
    caller adds the file and what to do). Labels and calibration may be absent, not wrong."""
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
        counts = sorted({DIGIT_CLASSES, outputs})
        if not isinstance(labels, list) or len(labels) not in counts:
            raise DigitrecError(f"labels is {shown(labels)}, not a list of {' or '.join(map(str, counts))} labels")
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL_CHARS:
                raise DigitrecError(f"labels[{i}] is {shown(label)}, not a name of 1 to {MAX_LABEL_CHARS} characters")


def temperature_of(metadata: dict[str, Any]) -> float:
    """The calibrated temperature in a checkpoint's (or an exported model's) metadata; 1.0 when
    it has none (an older or foreign model: its probabilities are used as they are)."""
    value = (metadata.get("calibration") or {}).get("temperature", 1.0)
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0


def holdout_of(metadata: dict[str, Any]) -> int:
    """How many training digits the checkpoint's run held out (its metadata's training config)."""
    return int(((metadata.get("training") or {}).get("config") or {}).get("holdout") or 0)
