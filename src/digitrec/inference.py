"""The `Recognizer`: digit probabilities from a checkpoint (torch) or an ONNX model (onnxruntime).

Try: `python -c "from digitrec.inference import Recognizer; print(Recognizer.load().info)"`.

The backend is chosen by the file's content: a safetensors checkpoint runs on torch, anything
else is handed to onnxruntime. Importing this module, and the ONNX backend, never imports torch,
so recognising digits needs neither torch nor onnx installed.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import __version__
from .calibration import temperature_of
from .constants import IMAGE_SIZE, LABELS, MNIST_MEAN, MNIST_STD, NOT_A_DIGIT, NUM_CLASSES
from .errors import DigitrecError

if TYPE_CHECKING:  # segmentation is imported where an image is read, not with this module
    from .segmentation import DigitCrop, Slot

BATCH_SIZE = 256  # images per backend call: large enough to amortise the call, small in memory
SMALL_BATCH = 32  # up to this many images run on one thread when no thread count is given
DEFAULT_TOPK = 3

# The ONNX files `digitrec export` writes. Their metadata_props hold the checkpoint's metadata,
# one top-level key each ("normalization", "labels", "model", "metrics", ...) with a JSON value,
# plus "export" (precision, measured test accuracy, parity) and the two keys below.
ONNX_FORMAT = "digitrec-onnx"
ONNX_FORMAT_VERSION = 1
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"
META_FORMAT, META_VERSION = "digitrec_format", "digitrec_format_version"

SHIPPED = {"onnx": "default.onnx", "int8": "default.int8.onnx", "checkpoint": "default.safetensors"}


def shipped_model_path(kind: str = "onnx") -> Path:
    """The path of a model shipped inside the package: "onnx" (float32), "int8" or "checkpoint"."""
    if kind not in SHIPPED:
        raise DigitrecError(f"unknown shipped model kind {kind!r}; choose one of: {', '.join(SHIPPED)}")
    path = Path(str(resources.files("digitrec") / "assets" / SHIPPED[kind]))
    if not path.is_file():
        raise DigitrecError(f"the shipped model {path} is missing; reinstall digitrec or run "
                            "scripts/make_shipped_model.sh in a checkout")
    return path


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature (calibration.py) in float32, stable for large logits."""
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def digit_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The ten digits' probabilities (N, 10) from a model's logits: the softmax of the digits'
    logits / temperature. A model's "not one digit" output (constants.NOT_A_DIGIT) is left out:
    it serves to choose how to cut a number (`piece_probabilities`), and a single digit's
    confidence stays what it was without it."""
    return softmax(np.asarray(logits)[:, :NUM_CLASSES], temperature)


def piece_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The ten digits' probabilities (N, 10) for pieces segmentation may cut a number into: with
    a "not one digit" output, the digits' share of the softmax over all outputs, so that a piece
    holding two digits or a fragment reads with low confidence (segmentation.choose_readings)."""
    return softmax(logits, temperature)[:, :NUM_CLASSES]


