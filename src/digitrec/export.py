"""ONNX export of a checkpoint, float32 and (optionally) int8, each checked before it is written.

Try: `digitrec export runs/default/model.safetensors --int8`.

The float32 model must give the same probabilities as torch (max |difference| <= 1e-4) on real
test digits, through the same `Recognizer` users run; the int8 model is calibrated on training
digits and reported beside it (size, test accuracy). A model that fails a check is never written.
`digitrec export` imports this module only when it runs: it needs torch and onnx (the train extra).
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from .constants import IMAGE_SIZE
from .data.mnist import load_mnist
from .errors import DigitrecError
from .fileio import atomic_write_bytes
from .integrity import DIGEST_KEY, PLACEHOLDER, seal
from .metadata import (
    META_FORMAT,
    META_VERSION,
    ONNX_CONV_PREFIX,
    ONNX_DIGEST_AFTER,
    ONNX_DIGEST_BEFORE,
    ONNX_FEATURES,
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    ONNX_INPUT,
    ONNX_OUTPUT,
    temperature_of,
)
from .nn.checkpoint import load_checkpoint
from .nn.predict import WithFeatures, predict_logits
from .probabilities import digit_probabilities
from .recognition.recognizer import Recognizer
from .version import __version__

OPSET = 17
PARITY_IMAGES = 2000  # test digits on which onnxruntime must match torch
PARITY_TOLERANCE = 1e-4  # max |p_onnx - p_torch| for float32
CALIBRATION_IMAGES = 1000  # training digits that set the int8 activation ranges
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 100  # min/max calibration: the batch size changes only the speed
INT8_SUFFIX = ".int8.onnx"
# Targets for the int8 model, reported (not enforced: a tiny or untrained model cannot meet them).
INT8_MAX_SIZE_RATIO = 0.30
INT8_MAX_ACCURACY_DROP_PP = 0.1


@dataclass(frozen=True)
class Float32Export:
    """The float32 model written, and what was measured on it."""

    path: str
    bytes: int
    max_abs_diff: float  # max |p_onnx - p_torch| on the parity images
    parity_images: int
    accuracy: float | None  # on the test images; None when they had no labels


@dataclass(frozen=True)
class Int8Targets:
    """The int8 model's targets, and whether it met them (reported, not enforced)."""

    size_ratio_max: float
    size_ok: bool
    accuracy_drop_pp_max: float
    accuracy_ok: bool | None  # None without labels


@dataclass(frozen=True)
class Int8Export:
    """The int8 model written, and how it compares with the float32 one."""

    path: str
    bytes: int
    size_ratio: float  # of the float32 model's bytes
    accuracy: float | None
    accuracy_drop_pp: float | None  # float32 accuracy minus int8 accuracy, in percentage points
    calibration_images: int
    targets: Int8Targets


@dataclass(frozen=True)
class ExportReport:
    """What `export_checkpoint` wrote and measured."""

    checkpoint: str
    model: str  # the architecture's name
    test_images: int
    test_labels: bool  # whether the test images had labels (else no accuracy)
    float32: Float32Export
    int8: Int8Export | None = None  # with int8=True

    def to_dict(self) -> dict[str, Any]:
        """The JSON `digitrec export --json` prints; "int8" only when one was written."""
        report = asdict(self)
        if self.int8 is None:
            del report["int8"]
        return report


def default_paths(checkpoint: str | os.PathLike, out: str | os.PathLike | None) -> tuple[Path, Path]:
    """The float32 path (default: beside the checkpoint, .onnx) and the int8 path beside it."""
    out = Path(out) if out is not None else Path(checkpoint).with_suffix(".onnx")
    return out, out.with_name(out.name.removesuffix(".onnx") + INT8_SUFFIX)


def _to_onnx_proto(model: nn.Module) -> Any:
    """The model as an onnx.ModelProto with a dynamic batch dimension and these outputs: the
    logits, the features of its last linear layer (what profiles adapt to) and each
    convolution's output (what `explain` shows); onnxruntime computes only those asked for."""

    buffer = io.BytesIO()
    wrapped = WithFeatures(model).eval()
    convs = [f"{ONNX_CONV_PREFIX}{k}" for k in range(1, wrapped.conv_count + 1)]
    outputs = [ONNX_OUTPUT, ONNX_FEATURES, *convs]
    # The TorchScript exporter (dynamo=False): the dynamo exporter, torch's default since 2.9,
    # needs the onnxscript package; for plain conv/linear networks both give the same graph, so
    # the fewer dependencies win. It warns that it is deprecated, which a user cannot act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapped,
            (torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object too
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=outputs,
            opset_version=OPSET,
            dynamic_axes={name: {0: "batch"} for name in (ONNX_INPUT, *outputs)},
        )
    return onnx.load_from_string(buffer.getvalue())


