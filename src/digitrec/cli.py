"""The `digitrec` command: parse the arguments, call one library function, print the result.

Try: `digitrec --help`, `digitrec data`, `digitrec train --preset default`.

Commands that need torch import it only when they run (the imports marked "deferred: torch"), so
`digitrec predict` on an ONNX model starts fast and works without torch installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .constants import NUM_CLASSES
from .data.corruptions import DEFAULT_SEED as CORRUPTION_SEED
from .data.idxpair import read_idx_pair, write_idx_folder
from .data.mnist import describe
from .errors import DigitrecError
from .fileio import atomic_path, ensure_dir
from .image.decode import IMAGE_SUFFIXES, MAX_BYTES, MAX_PIXELS, to_uint8
from .probabilities import DEFAULT_TOPK
from .recognition.checksums import CHECKSUMS
from .recognition.constraints import Constraints, load_lexicon
from .recognition.explain import GRAD_CAM, INTEGRATED_GRADIENTS, OCCLUSION
from .recognition.lattice import DEFAULT_ALTERNATIVES, MAX_ALTERNATIVES
from .recognition.recognizer import (
    DEFAULT_REJECT_BELOW,
    MAX_EXPECTED_DIGITS,
    NOT_DIGIT_THRESHOLD,
    PIECE_NOT_DIGIT_THRESHOLD,
    Recognizer,
)
from .recognition.results import (
    LOW_CONFIDENCE,
    NO_INK,
    NO_VALID_READING,
    NOT_A_DIGIT,
    Alternative,
    DigitResult,
    Reason,
    Recognition,
)
from .service.settings import (
    ADMIN_TOKEN_ENV,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_WORKERS,
    LARGE_AT_ONCE,
    LARGE_IMAGE_PIXELS,
    MAX_BATCH_BYTES,
    MAX_BATCH_FILES,
    MAX_QUEUE_BUDGET_S,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_PIXELS,
    MAX_WORKERS,
    QUEUE_BUDGET_S,
    Settings,
)
from .training.config import (
    AUGMENTATIONS,
    HEAD_NUMBERS,
    HEAD_SEED,
    NONDIGIT_EPOCHS,
    NONDIGIT_NEGATIVES,
    NONDIGIT_NUMBERS,
    NONDIGIT_SEED,
    SCHEDULES,
    list_presets,
    make_config,
)
from .version import __version__

# What the train extra adds: a command that needs one of them says how to install it.
TRAIN_EXTRA = ("torch", "onnx", "matplotlib")
TORCH_COMMANDS = {"train"}  # commands whose --help lists the registered models (imports torch)


def _in_range(kind: type, lo: float, hi: float) -> Callable[[str], Any]:
    """An argparse type: `kind` (int or float) from lo to hi inclusive; anything else is an
    argparse error (exit 2), as the API's 422 is."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= value <= hi:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be {lo} to {hi}; got {text}")
        return value

    return parse


PORTS = (1, 65535)  # TCP ports a server can listen on
MAX_THREADS = 256  # torch CPU threads: more than any machine this runs on has cores


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the MNIST IDX files (plain or .gz); default: $DIGITREC_DATA, then the cache",
    )


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="URL",
        help="where profiles are kept: an SQLite file's path or a database URL (postgresql://USER@HOST/DB); "
        "default: $DIGITREC_STORE, then store.sqlite in the user's data folder",
    )


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for machines instead of tables")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


# ---- data ---------------------------------------------------------------------------------------


def cmd_data(args: argparse.Namespace) -> int:
    info = describe(args.data_dir, download=not args.no_download, progress=not args.json)
    if args.json:
        _print_json(info)
        return 0
    print(f"MNIST in {info['data_dir']} (chosen by {info['chosen_by']})")
    for f in info["files"]:
        print(f"  {f['name']:<24} {f['items']:>6} items  {f['bytes']:>9} bytes  sha256 ok  {f['path']}")
    for split, s in info["splits"].items():
        counts = " ".join(str(s["label_counts"][str(c)]) for c in range(len(s["label_counts"])))
        print(f"  {split:<5} {s['items']:>6} digits, per class 0-9: {counts}")
    return 0


# ---- train --------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    import torch  # deferred: torch

    from .training.distributed import launch_from_env  # deferred: torch

    # Under torchrun (several processes, distributed.py) rank 0 speaks for the run, and an error
    # says which rank it comes from.
    launch = launch_from_env()
    if launch is None or launch.world_size == 1:
        return _train_command(args, torch.cuda.is_available())
    try:
        return _train_command(args, torch.cuda.is_available(), launch.rank, launch.world_size)
    except DigitrecError as e:
        from .training.distributed import PeerFailed, report_failure  # deferred: torch

        error = DigitrecError(f"{launch}: {e}")
        report_failure(f"digitrec: error: {error}", peer=isinstance(e, PeerFailed))
        raise error from None


