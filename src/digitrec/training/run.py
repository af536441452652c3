"""One training run: MNIST in, checkpoint, log, curves and calibrated temperature out.

Try: `digitrec train --preset default --out runs/default`.

`train()` wires the one loop (`loop.fit`) to the data set, the output folder, the checkpoints
and resume; it knows no particular model either. Launched by torchrun
(`torchrun --nproc_per_node 2 -m digitrec train ...`), it trains on every process, rank 0 alone
holding the output folder (distributed.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..constants import NON_DIGIT, NOT_ONE_DIGIT
from ..data.idxpair import read_idx_folder
from ..data.mnist import combined_sha256, holdout_split, load_mnist
from ..errors import DigitrecError
from ..fileio import FILE_MODE, atomic_write_text, ensure_dir
from ..metadata import holdout_of
from ..nn.checkpoint import load_checkpoint, save_checkpoint
from ..nn.models.registry import create_model
from ..plotting import pyplot, save_fig
from .calibration import calibrate_checkpoint, calibration_digits
from .config import TrainConfig
from .distributed import World, check_batch, from_rank0, launch_from_env, process_group, together
from .loop import Data, StopRequest, Teachers, WeightEMA, fit
from .negative_examples import nondigit_examples
from .notdigit import segment_examples
from .state import TrainState, load_state, save_state

CHECKPOINT_NAME = "model.safetensors"
STATE_NAME = "train_state.safetensors"
LOG_NAME = "log.jsonl"
CURVES_NAME = "curves.png"
# Locked by the training writing to the folder; the OS unlocks it when that process dies.
LOCK_NAME = ".train.lock"

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the file position on
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another; other errors say the folder cannot be locked
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def lock_run_folder(out_dir: Path) -> Iterator[None]:
    """Hold `out_dir`'s lock, so that a second training into it is refused instead of mixing its
    log and checkpoints with this one's. The lock is the OS's (flock), not the file's existence:
    a killed run leaves no stale lock. The file stays, and says who holds it while held."""

    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            locked = _try_lock(fd)
        except OSError as e:
            raise DigitrecError(f"cannot lock {path}: {e.strerror or e}; choose another --out") from None
        if not locked:
            holder = _lock_holder(path)
            raise DigitrecError(
                f"another training is writing to {out_dir}{f' ({holder})' if holder else ''}; "
                "wait for it to end or choose another --out"
            )
        # Only for the message above: the lock is flock's, so this needs no atomic write.
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {datetime.now().isoformat(timespec='seconds')}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            _unlock(fd)
    finally:
        os.close(fd)


def _lock_holder(path: Path) -> str:
    """Who holds the lock at `path`, as its holder wrote it; empty if it has not yet (or Windows
    keeps the locked byte from being read)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def load_teachers(config: TrainConfig, device: str) -> Teachers | None:
    """The frozen teachers `config.teachers` names, checked to have held out the run's digits."""

    if not config.teachers:
        return None
    models = []
    for path in config.teachers:
        ckpt = load_checkpoint(path, device)
        holdout = holdout_of(ckpt.metadata)
        if holdout != config.holdout:
            raise DigitrecError(
                f"{path} held out {holdout} training digits, this run "
                f"{config.holdout}: a teacher must not have learned the digits validation reads"
            )
        models.append(ckpt.model)
    return Teachers(models).eval().requires_grad_(False)


@dataclass
class TrainResult:
    checkpoint: Path
    state: TrainState
    completed: bool
    metrics: dict[str, Any]
    files: dict[str, str]


def _split_holdout(images: np.ndarray, labels: np.ndarray, holdout: int) -> tuple[Data, Data | None]:
    if holdout <= 0:
        return Data(torch.from_numpy(images), torch.from_numpy(labels).long()), None
    if holdout >= len(images):
        raise DigitrecError(f"--holdout {holdout} leaves no training images (there are {len(images)})")
    keep, held = holdout_split(len(images), holdout)
    return (
        Data(torch.from_numpy(images[keep]), torch.from_numpy(labels[keep]).long()),
        Data(torch.from_numpy(images[held]), torch.from_numpy(labels[held]).long()),
    )


