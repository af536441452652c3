"""Model backends: a `.safetensors` checkpoint on torch, an ONNX model on onnxruntime.

Try: `python -c "from digitrec.recognition.backends import load_backend; print(load_backend(None)[0].info)"`

A backend runs normalised float32 (B, 1, 28, 28) batches to logits (B, classes). The backend is
chosen by the file's content: a safetensors checkpoint runs on torch, anything else is handed
to onnxruntime. Importing this module, and the ONNX backend, never imports torch, so
recognising digits needs neither torch nor onnx installed.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..constants import IMAGE_SIZE, NON_DIGIT, NOT_ONE_DIGIT, NUM_CLASSES, OUTPUT_COUNTS
from ..errors import DigitrecError
from ..integrity import DIGEST_KEY, damaged, verify
from ..metadata import (
    META_FORMAT,
    META_VERSION,
    ONNX_CONV_PREFIX,
    ONNX_DIGEST_AFTER,
    ONNX_DIGEST_BEFORE,
    ONNX_FEATURES,
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    check_readout,
    parse_onnx_props,
    shown,
)

SMALL_BATCH = 32  # up to this many images run on one thread when no thread count is given
SHIPPED = {"onnx": "default.onnx", "int8": "default.int8.onnx", "checkpoint": "default.safetensors"}
REMEDY = "export it again"  # what to do about a damaged ONNX model
BAD_ONNX_METADATA_HINT = "the file is damaged or not made by digitrec; get a good copy or export it again"


def shipped_model_path(kind: str = "onnx") -> Path:
    """The path of a model shipped inside the package: "onnx" (float32), "int8" or "checkpoint"."""
    if kind not in SHIPPED:
        raise DigitrecError(f"unknown shipped model kind {kind!r}; choose one of: {', '.join(SHIPPED)}")
    path = Path(str(resources.files("digitrec") / "assets" / SHIPPED[kind]))
    if not path.is_file():
        raise DigitrecError(
            f"the shipped model {path} is missing; reinstall digitrec or run "
            "scripts/make_shipped_model.sh in a checkout"
        )
    return path


def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with an 8-byte header length, then the JSON header's "{".
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


@dataclass
class Backend:
    run: Callable[[np.ndarray], np.ndarray]  # normalised float32 (B, 1, 28, 28) -> logits (B, classes)
    fixed_batch: int | None  # a model exported for one batch size only gets exactly that many images
    metadata: dict[str, Any]  # the checkpoint's metadata, in its layout (see checkpoint.build_metadata)
    info: dict[str, Any]
    # The same -> (logits (B, classes), features (B, D)): the input of the last linear layer,
    # which profiles adapt to; None for an ONNX model exported without it.
    run_with_features: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    # The same -> the output of each convolution, in order ((B, C, H, W) each): what `explain`
    # shows; None for an ONNX model exported without them.
    run_convs: Callable[[np.ndarray], list[np.ndarray]] | None = None


def _onnx_session(path: Path, threads: int, model: bytes | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the CPU; `threads` 0: onnxruntime's choice (the physical cores).
    `model`: the file's bytes, already checked (else onnxruntime reads `path` itself: a foreign
    model may keep its weights in files beside it)."""
    options = ort.SessionOptions()
    # A small network: latency is dominated by per-call overhead, so no inter-op parallelism.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: our own messages explain what went wrong
    try:
        return ort.InferenceSession(str(path) if model is None else model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for non-ONNX and invalid graphs
        raise DigitrecError(
            f"{path}: not a digitrec checkpoint or a valid ONNX model ({str(e).strip()[:200]}); "
            "give a .safetensors checkpoint or an .onnx file from `digitrec export`"
        ) from None


def _onnx_backend(path: Path, threads: int | None) -> Backend:
    # With no thread count given, a few images (one drawing, one photo's digits) run on one
    # thread: a pool's hand-offs cost more than they save, and its threads spin on the cores the
    # image's preprocessing needs. Larger batches get a pool over all the cores, made when first
    # needed. Chosen on end-to-end latency: docs/decisions/onnx-threads.md
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DigitrecError(f"{path}: cannot read the model ({e.strerror or e}); check its permissions") from None
    model = data if ONNX_DIGEST_BEFORE in data else None  # ours: run the very bytes checked below
    session = _onnx_session(path, threads or 1, model)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if len(inputs) == 1 else [i.shape for i in inputs]
    if (
        len(inputs) != 1
        or len(shape) != 4
        or list(shape[1:]) != [1, IMAGE_SIZE, IMAGE_SIZE]
        or inputs[0].type != "tensor(float)"
    ):
        raise DigitrecError(
            f"{path}: the model's input is {shape} ({inputs[0].type}), not a float "
            f"(N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}) digit image; give a model made by `digitrec export`"
        )
    out_shape = outputs[0].shape
    if len(out_shape) != 2 or out_shape[1] not in OUTPUT_COUNTS:
        raise DigitrecError(
            f"{path}: the model's output is {out_shape}, not (N, {NUM_CLASSES}) digit scores "
            f'(or {NOT_ONE_DIGIT + 1} with "not one digit", {NON_DIGIT + 1} with "not a digit" too); '
            "give a model made by `digitrec export`"
        )

    try:
        props = dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:  # a damaged file without a digest: a property is not UTF-8
        raise DigitrecError(f"{path}: the model's metadata is not text; {BAD_ONNX_METADATA_HINT}") from None
    metadata = parse_onnx_props(props)
    version = metadata.get(META_VERSION)
    if META_VERSION in metadata and (not isinstance(version, int) or version > ONNX_FORMAT_VERSION):
        raise DigitrecError(
            f"{path}: {ONNX_FORMAT} format version {version} is newer than this digitrec "
            f"understands ({ONNX_FORMAT_VERSION}); upgrade digitrec"
        )
    # After the version (a newer format may seal its files otherwise), before anything is used:
    # a damaged model is refused, never run.
    sealed = verify(data, ONNX_DIGEST_BEFORE, ONNX_DIGEST_AFTER, path, REMEDY)
    if DIGEST_KEY in props and not sealed:  # a digest whose surroundings were damaged
        raise damaged(path, REMEDY)
    if metadata.get(META_FORMAT) != ONNX_FORMAT:
        metadata = {}  # someone else's model: its metadata means nothing to us
    else:
        _check_onnx_metadata(props, metadata, out_shape[1], path)
    in_name, out_name = inputs[0].name, outputs[0].name
    has_features = any(o.name == ONNX_FEATURES and len(o.shape) == 2 for o in outputs[1:])
    convs = [o.name for o in outputs[1:] if o.name.startswith(ONNX_CONV_PREFIX) and len(o.shape) == 4]
    all_cores = functools.cache(lambda: _onnx_session(path, 0, model))  # made when first needed

    def session_for(x: np.ndarray) -> ort.InferenceSession:
        return session if threads or len(x) <= SMALL_BATCH else all_cores()

    def run(x: np.ndarray) -> np.ndarray:
        return session_for(x).run([out_name], {in_name: x})[0]

    def run_with_features(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = session_for(x).run([out_name, ONNX_FEATURES], {in_name: x})
        return logits, features

    def run_convs(x: np.ndarray) -> list[np.ndarray]:
        return list(session_for(x).run(convs, {in_name: x}))

    return Backend(
        run=run,
        run_with_features=run_with_features if has_features else None,
        run_convs=run_convs if convs else None,
        fixed_batch=shape[0] if isinstance(shape[0], int) else None,
        metadata=metadata,
        info={
            "backend": "onnxruntime",
            "format_version": version,
            "precision": metadata.get("export", {}).get("precision", "unknown"),
            "threads": threads or "default",
        },
    )


def _check_onnx_metadata(props: dict[str, str], metadata: dict[str, Any], outputs: int, path: Path) -> None:
    """Refuse a digitrec model whose properties are not all JSON, or whose normalisation,
    calibration or labels would give wrong numbers or names: one line naming the field."""
    try:
        for key, value in props.items():
            try:
                json.loads(value)  # we write every value as JSON
            except json.JSONDecodeError:
                raise DigitrecError(f"property {shown(key)} is {shown(value)}, not JSON") from None
        check_readout(metadata, outputs)
        if not isinstance(metadata.get("export", {}), dict):
            raise DigitrecError(f"export is {shown(metadata['export'])}, not an object")
    except DigitrecError as e:
        raise DigitrecError(f"{path}: bad metadata: {e}; {BAD_ONNX_METADATA_HINT}") from None


def _torch_backend(path: Path, threads: int | None) -> Backend:
    try:
        import torch
    except ImportError:
        raise DigitrecError(
            f"{path} is a checkpoint, and running one needs torch: install digitrec[train], "
            f"or export it with `digitrec export {path}` and use the .onnx file"
        ) from None
    from ..nn.checkpoint import load_checkpoint  # deferred: torch
    from ..nn.predict import WithFeatures  # deferred: torch

    ckpt = load_checkpoint(path)
    with_features = WithFeatures(ckpt.model).eval()

    def forward(x: np.ndarray) -> list[np.ndarray]:
        # torch's thread count is process-wide: set it for this call only, so loading one model
        # does not change how the rest of the process runs.
        previous = torch.get_num_threads()
        if threads and threads != previous:
            torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return [t.float().numpy() for t in with_features(torch.from_numpy(x))]
        finally:
            if threads and threads != previous:
                torch.set_num_threads(previous)

    return Backend(
        run=lambda x: forward(x)[0],
        run_with_features=lambda x: (lambda out: (out[0], out[1]))(forward(x)),
        run_convs=lambda x: forward(x)[2:],
        fixed_batch=None,
        metadata=ckpt.metadata,
        info={
            "backend": "torch",
            "format_version": ckpt.metadata.get("format_version"),
            "precision": "float32",
            "threads": threads or "default",
        },
    )


def load_backend(path: str | os.PathLike[str] | None, threads: int | None = None) -> tuple[Backend, Path]:
    """The backend for the model file at `path` (None: the shipped float32 ONNX model), and its
    path. `threads`: CPU threads for the backend (default: its choice)."""
    path = shipped_model_path("onnx") if path is None else Path(path)
    if not path.is_file():
        raise DigitrecError(f"{path}: no such model file; give a .safetensors checkpoint or an .onnx model")
    backend = _torch_backend(path, threads) if _is_safetensors(path) else _onnx_backend(path, threads)
    return backend, path