def _train_command(args: argparse.Namespace, cuda: bool, rank: int = 0, world_size: int = 1) -> int:
    from .training.loop import format_epoch  # deferred: torch
    from .training.run import train  # deferred: torch

    config = make_config(
        args.preset,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        label_smoothing=args.label_smoothing,
        augment=args.augment,
        seed=args.seed,
        holdout=args.holdout,
        ema=args.ema,
        pieces=args.pieces,
        negatives=args.negatives,
        teachers=tuple(args.teacher) if args.teacher else None,
        distill=args.distill,
    )
    out = args.out or Path("runs") / args.preset
    if world_size > 1 and not args.resume:  # a resumed run's batch is its own, checked when it started
        from .training.distributed import check_batch  # deferred: torch

        check_batch(config.batch_size, world_size)
    if not args.json and rank == 0:
        import torch  # deferred: torch

        what = f"resuming the run in {out}" if args.resume else f"training {config.model} with preset {args.preset}"
        # A resumed run trains with the thread count it saved (run.train); say so rather than guess.
        threads = "its saved threads" if args.resume else f"{args.threads or torch.get_num_threads()} threads"
        if world_size == 1:
            print(f"{what} on {'cuda' if cuda else 'cpu'} ({threads})")
        else:
            backend = "NCCL, one GPU each" if cuda else "gloo"
            print(f"{what} on {world_size} {'cuda' if cuda else 'cpu'} processes ({backend}; {threads} each)")
    result = train(
        config,
        out,
        data_dir=args.data_dir,
        resume=args.resume,
        progress=not args.json,
        threads=args.threads,
        extra_data=args.extra_data,
    )
    if rank != 0:  # rank 0 reports the run
        return 0 if result.completed else 130
    if args.json:
        _print_json(
            {
                "completed": result.completed,
                "metrics": result.metrics,
                "files": result.files,
                "history": result.state.history,
            }
        )
    elif result.completed:
        print(f"done: {format_epoch(result.state.history[-1], result.state.config.epochs)}")
        for name, path in result.files.items():
            print(f"  {name:<10} {path}")
    if not result.completed:
        print(
            f"stopped after {result.state.epoch} epochs and {result.state.step_in_epoch} steps; "
            f"continue with: digitrec train --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    return 0


# ---- evaluate -----------------------------------------------------------------------------------


def _add_idx_pair(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--images",
        type=Path,
        metavar="FILE",
        help="evaluate on these images instead of the MNIST test set: an IDX file (plain or .gz) "
        "of 28x28 uint8 digits, such as QMNIST, EMNIST digits or a corrupted set; needs --labels",
    )
    p.add_argument("--labels", type=Path, metavar="FILE", help="the IDX file of their labels 0-9")


def _read_idx_pair(args: argparse.Namespace) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """(images, labels, name) from --images/--labels, or (None, None, None) without them."""
    if args.images is None and args.labels is None:
        return None, None, None
    if args.images is None or args.labels is None:
        raise DigitrecError("--images and --labels go together: give both IDX files")
    images, labels = read_idx_pair(args.images, args.labels)
    return images, labels, f"{args.images} + {args.labels}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .reports.evaluation import evaluate_checkpoints, format_report  # deferred: torch

    images, labels, data_name = _read_idx_pair(args)
    out = args.out or (args.checkpoints[0].parent / ("report" if len(args.checkpoints) == 1 else "report-ensemble"))
    result = evaluate_checkpoints(
        args.checkpoints,
        data_dir=args.data_dir,
        out_dir=out,
        progress=not args.json,
        tta=args.tta,
        images=images,
        labels=labels,
        data_name=data_name,
        limit=args.limit,
    )
    if args.json:
        _print_json(result.report)
        return 0
    if len(args.checkpoints) > 1:
        for m in result.report["members"]:
            print(f"  member {m['checkpoint']}: accuracy {m['accuracy']:.4f}")
        print(f"ensemble of {len(args.checkpoints)} (mean of probabilities):")
    print(format_report(result.report))
    curve = result.report["error_reject"]
    print(
        "error-reject: "
        + ", ".join(
            f"{100 * e:.2f}% error rejecting {100 * r:.1f}%"
            for r, e in zip(curve["rejected_share"], curve["error_rate"])
            if r in (0.0, 0.01, 0.05)
        )
    )
    print(f"report: {result.files['report']}")
    print(
        f"confusion matrix: {result.files['confusion']}   misclassified: {result.files['misclassified']}   "
        f"error-reject curve: {result.files['error_reject']}"
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .training.calibration import calibrate_on_mnist  # deferred: torch

    calibration = calibrate_on_mnist(args.checkpoint, args.data_dir, progress=not args.json)
    if args.json:
        _print_json(calibration.to_dict())
        return 0
    print(
        f"{args.checkpoint}: temperature {calibration.temperature:.4f}, fitted on {calibration.fitted_on} "
        f"(negative log-likelihood {calibration.nll_before:.4f} -> {calibration.nll_after:.4f}); "
        f"export it again for the .onnx files to carry it"
    )
    return 0


def cmd_add_not_a_digit(args: argparse.Namespace) -> int:
    from .training.notdigit import add_class_to_checkpoint  # deferred: torch

    report = add_class_to_checkpoint(
        args.checkpoint, args.out, data_dir=args.data_dir, numbers=args.numbers, seed=args.seed, progress=not args.json
    )
    if args.json:
        _print_json(report.to_dict())
        return 0
    fit = report.fit
    print(
        f'{args.out or args.checkpoint}: "not one digit" fitted on {fit.pieces} pieces of {fit.numbers} '
        f"rendered numbers ({fit.not_one_digit} not one digit), {fit.fitted_on}"
        + (f" and {fit.negatives} pieces of negatives" if fit.negatives else "")
        + "; caught "
        f"{100 * fit.caught:.1f}% of those pieces, took {100 * fit.digits_taken_for_not:.2f}% "
        f"of the digits for one; temperature {report.calibration.temperature:.4f}. The digit scores are "
        "unchanged; export it again for the .onnx files"
    )
    return 0


def cmd_add_non_digit(args: argparse.Namespace) -> int:
    from .training.nondigit import add_nondigit_to_checkpoint  # deferred: torch

    report = add_nondigit_to_checkpoint(
        args.checkpoint,
        args.out,
        data_dir=args.data_dir,
        drawn=args.negatives,
        numbers=args.numbers,
        epochs=args.epochs,
        seed=args.seed,
        progress=not args.json,
    )
    if args.json:
        _print_json(report.to_dict())
        return 0
    fit = report.fit
    print(
        f'{args.out or args.checkpoint}: "not a digit" fitted on {fit.negatives} pieces of {fit.drawn} negatives '
        f"(letters, signs, shapes, scribbles, crossed-out digits), the pieces of {fit.numbers} rendered numbers "
        f"and {fit.fitted_on}; caught {100 * fit.caught:.1f}% of the negatives, took "
        f"{100 * fit.digits_taken_for_not:.2f}% of the digits for one; temperature "
        f"{report.calibration.temperature:.4f}. The digit scores are unchanged; export it again for the .onnx files"
    )
    return 0


# ---- robustness ---------------------------------------------------------------------------------


def cmd_robustness(args: argparse.Namespace) -> int:
    from .reports.robustness import format_robustness, run_robustness  # deferred: torch

    images, labels, _ = _read_idx_pair(args)
    out = args.out or args.checkpoints[0].parent / "robustness"
    result = run_robustness(
        args.checkpoints,
        corruptions=args.corruptions,
        severity=args.severity,
        seed=args.seed,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        out_dir=out,
        images=images,
        labels=labels,
        limit=args.limit,
        progress=not args.json,
    )
    if args.json:
        _print_json(result.report)
        return 0
    print(format_robustness(result.report))
    print(f"report: {result.files['report']}")
    if "chart" in result.files:
        print(f"chart: {result.files['chart']}   examples: {result.files['examples']}")
    else:
        print(f"no plots: {result.report['plots']}")
    return 0


# ---- export -------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint, format_report  # deferred: torch

    report = export_checkpoint(
        args.checkpoint, args.out, int8=args.int8, data_dir=args.data_dir, progress=not args.json
    )
    if args.json:
        _print_json(report.to_dict())
    else:
        print(format_report(report))
    return 0


# ---- predict ------------------------------------------------------------------------------------


def _expand_inputs(paths: list[str]) -> list[str]:
    """Files as given, folders as the image files inside them (sorted), '-' as stdin."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir():
            out += sorted(str(f) for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        else:
            out.append(p)
    return out


def _write_debug(debug_dir: Path, index: int, source: str, stages: dict) -> None:
    folder = ensure_dir(debug_dir / f"{index:03d}_{Path(source).stem if source != '-' else 'stdin'}", "debug folder")
    for name, image in stages.items():
        a = np.asarray(image, dtype=np.float32)
        a = (a - a.min()) / (a.max() - a.min()) if a.max() > 1 or a.min() < 0 else a  # e.g. a background level map
        with atomic_path(folder / f"{name}.png") as tmp:
            Image.fromarray(to_uint8(a)).save(tmp, format="PNG")


# What the plain output says about a rejected image, by Recognition.reason.
REJECTED: dict[Reason, str] = {
    NO_INK: "no digit found",
    NOT_A_DIGIT: "not a digit",
    LOW_CONFIDENCE: "low confidence",
    NO_VALID_READING: "no valid reading",
}


def _describe_piece(d: DigitResult) -> str:
    """One piece in the plain output: `7:0.98`, `7:0.41?` (unsure), `?:not a digit 0.93`."""
    if not d.is_digit:
        return f"?:not a digit {d.not_digit:.2f}"
    return f"{d.digit}:{d.confidence:.2f}{'?' if d.flagged else ''}"


def _printable(text: str) -> str:
    """Text for the terminal: a file name's control characters (an escape sequence, a newline)
    shown escaped, never sent raw."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def _utf8(text: str | None) -> str | None:
    """Valid UTF-8 for JSON: a file name's undecodable bytes (Python keeps them as lone
    surrogates) become U+FFFD."""
    if text is None:
        return None
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "replace").decode("utf-8")


def _readings(readings: Sequence[Alternative]) -> str:
    return ", ".join(f"{a.text} ({a.probability:.2g})" for a in readings)


def _plain(source: str, result: Recognition) -> str:
    notes = "".join(f"   (note: {note})" for note in result.notes)
    return _plain_reading(source, result) + notes


def _plain_reading(source: str, result: Recognition) -> str:
    c = result.constrained
    if not result.rejected:
        line = f"{source}: {result.text}   ({' '.join(_describe_piece(d) for d in result.digits)})"
        return line + (f"   other valid readings: {_readings(c.readings[1:])}" if c and c.readings[1:] else "")
    message = REJECTED[result.reason or NO_INK]
    if c is not None and result.reason == NO_VALID_READING:
        valid = f"; valid readings: {_readings(c.readings)}" if c.readings else ""
        message += f"   (read as: {c.unconstrained or 'nothing'}{valid})"
    elif result.digits:  # what was read, so that the person can see why
        message += f"   ({' '.join(_describe_piece(d) for d in result.digits)})"
    return f"{source}: {message}"


def cmd_predict(args: argparse.Namespace) -> int:
    # Checked and loaded (the lexicon) once, before any model or image: a bad one costs nothing.
    constraints = Constraints(args.digits, args.pattern, args.checksum, args.lexicon)
    compiled = constraints.compile() if constraints.beyond_count else None
    recognizer = Recognizer.load(args.model)
    profile = None
    if args.profile is not None:
        from .store.profiles import ProfileCache, ProfileStore  # deferred: sqlalchemy

        profile = ProfileCache(ProfileStore.open(args.store), recognizer).get(args.profile)
    inputs = _expand_inputs(args.paths)
    if not inputs:
        raise DigitrecError(f"no image files in {', '.join(args.paths)}")
    failures = 0
    for i, source in enumerate(inputs):
        debug: dict | None = {} if args.debug_dir else None
        try:
            # At most the byte limit and one more: recognize refuses what is over it, in one line.
            data = sys.stdin.buffer.read(MAX_BYTES + 1) if source == "-" else source
            result = recognizer.recognize(
                data,
                expected_digits=args.digits,
                reject_below=args.reject_below,
                top_k=args.top_k,
                name=source,
                debug=debug,
                strict=args.strict,
                not_digit_threshold=args.not_digit_threshold,
                piece_not_digit_threshold=args.piece_not_digit_threshold,
                constraints=compiled,
                alternatives=args.alternatives,
                max_bytes=MAX_BYTES,
                profile=profile,
            )
        except DigitrecError as e:
            failures += 1
            result = Recognition(text="", digits=[], rejected=True, path=source, error=str(e))
        if debug:
            _write_debug(args.debug_dir, i, source, debug)
        if args.json:
            answer = result.to_dict()
            answer.update(path=_utf8(answer["path"]), error=_utf8(answer["error"]))
            print(json.dumps(answer), flush=True)
        elif result.error:
            print(_printable(f"{source}: error: {result.error}"), file=sys.stderr)
        else:
            print(_printable(_plain(source, result)))
    if failures and not args.json:
        print(f"{failures} of {len(inputs)} inputs could not be read", file=sys.stderr)
    return 1 if failures else 0


# ---- explain ------------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    from .recognition.explain import attribution_method, explain, render

    recognizer = Recognizer.load(args.model)
    method = attribution_method(args.method, recognizer)
    attribute = None
    if method != OCCLUSION:
        from .reports.explain import gradient_attribution  # deferred: torch

        attribute = gradient_attribution(recognizer.info["path"], method)
    data = sys.stdin.buffer.read(MAX_BYTES + 1) if args.image == "-" else args.image
    explanation = explain(
        recognizer, data, attribute=attribute, method=method, expected_digits=args.digits, name=args.image
    )
    if args.out is not None:
        picture = render(explanation)
        with atomic_path(args.out) as tmp:
            picture.save(tmp, format="PNG")
    if args.json:
        _print_json({**explanation.to_dict(), "picture": str(args.out) if args.out else None})
        return 0
    tops = "  ".join(" ".join(f"{d}:{p:.2f}" for d, p in piece.top) for piece in explanation.pieces)
    print(f"{args.image}: {explanation.text}   ({tops})   attribution: {explanation.method}")
    if args.out is not None:
        print(f"picture: {args.out}")
    return 0


# ---- personal profiles ----------------------------------------------------------------------------


def _per_digit(counts: Sequence[int]) -> str:
    return " ".join(f"{d}:{n}" for d, n in enumerate(counts) if n) or "none"


def cmd_personalize(args: argparse.Namespace) -> int:
    from .store.profiles import ProfileStore, check_profile_name  # deferred: sqlalchemy
    from .store.samples import find_labelled_files, read_samples  # deferred: sqlalchemy

    check_profile_name(args.profile)  # before any model or file is read
    files, skipped = find_labelled_files(args.paths)
    recognizer = Recognizer.load(args.model)
    samples = read_samples(recognizer, files)
    skipped += samples.skipped
    if not len(samples.labels):
        why = f"; left out: {_printable(str(skipped[0][0]))}: {skipped[0][1]}" if skipped else ""
        raise DigitrecError(f"no labelled digit images in {', '.join(args.paths)}{why}")
    store = ProfileStore.open(args.store)
    info = store.add_samples(args.profile, samples.images, samples.labels, create=True)
    base = recognizer.predict_proba(samples.images).argmax(1)
    if args.json:
        _print_json(
            {
                **info.to_dict(),
                "added": len(samples.labels),
                "base_model_right": int((base == samples.labels).sum()),
                "skipped": [{"file": _utf8(str(f)), "why": why} for f, why in skipped],
                "store": store.url,
            }
        )
        return 0
    print(
        f"added {len(samples.labels)} samples to profile {info.id}: now {info.samples} "
        f"(per digit {_per_digit(info.counts)}) in {store.url}"
    )
    print(f"the model alone reads {int((base == samples.labels).sum())} of the {len(base)} added right")
    for f, why in skipped:
        print(_printable(f"  left out {f}: {why}"), file=sys.stderr)
    print(f"read with it: digitrec predict --profile {info.id} IMAGE")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from .store.profiles import MAX_PROFILE_FILE_BYTES, ProfileStore, check_profile_name  # deferred: sqlalchemy

    store = ProfileStore.open(args.store)
    if args.action == "list":
        found = store.list_profiles()
        if args.json:
            _print_json([i.to_dict() for i in found])
        elif not found:
            print(f"no profiles in {store.url}; `digitrec personalize --profile NAME IMAGES` makes one")
        for i in [] if args.json else found:
            kind = "issued by the service" if i.issued else "named"
            print(
                f"{i.id:<34} {i.samples:>5} samples ({_per_digit(i.counts)}), {kind}, changed {i.updated_at:%Y-%m-%d %H:%M}"
            )
    elif args.action == "show":
        info = store.info(args.name)
        if args.json:
            _print_json(info.to_dict())
        else:
            print(f"profile {info.id} in {store.url}")
            print(f"  samples   {info.samples} (per digit {_per_digit(info.counts)})")
            print(f"  created   {info.created_at:%Y-%m-%d %H:%M:%S %Z}")
            print(f"  changed   {info.updated_at:%Y-%m-%d %H:%M:%S %Z} (revision {info.revision})")
    elif args.action == "delete":
        store.delete(args.name)
        print(f"deleted profile {args.name} and its samples")
    elif args.action == "export":
        data = store.export_profile(args.name)
        try:
            with atomic_path(args.out) as tmp:
                tmp.write_bytes(data)
        except OSError as e:  # --out names a folder, the disk is full
            raise DigitrecError(f"{args.out}: cannot write it ({e.strerror or e})") from None
        print(f"wrote profile {args.name} to {args.out}; `digitrec profiles import {args.out}` reads it")
    else:  # import
        if args.name is not None:
            check_profile_name(args.name)
        try:
            with args.file.open("rb") as f:  # no further than the limit: a huge file is refused unread
                data = f.read(MAX_PROFILE_FILE_BYTES + 1)
        except OSError as e:
            raise DigitrecError(f"{args.file}: cannot read it ({e.strerror or e})") from None
        info = store.import_profile(data, args.name)
        if args.json:
            _print_json(info.to_dict())
        else:
            print(f"profile {info.id}: now {info.samples} samples (per digit {_per_digit(info.counts)})")
    return 0


def cmd_corrections(args: argparse.Namespace) -> int:
    from .store.profiles import ProfileStore  # deferred: sqlalchemy

    images, labels = ProfileStore.open(args.store).samples(args.profile)
    if not len(labels):
        raise DigitrecError("no samples to export; profiles collect them (`digitrec personalize`, the service)")
    paths = write_idx_folder(args.out, images, labels)
    print(f"wrote {len(labels)} digits to {paths[0]} and {paths[1]}")
    print(f"train with them: digitrec train --extra-data {args.out}")
    return 0


# ---- serve --------------------------------------------------------------------------------------


def _name_and_file(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise DigitrecError(f"--lexicon {value!r}: give NAME=FILE, e.g. --lexicon postcodes=codes.txt")
    return name, path


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .service.server import serve  # deferred: fastapi
    except ImportError as e:
        raise DigitrecError(
            f"serving needs the serve extra ({e.name} is missing): pip install 'digitrec[serve]'"
        ) from None
    lexicons = dict(_name_and_file(v) for v in args.lexicon)
    settings = Settings(
        model=str(args.model) if args.model else None,
        workers=args.workers,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        max_batch_files=args.max_batch_files,
        max_batch_bytes=args.max_batch_bytes,
        large_at_once=args.large_at_once,
        queue_budget_s=args.queue_budget,
        lexicons=lexicons,
        store=args.store,
        admin_token=args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None,
    )
    Recognizer.load(settings.model)  # a bad --model fails here, with one message, before the server starts
    if settings.store is not None:  # and so does a store that cannot be opened
        from .store.profiles import ProfileStore  # deferred: sqlalchemy

        ProfileStore.open(settings.store)
    for path in lexicons.values():  # and so does a bad lexicon
        load_lexicon(path)
    print(f"digitrec: the drawing page is http://{args.host}:{args.port}/ and the API docs /docs", file=sys.stderr)
    serve(settings, host=args.host, port=args.port, access_log=not args.no_access_log)
    return 0


# ---- parser and entry point -----------------------------------------------------------------------


CHECKPOINT_HELP = "a .safetensors checkpoint: what `digitrec train` writes (model.safetensors in --out)"
# What each command's --help ends with: commands to copy.
EXAMPLES = {
    "data": "digitrec data --data-dir ~/mnist",
    "train": "digitrec train --preset default --out runs/default\ndigitrec train --out runs/default --resume",
    "evaluate": "digitrec evaluate runs/default/model.safetensors\ndigitrec evaluate model.onnx --limit 1000 --json",
    "calibrate": "digitrec calibrate runs/default/model.safetensors",
    "add-not-a-digit": "digitrec add-not-a-digit runs/robust/model.safetensors --out runs/robust/numbers.safetensors",
    "add-non-digit": "digitrec add-non-digit runs/robust/numbers.safetensors --out runs/robust/open.safetensors",
    "robustness": "digitrec robustness src/digitrec/assets/default.onnx --limit 2000",
    "predict": "digitrec predict photo.jpg\ndigitrec predict card.png --digits 16 --checksum luhn --json",
    "export": "digitrec export runs/default/model.safetensors --int8",
    "serve": "digitrec serve --workers 2 --lexicon postcodes=codes.txt",
    "explain": "digitrec explain digit.png --out why.png\n"
    "digitrec explain number.png --model src/digitrec/assets/default.safetensors --method grad-cam --out why.png",
    "personalize": "digitrec personalize --profile ana samples/\ndigitrec predict --profile ana note.png",
    "profiles": "digitrec profiles list\ndigitrec profiles export ana --out ana.json",
    "corrections": "digitrec corrections export --out runs/corrections\n"
    "digitrec train --extra-data runs/corrections --out runs/with-corrections",
}


def _describe_commands(sub: argparse._SubParsersAction) -> None:
    """Each command's --help: what it does (its one-line help) and an example."""
    for action in sub._choices_actions:
        command = sub.choices[action.dest]
        command.description = action.help
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        if action.dest in EXAMPLES:
            command.epilog = "example:\n" + "\n".join(f"  {line}" for line in EXAMPLES[action.dest].splitlines())


def build_parser(with_models: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitrec", description="Handwritten-digit recognition on MNIST and real images."
    )
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="find, verify (and if missing download) MNIST")
    _add_data_dir(p)
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    _add_json(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a model with a preset")
    models = None
    if with_models:
        try:
            from .nn.models import list_models  # deferred: torch
        except ModuleNotFoundError:  # no train extra: `train` itself says how to install it
            pass
        else:
            models = list_models()
    p.add_argument("--model", choices=models, default=None, help="architecture (default: the preset's)")
    p.add_argument("--preset", choices=list_presets(), default="default", help="training recipe (default: default)")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the preset's (peak) learning rate")
    p.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Nesterov momentum for SGD, or not (default: the preset's)",
    )
    p.add_argument("--weight-decay", type=float, metavar="DECAY", help="override the preset's weight decay")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="override the preset's learning-rate schedule: constant, step (x0.7 each epoch) or onecycle "
        "(warm up, then down to zero)",
    )
    p.add_argument(
        "--label-smoothing", type=float, metavar="SHARE", help="override the preset's label smoothing, in [0, 1)"
    )
    p.add_argument(
        "--augment",
        choices=list(AUGMENTATIONS),
        help="override the preset's augmentation: none, handwriting (small rotations, scalings, shifts and "
        "shears) or degraded (handwriting plus noise, blur, stray strokes: the robust preset's)",
    )
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this decay (0: off); it is what is saved",
    )
    p.add_argument("--seed", type=int, help="random seed (a CPU run with the same seed and threads repeats exactly)")
    p.add_argument("--holdout", type=int, help="hold out this many training images for validation")
    p.add_argument(
        "--pieces",
        type=int,
        metavar="NUMBERS",
        help="also train on the pieces segmentation cuts out of this many rendered numbers, with an "
        "11th class for those that are not one digit (0: none; default: the preset's)",
    )
    p.add_argument(
        "--negatives",
        type=int,
        metavar="N",
        help="also train on the pieces of N negatives (letters, signs, shapes, scribbles), with a 12th class, "
        '"not a digit" (without --pieces, add-not-a-digit fits the 11th afterwards; 0: none; default: the preset\'s)',
    )
    p.add_argument(
        "--teacher",
        nargs="+",
        metavar="CKPT",
        help="distil from these checkpoints (their averaged logits), trained with the same --holdout",
    )
    p.add_argument(
        "--distill",
        type=float,
        metavar="WEIGHT",
        help="the teachers' share of the loss, in [0, 1] (default: the preset's)",
    )
    p.add_argument(
        "--threads",
        type=_in_range(int, 1, MAX_THREADS),
        help="CPU threads for torch (default: torch's choice); a resumed run keeps the count it saved",
    )
    p.add_argument(
        "--extra-data",
        type=Path,
        metavar="DIR",
        help="also train on the IDX pair in this folder (what `digitrec corrections export` writes)",
    )
    p.add_argument("--out", type=Path, help="output folder (default: runs/PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test-set report for a checkpoint or ONNX model, or an ensemble of several")
    p.add_argument(
        "checkpoints",
        nargs="+",
        type=Path,
        metavar="MODEL",
        help="a .safetensors checkpoint or an .onnx model (several: an ensemble)",
    )
    p.add_argument("--out", type=Path, help="report folder (default: beside the first model)")
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over nine views of each digit (small shifts, rotations, scalings)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test digits, for a quick look")
    _add_idx_pair(p)
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "calibrate", help="fit the temperature that makes a checkpoint's confidences honest (train does it when done)"
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "add-not-a-digit",
        help='give a checkpoint the class "not one digit" (two touching digits, '
        "a fragment), which reading whole numbers needs",
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    p.add_argument("--out", type=Path, help="write the new checkpoint here (default: replace CHECKPOINT)")
    p.add_argument(
        "--numbers", type=int, default=HEAD_NUMBERS, help="numbers rendered and cut into pieces (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=HEAD_SEED, help="picks and renders the numbers (default: %(default)s)")
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_add_not_a_digit)

    p = sub.add_parser(
        "add-non-digit",
        help='give a checkpoint the class "not a digit" (letters, signs, shapes, scribbles), which refusing '
        'what is not a digit needs; the checkpoint needs "not one digit" first (add-not-a-digit)',
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    p.add_argument("--out", type=Path, help="write the new checkpoint here (default: replace CHECKPOINT)")
    p.add_argument(
        "--negatives",
        type=int,
        default=NONDIGIT_NEGATIVES,
        help="negatives drawn from the fit sources of digitrec.data.negatives (default: %(default)s)",
    )
    p.add_argument(
        "--numbers",
        type=int,
        default=NONDIGIT_NUMBERS,
        help="numbers of training digits cut into pieces, fitted as what they are (default: %(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=NONDIGIT_EPOCHS,
        help="then fine-tune the whole network this many epochs, the old model as its teacher (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=NONDIGIT_SEED, help="picks and renders the negatives (default: %(default)s)"
    )
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_add_non_digit)

    p = sub.add_parser("robustness", help="accuracy on the 15 MNIST-C corruptions of the test set")
    p.add_argument(
        "checkpoints",
        nargs="+",
        type=Path,
        metavar="CHECKPOINT",
        help="a .safetensors checkpoint or an .onnx model (several: an ensemble)",
    )
    p.add_argument(
        "--corruptions",
        nargs="+",
        metavar="NAME",
        help="only these corruptions (default: all 15; a wrong name lists them)",
    )
    p.add_argument(
        "--severity",
        type=int,
        metavar="N",
        help="level 1-5 for every corruption (default: the level MNIST-C used for each)",
    )
    p.add_argument("--seed", type=int, default=CORRUPTION_SEED, help="seed of the corrupted sets (default %(default)s)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test digits, for a quick look")
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where generated sets are kept (default: $DIGITREC_CACHE/corrupted, else ~/.cache/digitrec/corrupted)",
    )
    p.add_argument("--out", type=Path, help="report folder (default: robustness/ beside the first checkpoint)")
    _add_idx_pair(p)
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("predict", help="read the digits in images: photos, scans, canvas drawings, whole numbers")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders of images, or - for stdin")
    p.add_argument("--model", type=Path, help="a .onnx model or .safetensors checkpoint (default: the shipped model)")
    p.add_argument(
        "--digits",
        type=_in_range(int, 1, MAX_EXPECTED_DIGITS),
        help=f"how many digits to expect (1-{MAX_EXPECTED_DIGITS})",
    )
    p.add_argument(
        "--pattern",
        metavar="REGEX",
        help=r"a regular expression the digits must match in full, e.g. '\d{6}' or '(19|20)\d{2}(0[1-9]|1[0-2])'",
    )
    p.add_argument(
        "--checksum",
        metavar="NAME",
        help=f"the check digit the number must satisfy, its last digit: {', '.join(CHECKSUMS)}",
    )
    p.add_argument("--lexicon", type=Path, metavar="FILE", help="a file of valid values, one per line")
    p.add_argument(
        "--alternatives",
        type=_in_range(int, 0, MAX_ALTERNATIVES),
        default=DEFAULT_ALTERNATIVES,
        metavar="N",
        help="with --pattern, --checksum or --lexicon: list up to N more valid readings (default %(default)s)",
    )
    p.add_argument(
        "--reject-below",
        type=_in_range(float, 0.0, 1.0),
        default=DEFAULT_REJECT_BELOW,
        help="flag digits less confident than this; an image whose digits are all flagged is rejected "
        "(default %(default)s)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="reject an image holding any ink read as no digit (a letter, a sign); without it such a "
        "piece reads as ? in the number",
    )
    p.add_argument(
        "--not-digit-threshold",
        type=_in_range(float, 0.0, 1.0),
        default=NOT_DIGIT_THRESHOLD,
        help="an image read as one piece at least this likely to be no digit is rejected as not a digit "
        "(models with that output; default %(default)s)",
    )
    p.add_argument(
        "--piece-not-digit-threshold",
        type=_in_range(float, 0.0, 1.0),
        default=PIECE_NOT_DIGIT_THRESHOLD,
        help="a piece of a number at least this likely to be no digit reads as ? (default %(default)s)",
    )
    p.add_argument(
        "--top-k",
        type=_in_range(int, 1, NUM_CLASSES),
        default=DEFAULT_TOPK,
        help="alternatives listed per digit in --json (default %(default)s)",
    )
    p.add_argument("--debug-dir", type=Path, help="write a PNG of every preprocessing stage of every input here")
    p.add_argument("--profile", metavar="NAME", help="read with this person's profile (made by `digitrec personalize`)")
    _add_store(p)
    p.add_argument("--json", action="store_true", help="print JSON Lines: one JSON object per input, one per line")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "explain", help="show what the network sees: its input, feature maps and the pixels behind each digit"
    )
    p.add_argument("image", metavar="IMAGE", help="an image file (- for stdin): one digit or a number")
    p.add_argument(
        "--model", type=Path, help="an .onnx model or a .safetensors checkpoint (default: the shipped ONNX model)"
    )
    p.add_argument(
        "--method",
        choices=("auto", INTEGRATED_GRADIENTS, GRAD_CAM, OCCLUSION),
        default="auto",
        help="the attribution: gradient methods need a checkpoint and torch; occlusion runs on any model "
        "(default: integrated-gradients on a checkpoint, occlusion on ONNX)",
    )
    p.add_argument("--digits", type=_in_range(int, 1, MAX_EXPECTED_DIGITS), help="how many digits the image holds")
    p.add_argument("--out", type=Path, metavar="FILE.png", help="write the picture here")
    p.add_argument("--json", action="store_true", help="print the arrays as JSON (input, attribution, feature maps)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("personalize", help="teach a profile one person's hand from labelled images of their digits")
    p.add_argument("--profile", required=True, metavar="NAME", help="the profile to add to (made if missing)")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="images named DIGIT_anything (7_003.png), folders of them, or CSV files of `file,label` rows",
    )
    p.add_argument("--model", type=Path, help="the model the profile is checked with (default: the shipped model)")
    _add_store(p)
    _add_json(p)
    p.set_defaults(func=cmd_personalize)

    p = sub.add_parser("profiles", help="list, show, delete, export or import personal profiles")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="every profile, with its samples per digit")
    _add_store(q)
    _add_json(q)
    q = actions.add_parser("show", help="one profile: its samples per digit, when it was made and changed")
    q.add_argument("name", metavar="NAME")
    _add_store(q)
    _add_json(q)
    q = actions.add_parser("delete", help="delete a profile and all its samples")
    q.add_argument("name", metavar="NAME")
    _add_store(q)
    q = actions.add_parser("export", help="write a profile's samples to a file that `profiles import` reads")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--out", type=Path, required=True, metavar="FILE", help="the file to write (JSON)")
    _add_store(q)
    q = actions.add_parser("import", help="add the samples of an exported profile file to a profile")
    q.add_argument("file", type=Path, metavar="FILE")
    q.add_argument("--name", metavar="NAME", help="the profile to add them to (default: the name in the file)")
    _add_store(q)
    _add_json(q)
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("corrections", help="export the collected samples as training data")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("export", help="write every sample (or one profile's) as an IDX pair in a folder")
    q.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder for the IDX pair")
    q.add_argument("--profile", metavar="NAME", help="only this profile's samples")
    _add_store(q)
    p.set_defaults(func=cmd_corrections)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (float32, optionally int8), checked against torch")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    p.add_argument("--int8", action="store_true", help="also write a statically quantised int8 model beside it")
    p.add_argument(
        "--out",
        type=Path,
        help="the float32 .onnx file (default: the checkpoint's name, .onnx); "
        "the int8 model goes beside it as NAME.int8.onnx",
    )
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="serve the HTTP API and the drawing page")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=_in_range(int, *PORTS), default=DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument(
        "--model", type=Path, help="an .onnx model or a .safetensors checkpoint (default: the shipped model)"
    )
    p.add_argument(
        "--workers",
        type=_in_range(int, 1, MAX_WORKERS),
        default=DEFAULT_WORKERS,
        help="recognition processes, each with its own model, fed from one queue "
        "(default %(default)s; with 1, recognitions run in threads of the server process)",
    )
    p.add_argument(
        "--max-bytes",
        type=_in_range(int, 1, MAX_UPLOAD_BYTES),
        default=MAX_UPLOAD_BYTES,
        help="the largest image upload, in bytes (default and most: %(default)s)",
    )
    p.add_argument(
        "--max-pixels",
        type=_in_range(int, 1, MAX_PIXELS),
        default=MAX_UPLOAD_PIXELS,
        help=f"the most pixels an uploaded image may have (default %(default)s; at most {MAX_PIXELS}, "
        "the decoder's cap: each such image costs memory while it is read)",
    )
    p.add_argument(
        "--large-at-once",
        type=_in_range(int, 1, MAX_WORKERS),
        default=LARGE_AT_ONCE,
        help=f"images over {LARGE_IMAGE_PIXELS} pixels read at the same time (default %(default)s)",
    )
    p.add_argument(
        "--queue-budget",
        type=_in_range(float, 0.001, MAX_QUEUE_BUDGET_S),
        default=QUEUE_BUDGET_S,
        metavar="SECONDS",
        help="how long such an image may wait for its turn before a 503 (default %(default)s)",
    )
    p.add_argument(
        "--max-batch-files",
        type=_in_range(int, 1, MAX_BATCH_FILES),
        default=MAX_BATCH_FILES,
        help="images per batch request (default and most: %(default)s)",
    )
    p.add_argument(
        "--max-batch-bytes",
        type=_in_range(int, 1, MAX_BATCH_BYTES),
        default=MAX_BATCH_BYTES,
        help="the largest batch request, in bytes (default and most: %(default)s)",
    )
    p.add_argument(
        "--lexicon",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a lexicon of valid values (one per line) that requests name with lexicon=NAME; repeatable",
    )
    _add_store(p)
    p.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help=f"the token that lists and deletes all profiles (Authorization: Bearer TOKEN); better given as "
        f"${ADMIN_TOKEN_ENV}, which other users of the machine cannot read from the process list",
    )
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(func=cmd_serve)
    _describe_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(with_models=command in TORCH_COMMANDS).parse_args(argv)
    try:
        return args.func(args)
    except DigitrecError as e:
        print(f"digitrec: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name not in TRAIN_EXTRA:
            raise
        print(f"digitrec: error: {args.command} needs {e.name}: pip install 'digitrec[train]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `digitrec predict ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