def _set_metadata(proto: onnx.ModelProto, metadata: dict[str, Any], export: dict[str, Any]) -> None:
    """Store the checkpoint's metadata, one JSON value per key, plus our format, `export` and
    the digest's placeholder (`_sealed` fills it in)."""

    fields = {k: v for k, v in metadata.items() if k not in ("format", "format_version", DIGEST_KEY)}
    fields |= {META_FORMAT: ONNX_FORMAT, META_VERSION: ONNX_FORMAT_VERSION, "export": export}
    fields[DIGEST_KEY] = PLACEHOLDER  # last: the placeholder is found by its bytes, not its place
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in fields.items()})


def _sealed(proto: onnx.ModelProto) -> bytes:
    """The model's bytes, its digest written over the placeholder `_set_metadata` put in."""
    return seal(proto.SerializeToString(), ONNX_DIGEST_BEFORE, ONNX_DIGEST_AFTER)


def _check(proto: onnx.ModelProto, check: Callable[[Recognizer], Any]) -> Any:
    """Run onnx's checker and `check(Recognizer)` on `proto` saved to a temporary file: the
    checks see exactly what users will load."""

    with tempfile.TemporaryDirectory(prefix="digitrec-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(_sealed(proto))
        try:
            onnx.checker.check_model(str(path))
        except onnx.checker.ValidationError as e:
            raise DigitrecError(f"the exported model is invalid ({e}); this is a bug, please report it") from None
        return check(Recognizer.load(path))


def _accuracy(probs: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else float((probs.argmax(1) == np.asarray(labels)).mean())


def _calibration_reader(images: np.ndarray, mean: float, std: float, input_name: str) -> CalibrationDataReader:

    class Reader(CalibrationDataReader):
        """Normalised (B, 1, 28, 28) batches, as the exported model takes them."""

        def __init__(self) -> None:
            x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
            x = ((x - mean) / std).astype(np.float32)[:, None]
            self._batches = iter(np.split(x, range(CALIBRATION_BATCH, len(x), CALIBRATION_BATCH)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    return Reader()


def _quantize(float_proto: onnx.ModelProto, calibration: np.ndarray, mean: float, std: float) -> Any:
    """Static int8 quantisation: QDQ format (onnxruntime fuses it into integer kernels), int8
    per-channel weights, uint8 activations whose ranges come from the calibration digits."""

    with tempfile.TemporaryDirectory(prefix="digitrec-int8-") as tmp:
        src, prepared, dst = (os.path.join(tmp, n) for n in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(float_proto, src)
        quant_pre_process(src, prepared)  # shape inference + graph clean-up, as onnxruntime advises
        # The quantiser logs a warning through the root logger for every batch-norm vector it
        # cannot quantise per channel (it keeps them per tensor): noise to a user, so muted here.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(
                prepared,
                dst,
                _calibration_reader(calibration, mean, std, ONNX_INPUT),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )
        finally:
            root.setLevel(level)
        return onnx.load(dst)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    int8: bool = False,
    data_dir: Path | None = None,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    calibration_images: np.ndarray | None = None,
    progress: bool = False,
) -> ExportReport:
    """Export `checkpoint` to ONNX (and with `int8` also a quantised model beside it); return the
    report. Parity and accuracy use the MNIST test set and calibration its training set, unless
    images are given (tests use made-up ones: then `test_labels` may be None)."""

    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)  # a DigitrecError names the file if it is not a checkpoint
    float_path, int8_path = default_paths(checkpoint, out)
    if checkpoint.resolve() in (float_path.resolve(), int8_path.resolve()):
        raise DigitrecError(f"--out {float_path} would overwrite the checkpoint; choose another file name")
    if test_images is None:
        split = load_mnist("test", data_dir, progress=progress)
        test_images, test_labels = split.images, split.labels
    parity_images = test_images[:PARITY_IMAGES]
    # As the Recognizer computes them: calibrated by the checkpoint's temperature.
    torch_probs = digit_probabilities(predict_logits(ckpt.model, parity_images).numpy(), temperature_of(ckpt.metadata))
    export_info: dict[str, Any] = {
        "precision": "float32",
        "opset": OPSET,
        "source_checkpoint": checkpoint.name,
        "digitrec_version": __version__,
    }

    def check_float(rec: Recognizer) -> tuple[float, float | None]:
        diff = float(np.abs(rec.predict_proba(parity_images) - torch_probs).max(initial=0.0))
        if not diff <= PARITY_TOLERANCE:  # also catches NaN
            raise DigitrecError(
                f"{checkpoint}: onnxruntime and torch disagree by {diff:.2e} in probability "
                f"(limit {PARITY_TOLERANCE:g}); nothing was written. This is a bug, please report it"
            )
        return diff, _accuracy(rec.predict_proba(test_images), test_labels)

    proto = _to_onnx_proto(ckpt.model)
    _set_metadata(proto, ckpt.metadata, export_info)  # the checks read the normalisation from it
    diff, accuracy = _check(proto, check_float)
    # Record what was measured; metadata does not change what the model computes.
    export_info |= {
        "test_accuracy": accuracy,
        "test_images": len(test_images),
        "parity_max_abs_diff": diff,
        "parity_images": len(parity_images),
    }
    _set_metadata(proto, ckpt.metadata, export_info)
    atomic_write_bytes(float_path, _sealed(proto))
    float32 = Float32Export(
        path=str(float_path),
        bytes=float_path.stat().st_size,
        max_abs_diff=diff,
        parity_images=len(parity_images),
        accuracy=accuracy,
    )
    int8_export = None
    if int8:
        if calibration_images is None:
            train = load_mnist("train", data_dir, progress=progress).images
            pick = np.random.default_rng(CALIBRATION_SEED).choice(len(train), CALIBRATION_IMAGES, replace=False)
            calibration_images = train[pick]
        int8_export = _export_int8(
            proto, ckpt.metadata, export_info, int8_path, float32, test_images, test_labels, calibration_images
        )
    return ExportReport(
        checkpoint=str(checkpoint),
        model=ckpt.metadata["model"]["name"],
        test_images=len(test_images),
        test_labels=test_labels is not None,
        float32=float32,
        int8=int8_export,
    )


def _export_int8(
    float_proto: onnx.ModelProto,
    metadata: dict,
    float_info: dict,
    path: Path,
    float32: Float32Export,
    test_images: np.ndarray,
    test_labels: np.ndarray | None,
    calibration: np.ndarray,
) -> Int8Export:
    norm = metadata["normalization"]
    proto = _quantize(float_proto, calibration, norm["mean"], norm["std"])
    info = {k: v for k, v in float_info.items() if not k.startswith("parity")}
    info |= {
        "precision": "int8",
        "quantization": "static QDQ, per-channel int8 weights, uint8 activations",
        "calibration_images": len(calibration),
    }
    _set_metadata(proto, metadata, info)
    accuracy = _check(proto, lambda rec: _accuracy(rec.predict_proba(test_images), test_labels))
    info["test_accuracy"] = accuracy
    _set_metadata(proto, metadata, info)
    atomic_write_bytes(path, _sealed(proto))
    size = path.stat().st_size
    ratio = size / float32.bytes
    # float32.accuracy is None exactly when accuracy is: both come from the same labels.
    drop = None if accuracy is None or float32.accuracy is None else 100 * (float32.accuracy - accuracy)
    return Int8Export(
        path=str(path),
        bytes=size,
        size_ratio=ratio,
        accuracy=accuracy,
        accuracy_drop_pp=drop,
        calibration_images=len(calibration),
        targets=Int8Targets(
            size_ratio_max=INT8_MAX_SIZE_RATIO,
            size_ok=ratio <= INT8_MAX_SIZE_RATIO,
            accuracy_drop_pp_max=INT8_MAX_ACCURACY_DROP_PP,
            accuracy_ok=None if drop is None else drop <= INT8_MAX_ACCURACY_DROP_PP,
        ),
    )


def format_report(report: ExportReport) -> str:
    """The terminal table: one row per exported model, then the checks."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}%"

    f32, q = report.float32, report.int8
    rows = [
        ("model", "bytes", "size", "test accuracy", "file"),
        ("float32", f"{f32.bytes:,}", "100%", pct(f32.accuracy), f32.path),
    ]
    if q:
        drop = "" if q.accuracy_drop_pp is None else f" ({-q.accuracy_drop_pp:+.2f} pp)"
        rows.append(("int8", f"{q.bytes:,}", f"{100 * q.size_ratio:.1f}%", pct(q.accuracy) + drop, q.path))
    lines = [f"{a:<8} {b:>9} {c:>6} {d:>20}  {e}" for a, b, c, d, e in rows]
    accuracy_on = f"{report.test_images} test digits" if report.test_labels else "(unlabelled images: n/a)"
    lines.append(
        f"accuracy on {accuracy_on}; parity: onnxruntime vs torch on {f32.parity_images} of them, "
        f"max |p difference| {f32.max_abs_diff:.1e} (limit {PARITY_TOLERANCE:g}); onnx checker passed"
    )
    if q:
        t = q.targets
        ok = {True: "yes", False: "NO", None: "n/a"}
        lines.append(
            f"int8 targets: size <= {100 * t.size_ratio_max:.0f}% of float32: {ok[t.size_ok]}; "
            f"accuracy drop <= {t.accuracy_drop_pp_max} pp: {ok[t.accuracy_ok]}"
        )
    return "\n".join(lines)