def model_options(config: TrainConfig) -> dict[str, Any]:
    """The options `config`'s model is built with: the preset's, plus the "not one digit" output
    (constants.NOT_ONE_DIGIT) when the run trains on segmentation's pieces, and both it and the
    "not a digit" output (constants.NON_DIGIT) when it trains on negatives."""
    if config.negatives:
        return {**config.model_options, "num_classes": NON_DIGIT + 1}
    return {**config.model_options, "num_classes": NOT_ONE_DIGIT + 1} if config.pieces else dict(config.model_options)


def with_pieces(data: Data, numbers: int, seed: int, progress: bool = False) -> Data:
    """`data` plus the pieces segmentation cuts out of `numbers` rendered numbers of its digits
    (notdigit.py): whole digits with their labels, the rest labelled "not one digit"."""

    images, labels = segment_examples(data.images.numpy(), data.labels.numpy(), numbers, seed=seed, progress=progress)
    return Data(torch.cat([data.images, torch.from_numpy(images)]), torch.cat([data.labels, torch.from_numpy(labels)]))


def with_negatives(data: Data, drawn: int, seed: int, progress: bool = False) -> Data:
    """`data` plus the pieces of `drawn` negatives of the fit sources (nondigit.py), labelled
    "not a digit"."""
    images = nondigit_examples(drawn, seed=seed, digits=data.images.numpy(), progress=progress)
    labels = torch.full((len(images),), NON_DIGIT, dtype=data.labels.dtype)
    return Data(torch.cat([data.images, torch.from_numpy(images)]), torch.cat([data.labels, labels]))


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    device: str | None = None,
    splits: tuple | None = None,
    should_stop: Callable[[], bool] | None = None,
    threads: int | None = None,
    extra_data: Path | None = None,
) -> TrainResult:
    """Train `config` on MNIST, writing the checkpoint, a JSON Lines log and the training curves
    to `out_dir`. With `resume`, continue the run saved in `out_dir`. `splits` (train, test) with
    `images`, `labels` and `sha256` replaces MNIST (tests use small made-up data).

    `threads` is torch's CPU thread count for the run (None: as torch is set). It is saved, since
    another count gives other weights: a resumed run trains with the saved count, and refuses
    another one. torch's own setting is given back at the end. While the run lasts it holds
    `out_dir`'s lock (`lock_run_folder`): a second training into the folder is refused.

    `extra_data`: a folder with an IDX pair of more training digits (`digitrec corrections
    export` writes one), added after the holdout is taken, so validation stays MNIST's. The
    data checksum covers them: a run resumes only with the same extra digits.

    Launched by torchrun (its RANK, WORLD_SIZE, ... in the environment) with more than one
    process, every process calls `train` alike: they join the process group (gloo on the CPU,
    NCCL on GPUs, one per process) and train together (distributed.py), `config.batch_size`
    being the global batch; rank 0 alone locks and writes `out_dir`. The world size is saved: a
    run resumes only at its own. Every rank returns the run's result; only rank 0 wrote files."""

    if threads is not None and threads < 1:
        raise DigitrecError(f"--threads must be at least 1; got {threads}")
    launch = launch_from_env()
    if launch is not None and launch.world_size > 1 and not resume:  # refused before joining the others
        check_batch(config.batch_size, launch.world_size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads_before = torch.get_num_threads()
    try:
        with process_group(device) as world, contextlib.ExitStack() as stack:
            with together(world):
                if world is None or world.is_main:
                    out_dir = ensure_dir(out_dir)
                    stack.enter_context(lock_run_folder(out_dir))
            return _train(
                config, out_dir, data_dir, resume, progress, device, splits, should_stop, threads, extra_data, world
            )
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


def _resume_state(
    out_dir: Path, threads: int | None, world_size: int
) -> tuple[TrainState, dict[str, torch.Tensor], str | None]:
    """The state saved in `out_dir`, checked to continue here: unfinished, same threads, same world size."""
    state_path = out_dir / STATE_NAME
    if not state_path.exists():
        raise DigitrecError(f"nothing to resume in {out_dir}: no {STATE_NAME}; start without --resume")
    state, weights, trained_on = load_state(state_path)
    config = state.config
    if state.epoch >= config.epochs:
        raise DigitrecError(f"the run in {out_dir} already finished {config.epochs} epochs; nothing to resume")
    if state.threads is not None:  # None: saved before the count was kept; it may differ
        if threads not in (None, state.threads):
            raise DigitrecError(
                f"the run in {out_dir} trained with {state.threads} threads and other counts give other "
                f"weights; resume it with --threads {state.threads} or without --threads"
            )
    if state.world_size != world_size:
        how = (
            "without torchrun (or with one process)"
            if state.world_size == 1
            else f"with torchrun on {state.world_size} processes in all (--nnodes x --nproc_per_node)"
        )
        raise DigitrecError(
            f"the run in {out_dir} trained on {_processes(state.world_size)} and another count shards the "
            f"batches and draws the random numbers otherwise; resume it {how}, not on {_processes(world_size)}"
        )
    return state, weights, trained_on


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def _train(
    config: TrainConfig,
    out_dir: Path,
    data_dir: Path | None,
    resume: bool,
    progress: bool,
    device: str | None,
    splits: tuple | None,
    should_stop: Callable[[], bool] | None,
    threads: int | None,
    extra_data: Path | None,
    world: World | None = None,
) -> TrainResult:
    state_path, ckpt_path = out_dir / STATE_NAME, out_dir / CHECKPOINT_NAME
    if world is not None:
        device = str(world.device)  # this rank's GPU
        progress = progress and world.is_main
    assert device is not None
    world_size = 1 if world is None else world.size
    state: TrainState | None = None
    weights: dict[str, torch.Tensor] | None = None
    trained_on: str | None = None
    if resume:  # rank 0 reads the state and hands it to the others: only it needs the folder
        state, weights, trained_on = from_rank0(world, lambda: _resume_state(out_dir, threads, world_size))
        config = state.config
        if state.threads is not None:
            threads = state.threads
        if state.rank_rng_states is not None:  # stopped inside an epoch: each rank takes its own generator back
            state.rng_state = state.rank_rng_states[0 if world is None else world.rank]
    if threads is not None:
        torch.set_num_threads(threads)
    # Distributed, a rank that cannot read the data stops them all, naming itself; and the first
    # process on each machine reads (if need be downloads) MNIST before the others: one download.
    loaded = splits
    with together(world):
        extra = read_idx_folder(extra_data) if extra_data is not None else None  # a wrong folder fails first
        if loaded is None and (world is None or world.local_rank == 0):
            loaded = _load_mnist_splits(data_dir, progress)
    with together(world):
        train_split, test_split = loaded or _load_mnist_splits(data_dir, progress)
        data_sha256 = train_split.sha256
        if extra is not None:
            extra_sha256 = combined_sha256(*(hashlib.sha256(a.tobytes()).hexdigest() for a in extra))
            data_sha256 = combined_sha256(data_sha256, extra_sha256)
        if resume and trained_on != data_sha256:
            raise DigitrecError(
                f"the run in {out_dir} was trained on other data (sha256 {trained_on}); resume it with the same "
                "data set and the same --extra-data"
            )
        teacher = load_teachers(config, device)
    train_data, val_data = _split_holdout(train_split.images, train_split.labels, config.holdout)
    if extra is not None:
        train_data = Data(
            torch.cat([train_data.images, torch.from_numpy(extra[0])]),
            torch.cat([train_data.labels, torch.from_numpy(extra[1]).long()]),
        )
    if config.pieces:
        train_data = with_pieces(train_data, config.pieces, config.seed, progress)
    if config.negatives:
        train_data = with_negatives(train_data, config.negatives, config.seed, progress)
    eval_sets = {"test": Data(torch.from_numpy(test_split.images), torch.from_numpy(test_split.labels).long())}
    if val_data is not None:
        eval_sets = {"val": val_data, **eval_sets}

    torch.manual_seed(config.seed)  # weight initialisation
    model = create_model(config.model, **model_options(config))
    if weights is not None:
        model.load_state_dict(weights)
    model.to(device)
    if state is None:
        if world is None or world.is_main:
            (out_dir / LOG_NAME).unlink(missing_ok=True)  # a fresh run starts a fresh log
        state = TrainState(config)
    state.threads = torch.get_num_threads()
    state.world_size = world_size

    def on_epoch_end(s: TrainState, m: nn.Module, ema: WeightEMA | None) -> None:
        with (out_dir / LOG_NAME).open("a") as f:
            f.write(json.dumps(s.history[-1]) + "\n")
        training = {
            "config": dataclasses.asdict(config),
            "epochs_completed": s.epoch,
            "seconds": s.elapsed,
            "device": device,
            "threads": s.threads,
            "world_size": s.world_size,
            "extra_digits": 0 if extra is None else len(extra[1]),
        }
        best = ema.model if ema is not None else m  # the weights that were evaluated
        save_checkpoint(ckpt_path, best, training=training, metrics=_metrics(s), data_sha256=data_sha256)
        save_state(state_path, s, m, data_sha256)

    stop = StopRequest()
    with stop.installed():
        final = fit(
            model,
            train_data,
            config,
            eval_sets=eval_sets,
            state=state,
            on_epoch_end=on_epoch_end,
            should_stop=lambda: stop() or (should_stop is not None and should_stop()),
            progress=progress,
            teacher=teacher,
            world=world,
        )
    completed = final.epoch >= config.epochs
    if world is not None and not world.is_main:  # rank 0 writes what remains
        return TrainResult(ckpt_path, final, completed, _metrics(final), {})
    if not completed and final.step_in_epoch:  # stopped inside an epoch: keep its exact position
        save_state(state_path, final, model, data_sha256)
    if completed:  # confidences that mean what they say (calibration.py)
        calibrate_checkpoint(ckpt_path, *calibration_digits(train_split.images, train_split.labels, config.holdout))
    if final.history:
        plot_curves(final.history, out_dir / CURVES_NAME)
    paths = {"checkpoint": ckpt_path, "log": out_dir / LOG_NAME, "state": state_path, "curves": out_dir / CURVES_NAME}
    # Before its first epoch ends a run has written no checkpoint, log or curves: any there are an older run's.
    names = list(paths) if final.history else ["state"]
    files = {name: str(paths[name]) for name in names if paths[name].exists()}
    summary = {"config": dataclasses.asdict(config), "completed": completed, **_metrics(final), "files": files}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return TrainResult(ckpt_path, final, completed, _metrics(final), files)


def _load_mnist_splits(data_dir: Path | None, progress: bool) -> tuple[Any, Any]:
    return load_mnist("train", data_dir, progress=progress), load_mnist("test", data_dir, progress=progress)


def _metrics(state: TrainState) -> dict[str, Any]:
    if not state.history:
        return {}
    last = state.history[-1]
    return {k: v for k, v in last.items() if k.endswith(("_accuracy", "_loss"))} | {
        "epochs": last["epoch"],
        "train_seconds": state.elapsed,
    }


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:

    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in [k for k in history[0] if k.endswith("_loss")]:
        ax_loss.plot(epochs, [r[key] for r in history], marker="o", label=key.removesuffix("_loss"))
    errors = {
        k.removesuffix("_accuracy"): [100 * (1 - r[k]) for r in history] for k in history[0] if k.endswith("_accuracy")
    }
    for name, values in errors.items():
        ax_acc.plot(epochs, values, marker="o", label=name)
    # A log scale shows 1% -> 0.5% as clearly as 10% -> 5%; it cannot show an error of zero.
    log = all(v > 0 for values in errors.values() for v in values)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="error %", yscale="log" if log else "linear", title="error rate")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_fig(fig, path)