def topk(probs: np.ndarray, k: int = DEFAULT_TOPK, labels: tuple[str, ...] = LABELS) -> list[list[tuple[str, float]]]:
    """For each row of `probs`, the `k` most probable labels with their probabilities, best first."""
    probs = np.atleast_2d(np.asarray(probs))
    k = max(1, min(k, probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]


def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with an 8-byte header length, then the JSON header's "{".
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _parse_props(props: dict[str, str]) -> dict[str, Any]:
    """ONNX metadata_props (str -> JSON text) as a dict; values that are not JSON stay strings."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@dataclass
class _Backend:
    run: Callable[[np.ndarray], np.ndarray]  # normalised float32 (B, 1, 28, 28) -> logits (B, classes)
    fixed_batch: int | None  # a model exported for one batch size only gets exactly that many images
    metadata: dict[str, Any]  # the checkpoint's metadata, in its layout (see checkpoint.build_metadata)
    info: dict[str, Any]


def _onnx_session(path: Path, threads: int):
    """An onnxruntime session on the CPU; `threads` 0: onnxruntime's choice (the physical cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # A small network: latency is dominated by per-call overhead, so no inter-op parallelism.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: our own messages explain what went wrong
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for non-ONNX and invalid graphs
        raise DigitrecError(f"{path}: not a digitrec checkpoint or a valid ONNX model ({str(e).strip()[:200]}); "
                            "give a .safetensors checkpoint or an .onnx file from `digitrec export`") from None


def _onnx_backend(path: Path, threads: int | None) -> _Backend:
    # With no thread count given, a few images (one drawing, one photo's digits) run on one
    # thread: a thread pool's hand-offs cost more than they save on them, and its threads spin
    # on the cores the image's preprocessing needs. One canvas PNG end to end, measured: 1.87
    # against 1.95 ms on an idle machine; 3.3 against 7.6 ms with the other core busy.
    # Larger batches get a pool over all the cores, made when first needed.
    session = _onnx_session(path, threads or 1)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if len(inputs) == 1 else [i.shape for i in inputs]
    if len(inputs) != 1 or len(shape) != 4 or list(shape[1:]) != [1, IMAGE_SIZE, IMAGE_SIZE] \
            or inputs[0].type != "tensor(float)":
        raise DigitrecError(f"{path}: the model's input is {shape} ({inputs[0].type}), not a float "
                            f"(N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}) digit image; give a model made by `digitrec export`")
    out_shape = outputs[0].shape
    if len(out_shape) != 2 or out_shape[1] not in (NUM_CLASSES, NOT_A_DIGIT + 1):
        raise DigitrecError(f"{path}: the model's output is {out_shape}, not (N, {NUM_CLASSES}) digit scores "
                            f"(or {NOT_A_DIGIT + 1}, with \"not one digit\"); "
                            "give a model made by `digitrec export`")

    metadata = _parse_props(session.get_modelmeta().custom_metadata_map)
    version = metadata.get(META_VERSION)
    if META_VERSION in metadata and (not isinstance(version, int) or version > ONNX_FORMAT_VERSION):
        raise DigitrecError(f"{path}: {ONNX_FORMAT} format version {version} is newer than this digitrec "
                            f"understands ({ONNX_FORMAT_VERSION}); upgrade digitrec")
    if metadata.get(META_FORMAT) != ONNX_FORMAT:
        metadata = {}  # someone else's model: its metadata means nothing to us
    in_name, out_name = inputs[0].name, outputs[0].name
    all_cores = functools.cache(lambda: _onnx_session(path, 0))  # made when first needed

    def run(x: np.ndarray) -> np.ndarray:
        chosen = session if threads or len(x) <= SMALL_BATCH else all_cores()
        return chosen.run([out_name], {in_name: x})[0]

    return _Backend(
        run=run,
        fixed_batch=shape[0] if isinstance(shape[0], int) else None,
        metadata=metadata,
        info={"backend": "onnxruntime", "format_version": version,
              "precision": metadata.get("export", {}).get("precision", "unknown"),
              "threads": threads or "default"},
    )


def _torch_backend(path: Path, threads: int | None) -> _Backend:
    try:
        import torch
    except ImportError:
        raise DigitrecError(f"{path} is a checkpoint, and running one needs torch: install digitrec[train], "
                            f"or export it with `digitrec export {path}` and use the .onnx file") from None
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return ckpt.model(torch.from_numpy(x)).float().numpy()

    def run(x: np.ndarray) -> np.ndarray:
        # torch's thread count is process-wide: set it for this call only, so loading one model
        # does not change how the rest of the process runs.
        previous = torch.get_num_threads()
        if not threads or threads == previous:
            return forward(x)
        torch.set_num_threads(threads)
        try:
            return forward(x)
        finally:
            torch.set_num_threads(previous)

    return _Backend(run=run, fixed_batch=None, metadata=ckpt.metadata,
                    info={"backend": "torch", "format_version": ckpt.metadata.get("format_version"),
                          "precision": "float32", "threads": threads or "default"})


# The pieces of a number are read at small shifts too, their logits averaged: a piece cut out of
# a number sits less surely where MNIST centres a digit than a lone digit does. Numbers of the
# 10,000 digits a `--holdout 10000` model never saw (two sets of three renderings of 200): 547
# and 555 of 600 read right against 543 and 551. A lone digit is read once (its latency).
PIECE_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (rows, columns)
DEFAULT_REJECT_BELOW = 0.5  # digits less confident than this are flagged; all flagged: rejected
MAX_EXPECTED_DIGITS = 20  # the longest number (a phone number, an amount) on one line


@dataclass
class DigitResult:
    """One recognised digit: what, how sure, and where in the input image."""

    digit: str
    confidence: float
    probabilities: list[float]
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), end-exclusive, input image pixels
    flagged: bool  # confidence under the rejection threshold
    top_k: list[tuple[str, float]]
    image: np.ndarray  # (28, 28) float32: what the network saw
    not_one_digit: float | None = None  # the chance the piece is not one digit; None: the model cannot tell

    def to_dict(self, *, include_image: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "digit": self.digit, "confidence": round(self.confidence, 6),
            "probabilities": [round(p, 6) for p in self.probabilities], "box": list(self.box),
            "flagged": self.flagged, "top_k": [{"digit": d, "probability": round(p, 6)} for d, p in self.top_k],
            "not_one_digit": None if self.not_one_digit is None else round(self.not_one_digit, 6),
        }
        if include_image:
            d["image"] = png_data_url(self.image)
        return d


@dataclass
class Recognition:
    """The result for one input image; `text` is the number read ("" when rejected)."""

    text: str
    digits: list[DigitResult]
    rejected: bool
    path: str | None = None
    error: str | None = None

    def to_dict(self, *, include_images: bool = False) -> dict[str, Any]:
        return {"path": self.path, "text": self.text,
                "digits": [d.to_dict(include_image=include_images) for d in self.digits],
                "rejected": self.rejected, "error": self.error}


def png_data_url(image: np.ndarray) -> str:
    """A float image in [0, 1] as a `data:image/png;base64,...` URL (for JSON and web pages)."""
    import base64
    import io

    from PIL import Image

    from .preprocessing import to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _concatenate(readings: list[tuple[list[DigitCrop], np.ndarray, np.ndarray]]
                 ) -> tuple[list[DigitCrop], np.ndarray, np.ndarray]:
    """(crops, digit probabilities, piece probabilities) of several readings, one after another."""
    return ([c for reading in readings for c in reading[0]], np.concatenate([r[1] for r in readings]),
            np.concatenate([r[2] for r in readings]))


class Recognizer:
    """Digit probabilities for MNIST-format images, from a checkpoint or an ONNX model."""

    def __init__(self, backend: _Backend, path: Path) -> None:
        meta = backend.metadata
        norm = meta.get("normalization") or {}
        # A foreign ONNX model without our metadata is assumed to expect MNIST's normalisation.
        self.mean = float(norm.get("mean", MNIST_MEAN))
        self.std = float(norm.get("std", MNIST_STD))
        self.labels: tuple[str, ...] = tuple(meta.get("labels") or LABELS)
        self.temperature = temperature_of(meta)  # probabilities = softmax(logits / temperature)
        self._backend = backend
        model = meta.get("model") or {}
        # An exported model records the accuracy measured on itself; a checkpoint, training's.
        accuracy = (meta.get("export") or {}).get("test_accuracy", (meta.get("metrics") or {}).get("test_accuracy"))
        self.info: dict[str, Any] = {
            "architecture": model.get("name", "unknown (not a digitrec model)"),
            "config": model.get("config"),
            **backend.info,
            "path": str(path),
            "file_bytes": path.stat().st_size,
            "test_accuracy": accuracy,
            "normalization": {"mean": self.mean, "std": self.std, "from_metadata": bool(norm)},
            "temperature": self.temperature,
            "model_digitrec_version": (meta.get("versions") or {}).get("digitrec"),
            "digitrec_version": __version__,
        }

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's own metadata: architecture, training config and time, metrics."""
        return self._backend.metadata

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int | None = None) -> "Recognizer":
        """Load a `.safetensors` checkpoint (torch) or an ONNX model (onnxruntime); None loads the
        shipped float32 ONNX model. `threads`: CPU threads for the backend (default: its choice)."""
        path = shipped_model_path("onnx") if path is None else Path(path)
        if not path.is_file():
            raise DigitrecError(f"{path}: no such model file; give a .safetensors checkpoint or an .onnx model")
        backend = _torch_backend(path, threads) if _is_safetensors(path) else _onnx_backend(path, threads)
        return cls(backend, path)

    @staticmethod
    def _as_batch(images: np.ndarray) -> np.ndarray:
        """Check and reshape the input to (N, 28, 28), uint8 or float."""
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        elif images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DigitrecError(f"images must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}); got shape {images.shape}")
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise DigitrecError(f"images must be uint8 0..255 or float in [0, 1]; got {images.dtype}")
        return images

    def _normalise(self, images: np.ndarray) -> np.ndarray:
        """(B, 28, 28) uint8 0..255 or float in [0, 1] -> normalised float32 (B, 1, 28, 28)."""
        x = images.astype(np.float32)
        if images.dtype == np.uint8:
            x *= np.float32(1 / 255)
        x -= np.float32(self.mean)
        x /= np.float32(self.std)
        return x[:, None]

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """Raw model scores (N, classes) in float32; most callers want `predict_proba`."""
        images = self._as_batch(images)
        step = self._backend.fixed_batch or BATCH_SIZE
        out = []
        for start in range(0, len(images), step):  # normalised per batch: memory stays bounded
            x = self._normalise(images[start:start + step])
            n = len(x)
            if self._backend.fixed_batch and n < step:  # pad the last batch to the model's size
                x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), np.float32)])
            out.append(np.asarray(self._backend.run(x), dtype=np.float32)[:n])
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Digit probabilities (N, 10), float32, for (N, 28, 28) images: uint8 0..255 or float in
        [0, 1], ink bright on dark (MNIST's format, as `digitrec.preprocessing` makes); calibrated
        by the model's temperature (calibration.py); rows add up to 1 (`digit_probabilities`)."""
        return digit_probabilities(self.predict_logits(images), self.temperature)

    def topk(self, probs: np.ndarray, k: int = DEFAULT_TOPK) -> list[list[tuple[str, float]]]:
        """The `k` most probable digits of each row of `probs`, as (label, probability)."""
        return topk(probs, k, self.labels)

    def recognize(self, source: bytes | str | os.PathLike | np.ndarray, *, expected_digits: int | None = None,
                  reject_below: float = DEFAULT_REJECT_BELOW, top_k: int = DEFAULT_TOPK, name: str | None = None,
                  debug: dict[str, np.ndarray] | None = None) -> Recognition:
        """Read the digits in an image: a photo, a scan, a canvas export or a 28x28 digit; one
        digit or a number on one line. Raises DigitrecError for an image that cannot be read.

        The same pipeline serves the CLI, the Python API and the service: load_image ->
        has_digit ("no digit" without asking the network) -> segment (each digit through the
        MNIST-format preprocessing) -> one batched prediction. The "no digit" check and the
        segmentation share the image's ink signal (segmentation.stats_and_inkmap). Where
        segmentation is unsure how to cut (touching digits, a wide digit), every plausible
        reading is in that batch and the most confidently read one is kept. Several pieces are
        read at PIECE_SHIFTS; a piece the model still calls "not one digit" is cut again
        (`_cut_again`) in a second batch, and its group read again with many more candidate
        cuts (`_recut`) in a third."""
        from .preprocessing import load_image, looks_like_digit
        from .segmentation import choose_readings, segment_slots, stats_and_inkmap

        if expected_digits is not None and not 1 <= expected_digits <= MAX_EXPECTED_DIGITS:
            raise DigitrecError(f"the expected digit count must be 1 to {MAX_EXPECTED_DIGITS}; got {expected_digits}")
        path = name if name is not None else (None if isinstance(source, (bytes, np.ndarray)) else str(source))
        image = source if isinstance(source, np.ndarray) else load_image(source, name=path)
        stats, inkmap = stats_and_inkmap(image, debug=debug)
        slots = segment_slots(image, expected=expected_digits, debug=debug, inkmap=inkmap) if looks_like_digit(stats) else []
        if not slots:
            return Recognition(text="", digits=[], rejected=True, path=path)
        # Every crop of every slot in one batch. Where segmentation was unsure how to cut a group
        # (touching digits, or one wide digit?), the most confidently read way is kept.
        crops = [c for slot in slots for c in slot.crops]
        batch = np.stack([c.image for c in crops])
        logits = self._piece_logits(batch) if len(crops) > 1 else self.predict_logits(batch)
        probs = digit_probabilities(logits, self.temperature)
        has_class = logits.shape[1] > NUM_CLASSES  # a "not one digit" output
        pieces = piece_probabilities(logits, self.temperature) if has_class else probs
        if any(len(slot.crops) > len(slot.primary) for slot in slots):
            starts = np.cumsum([0] + [len(slot.crops) for slot in slots])
            picks = choose_readings(slots, [pieces[a:b] for a, b in zip(starts[:-1], starts[1:])], expected_digits)
            keep = [int(start) + i for start, chain in zip(starts, picks) for i in chain]
            crops, probs, pieces = [crops[i] for i in keep], probs[keep], pieces[keep]
        else:
            picks = [list(slot.primary) for slot in slots]
        if has_class and expected_digits is None:
            owners = [(k, i) for k, chain in enumerate(picks) for i in chain]
            crops, probs, pieces, held = self._cut_again(slots, owners, crops, probs, pieces)
            crops, probs, pieces = self._recut(slots, held, crops, probs, pieces)
        # With a "not one digit" output, the rest of each piece's probability is that.
        not_one = 1 - pieces.sum(axis=1) if has_class else [None] * len(crops)
        if debug is not None:
            for i, crop in enumerate(crops):
                debug[f"seg_digit_{i:02d}"] = crop.image
        tops = self.topk(probs, top_k)
        digits = []
        for crop, p, top, other in zip(crops, probs, tops, not_one):
            best = int(p.argmax())
            digits.append(DigitResult(digit=self.labels[best], confidence=float(p[best]),
                                      probabilities=[float(v) for v in p], box=tuple(int(v) for v in crop.box),
                                      flagged=bool(p[best] < reject_below), top_k=top, image=crop.image,
                                      not_one_digit=None if other is None else float(max(0.0, other))))
        # Nothing trustworthy was read: say so rather than return a confident-looking guess.
        rejected = all(d.flagged for d in digits)
        return Recognition(text="" if rejected else "".join(d.digit for d in digits), digits=digits,
                           rejected=rejected, path=path)

    def _piece_logits(self, images: np.ndarray) -> np.ndarray:
        """`predict_logits` of (N, 28, 28) pieces averaged over their PIECE_SHIFTS, in one call."""
        views = np.concatenate([np.roll(images, shift, axis=(1, 2)) for shift in PIECE_SHIFTS])
        return self.predict_logits(views).reshape(len(PIECE_SHIFTS), len(images), -1).mean(axis=0)

    def _cut_again(self, slots: list[Slot], owners: list[tuple[int, int]], crops: list[DigitCrop], probs: np.ndarray,
                   pieces: np.ndarray) -> tuple[list[DigitCrop], np.ndarray, np.ndarray, list[int]]:
        """Each kept piece the model reads as "not one digit" (segmentation.RESPLIT_OTHER), cut
        into 2 to RESPLIT_PARTS digits at forced cuts, and read so where `prefer_split` says.
        `owners[j]`: (slot index, segment index) of crop j. Returns the new (crops, probs,
        pieces) and the slot index of each new crop."""
        from .segmentation import RESPLIT_OTHER

        readings = [([crop], probs[j : j + 1], pieces[j : j + 1]) for j, crop in enumerate(crops)]
        for j, (k, i) in enumerate(owners):
            if 1 - pieces[j].sum() >= RESPLIT_OTHER and slots[k].split:
                readings[j] = self._best_cut(slots[k], i, readings[j])
        held = [k for (k, _), reading in zip(owners, readings) for _ in reading[0]]
        return (*_concatenate(readings), held)

    def _recut(self, slots: list[Slot], held: list[int], crops: list[DigitCrop], probs: np.ndarray,
               pieces: np.ndarray) -> tuple[list[DigitCrop], np.ndarray, np.ndarray]:
        """Each slot holding a piece still read as more likely "not one digit" than one
        (segmentation.RECUT_OTHER) read again with many more candidate cuts (Slot.recut), in one
        batch, and kept so where `prefer_split` says. `held[j]`: the slot index of crop j."""
        from .segmentation import RECUT_OTHER, choose_readings, prefer_split

        poor = sorted({k for j, k in enumerate(held) if 1 - pieces[j].sum() >= RECUT_OTHER and slots[k].recut})
        if not poor:
            return crops, probs, pieces
        dense = [slots[k].recut() for k in poor]  # type: ignore[misc]
        # Read once, not at PIECE_SHIFTS: as many held-out numbers read right (segmentation.py), with
        # a fifth of the network work.
        logits = self.predict_logits(np.stack([c.image for slot in dense for c in slot.crops]))
        readings = [([crop], probs[j : j + 1], pieces[j : j + 1]) for j, crop in enumerate(crops)]
        start = 0
        for k, slot in zip(poor, dense):
            rows = logits[start : start + len(slot.crops)]
            start += len(slot.crops)
            p = piece_probabilities(rows, self.temperature)
            chain = choose_readings([slot], [p])[0]
            now = [j for j, owner in enumerate(held) if owner == k]
            if chain and prefer_split(pieces[now], p[chain]):
                # The slot's new reading in place of its first piece; its other pieces go.
                readings[now[0]] = ([slot.crops[i] for i in chain], digit_probabilities(rows[chain], self.temperature),
                                    p[chain])
                for j in now[1:]:
                    readings[j] = ([], probs[:0], pieces[:0])
        return _concatenate(readings)

    def _best_cut(self, slot: Slot, i: int, whole: tuple[list[DigitCrop], np.ndarray, np.ndarray]
                  ) -> tuple[list[DigitCrop], np.ndarray, np.ndarray]:
        """Segment `i` of `slot` as (crops, digit probabilities, piece probabilities): `whole`, or
        its forced cut into 2 to RESPLIT_PARTS digits that `prefer_split` reads best."""
        from .segmentation import RESPLIT_PARTS, prefer_split

        options = [c for k in range(2, RESPLIT_PARTS + 1) if (c := slot.split(i, k))]
        if not options:
            return whole
        logits = self._piece_logits(np.stack([c.image for option in options for c in option]))
        best, start = whole, 0
        for option in options:
            rows = logits[start : start + len(option)]
            start += len(option)
            p = piece_probabilities(rows, self.temperature)
            if prefer_split(best[2], p):  # of the cuts, the one read most confidently
                best = (list(option), digit_probabilities(rows, self.temperature), p)
        return best

    def __repr__(self) -> str:
        return f"Recognizer({self.info['architecture']}, {self.info['backend']}, {self.info['path']})"
