"""One training loop for every model: presets, schedules, progress, checkpoints and resume.

Try: `digitrec train --preset default` (or `--preset seed`, `--preset reference`).

`fit()` knows nothing about any particular model: it takes an nn.Module, uint8 images held in
memory and a `TrainConfig`. `train()` wires it to the data set, the output folder and the
checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .constants import NOT_A_DIGIT
from .errors import DigitrecError
from .presets import TrainConfig
from .evaluation import EVAL_BATCH_SIZE, accuracy, predict_logits, prepare_batch

STATE_FORMAT = "digitrec-train-state"
CHECKPOINT_NAME = "model.safetensors"
STATE_NAME = "train_state.safetensors"
LOG_NAME = "log.jsonl"
CURVES_NAME = "curves.png"
WARMUP_START = 0.04  # one-cycle warm-up starts at this fraction of the peak learning rate
HOLDOUT_SEED = 12345  # the held-out split is the same whatever the training seed


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimizer step `step` (0-based) of the whole run."""
    if config.schedule == "step":
        return config.lr * config.step_gamma ** (step // steps_per_epoch)
    if config.schedule == "onecycle":
        total = config.epochs * steps_per_epoch
        warm = max(1, int(config.warmup * total))
        if step < warm:
            return config.lr * (WARMUP_START + (1 - WARMUP_START) * step / warm)
        return config.lr * max(0.0, (total - step) / max(1, total - warm))
    return config.lr


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _epoch_seed(seed: int, epoch: int) -> int:
    # Every epoch's shuffling and dropout come from (seed, epoch), so a run resumed at an epoch
    # boundary draws exactly what an uninterrupted one would.
    return (seed * 1_000_003 + epoch) % (2**63)


@dataclass
class TrainState:
    """Where a run is: enough to continue it as if it had never stopped."""

    config: TrainConfig
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps done in the current (incomplete) epoch
    elapsed: float = 0.0  # training + evaluation seconds so far
    history: list[dict[str, Any]] = field(default_factory=list)
    rng_state: torch.Tensor | None = None  # set only when stopped inside an epoch
    optimizer_state: dict | None = None
    ema_weights: dict[str, torch.Tensor] | None = None
    ema_updates: int = 0


@dataclass
class Data:
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64


class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a request to stop after the current step, so the
    state saved is consistent; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class WeightEMA:
    """An exponential moving average of a model's weights and buffers, kept in a copy of the
    model: it usually generalises better than the last step's weights."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0
        # state_dict() tensors share storage with the live parameters: collect them once.
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._ema_float = [e for e, _ in pairs if e.is_floating_point()]
        self._model_float = [m for e, m in pairs if e.is_floating_point()]
        self._other = [(e, m) for e, m in pairs if not e.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        # Early on, the average would be dominated by the random initial weights: warm the decay up.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._ema_float, self._model_float, 1 - decay)
        for e, m in self._other:
            e.copy_(m)


EpochCallback = Callable[[TrainState, nn.Module, "WeightEMA | None"], None]
StepCallback = Callable[[int, nn.Module], None]  # (optimizer steps done, model to evaluate)


def fit(model: nn.Module, train: Data, config: TrainConfig, *, eval_sets: dict[str, Data] | None = None,
        state: TrainState | None = None, on_epoch_end: EpochCallback | None = None,
        on_step: StepCallback | None = None, should_stop: Callable[[], bool] = lambda: False,
        progress: bool = True, teacher: nn.Module | None = None) -> TrainState:
    """Train `model` for `config.epochs` epochs (continuing `state` if given). Returns the final
    state; `state.epoch < config.epochs` means it stopped early on request. With `config.ema`,
    the moving average is what gets evaluated and handed to the callbacks for saving. With a
    `teacher` (a module returning logits), `config.distill` of the loss is matching its softened
    probabilities on the same augmented batch."""
    from tqdm.auto import tqdm

    from .augment import augment_batch

    device = next(model.parameters()).device
    state = state or TrainState(config)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model.parameters())
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    ema = WeightEMA(model, config.ema) if config.ema else None
    if ema is not None and state.ema_weights is not None:
        ema.model.load_state_dict(state.ema_weights)
        ema.updates = state.ema_updates
    eval_model = ema.model if ema is not None else model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    n = len(train.images)
    steps_per_epoch = math.ceil(n / config.batch_size)
    images, labels = train.images.to(device), train.labels.to(device)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=state.epoch * steps_per_epoch + state.step_in_epoch,
               disable=not progress, unit="step", dynamic_ncols=True, leave=False)

    def snapshot() -> None:
        state.optimizer_state = optimizer.state_dict()
        if ema is not None:
            state.ema_weights, state.ema_updates = ema.model.state_dict(), ema.updates

    try:
        while state.epoch < config.epochs:
            epoch = state.epoch
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(config.seed, epoch)))
            if state.rng_state is not None:  # resuming inside this epoch
                torch.set_rng_state(state.rng_state)
                state.rng_state = None
            else:
                torch.manual_seed(_epoch_seed(config.seed, epoch))
            model.train()
            epoch_start = time.perf_counter()
            seen = correct = 0
            loss_sum = 0.0
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            for step in range(state.step_in_epoch, steps_per_epoch):
                idx = order[step * config.batch_size:(step + 1) * config.batch_size].to(device)
                batch = images[idx]  # (B, 28, 28) uint8
                if config.augment is not None:
                    batch = augment_batch(batch.float() / 255, config.augment)
                x = prepare_batch(batch, channels_last=config.channels_last)
                y = labels[idx]
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, epoch * steps_per_epoch + step, steps_per_epoch)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    logits = model(x).float()
                loss = loss_fn(logits, y)
                if teacher is not None:
                    loss = (1 - config.distill) * loss + config.distill * distillation_loss(logits, teacher, x, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    ema.update()
                seen += len(y)
                correct += (logits.argmax(1) == y).sum().item()
                loss_sum += loss.item() * len(y)
                state.step_in_epoch = step + 1
                bar.update()
                if step % 20 == 0 or step == steps_per_epoch - 1:
                    rate = seen / max(1e-9, time.perf_counter() - epoch_start)
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", img_s=f"{rate:.0f}")
                if on_step is not None:
                    on_step(epoch * steps_per_epoch + step + 1, eval_model)
                    model.train()
                if should_stop() and state.step_in_epoch < steps_per_epoch:
                    state.elapsed += time.perf_counter() - epoch_start
                    state.rng_state = torch.get_rng_state()
                    snapshot()
                    return state
            train_seconds = time.perf_counter() - epoch_start
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                      "train_loss": loss_sum / max(1, seen), "train_accuracy": correct / max(1, seen),
                      "train_seconds": train_seconds, "images_per_second": seen / max(1e-9, train_seconds)}
            for name, data in (eval_sets or {}).items():
                logits = predict_logits(eval_model, data.images, bf16=config.bf16,
                                        channels_last=config.channels_last, batch_size=EVAL_BATCH_SIZE)
                record[f"{name}_accuracy"] = accuracy(logits, data.labels)
                record[f"{name}_loss"] = nn.functional.cross_entropy(logits, data.labels.long()).item()
            state.elapsed += time.perf_counter() - epoch_start
            record["elapsed_seconds"] = state.elapsed
            state.history.append(record)
            state.epoch, state.step_in_epoch = epoch + 1, 0
            snapshot()
            bar.write(format_epoch(record, config.epochs))
            if on_epoch_end is not None:
                on_epoch_end(state, model, ema)
            if should_stop() and state.epoch < config.epochs:
                return state
    finally:
        bar.close()
    return state


class Teachers(nn.Module):
    """Several trained models as one: their logits averaged."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, classes)
        return torch.stack([m(x) for m in self.models]).mean(0)


def load_teachers(config: TrainConfig, device: str) -> Teachers | None:
    """The frozen teachers `config.teachers` names, checked to have held out the run's digits."""
    from .calibration import holdout_of
    from .checkpoint import load_checkpoint

    if not config.teachers:
        return None
    models = []
    for path in config.teachers:
        ckpt = load_checkpoint(path, device)
        holdout = holdout_of(ckpt.metadata)
        if holdout != config.holdout:
            raise DigitrecError(f"{path} held out {holdout} training digits, this run "
                                f"{config.holdout}: a teacher must not have learned the digits validation reads")
        models.append(ckpt.model)
    return Teachers(models).eval().requires_grad_(False)


def distillation_loss(logits: torch.Tensor, teacher: nn.Module, x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """KL divergence from the teacher's probabilities to the model's, both softened by the
    temperature T, times T^2 so its gradients keep their scale whatever T (Hinton et al. 2015)."""
    t = config.distill_temperature
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.bf16):
        target = teacher(x).float()
    return nn.functional.kl_div(nn.functional.log_softmax(logits / t, 1), nn.functional.log_softmax(target / t, 1),
                                reduction="batchmean", log_target=True) * t * t


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    evals = "  ".join(f"{k.removesuffix('_accuracy')} acc {v:.4f}" for k, v in record.items()
                      if k.endswith("_accuracy") and not k.startswith("train"))
    return (f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  train acc "
            f"{record['train_accuracy']:.4f}  {evals}  {record['images_per_second']:.0f} img/s  "
            f"{record['elapsed_seconds']:.1f}s")


# ---- saving and restoring a run -------------------------------------------------------------


def _flatten_optimizer_state(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON for the rest."""
    tensors, scalars = {}, {}
    for param_id, slots in opt_state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{key}"] = value
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for name, value in meta["scalars"].items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(path: Path, state: TrainState, model: nn.Module, data_sha256: str | None) -> None:
    from .checkpoint import save_tensors

    opt_tensors, opt_meta = _flatten_optimizer_state(state.optimizer_state or {"state": {}, "param_groups": []})
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | opt_tensors
    tensors |= {f"ema.{k}": v for k, v in (state.ema_weights or {}).items()}
    if state.rng_state is not None:
        tensors["rng_state"] = state.rng_state
    meta = {"format": STATE_FORMAT, "format_version": 1, "config": dataclasses.asdict(state.config),
            "epoch": state.epoch, "step_in_epoch": state.step_in_epoch, "elapsed": state.elapsed,
            "history": state.history, "optimizer": opt_meta, "ema_updates": state.ema_updates,
            "data_sha256": data_sha256}
    save_tensors(path, tensors, meta)


def load_state(path: Path) -> tuple[TrainState, dict[str, torch.Tensor], str | None]:
    """The saved state, the model's weights, and the checksum of the data it was trained on."""
    from .checkpoint import load_tensors, read_metadata

    meta = read_metadata(path, expected_format=STATE_FORMAT)
    tensors = load_tensors(path)
    config = TrainConfig.from_dict(meta["config"])
    state = TrainState(config, epoch=meta["epoch"], step_in_epoch=meta["step_in_epoch"], elapsed=meta["elapsed"],
                       history=meta["history"], rng_state=tensors.get("rng_state"),
                       optimizer_state=_unflatten_optimizer_state(tensors, meta["optimizer"]),
                       ema_weights={k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")} or None,
                       ema_updates=meta.get("ema_updates", 0))
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    return state, weights, meta.get("data_sha256")


# ---- the whole run: data, model, fit, checkpoint, log, curves ---------------------------------


@dataclass
class TrainResult:
    checkpoint: Path
    state: TrainState
    completed: bool
    metrics: dict[str, Any]
    files: dict[str, str]


def holdout_split(n: int, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): the indices of `n` training images a run with `holdout` > 0 trains on
    and holds out, whatever its seed."""
    order = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    return order[:n - holdout], order[n - holdout:]


def _split_holdout(images: np.ndarray, labels: np.ndarray, holdout: int) -> tuple[Data, Data | None]:
    if holdout <= 0:
        return Data(torch.from_numpy(images), torch.from_numpy(labels).long()), None
    if holdout >= len(images):
        raise DigitrecError(f"--holdout {holdout} leaves no training images (there are {len(images)})")
    keep, held = holdout_split(len(images), holdout)
    return (Data(torch.from_numpy(images[keep]), torch.from_numpy(labels[keep]).long()),
            Data(torch.from_numpy(images[held]), torch.from_numpy(labels[held]).long()))


def model_options(config: TrainConfig) -> dict[str, Any]:
    """The options `config`'s model is built with: the preset's, plus the "not one digit" output
    (constants.NOT_A_DIGIT) when the run trains on segmentation's pieces."""
    return {**config.model_options, "num_classes": NOT_A_DIGIT + 1} if config.pieces else dict(config.model_options)


def with_pieces(data: Data, numbers: int, seed: int, progress: bool = False) -> Data:
    """`data` plus the pieces segmentation cuts out of `numbers` rendered numbers of its digits
    (notdigit.py): whole digits with their labels, the rest labelled "not one digit"."""
    from .notdigit import segment_examples

    images, labels = segment_examples(data.images.numpy(), data.labels.numpy(), numbers, seed=seed, progress=progress)
    return Data(torch.cat([data.images, torch.from_numpy(images)]), torch.cat([data.labels, torch.from_numpy(labels)]))


def train(config: TrainConfig, out_dir: Path, *, data_dir: Path | None = None, resume: bool = False,
          progress: bool = True, device: str | None = None, splits: tuple | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train `config` on MNIST, writing the checkpoint, a JSON Lines log and the training curves
    to `out_dir`. With `resume`, continue the run saved in `out_dir`. `splits` (train, test) with
    `images`, `labels` and `sha256` replaces MNIST (tests use small made-up data)."""
    from .calibration import calibrate_checkpoint, calibration_digits
    from .checkpoint import save_checkpoint
    from .datasets import load_mnist
    from .fileio import atomic_write_text, ensure_dir
    from .models import create_model

    out_dir = ensure_dir(out_dir)
    state_path, ckpt_path = out_dir / STATE_NAME, out_dir / CHECKPOINT_NAME
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    state, weights = None, None
    if resume:
        if not state_path.exists():
            raise DigitrecError(f"nothing to resume in {out_dir}: no {STATE_NAME}; start without --resume")
        state, weights, trained_on = load_state(state_path)
        config = state.config
        if state.epoch >= config.epochs:
            raise DigitrecError(f"the run in {out_dir} already finished {config.epochs} epochs; nothing to resume")
    train_split, test_split = splits or (load_mnist("train", data_dir, progress=progress),
                                         load_mnist("test", data_dir, progress=progress))
    data_sha256 = train_split.sha256
    if resume and trained_on != data_sha256:
        raise DigitrecError(f"the run in {out_dir} was trained on other data (sha256 {trained_on}); "
                            "resume it with the same data set")
    train_data, val_data = _split_holdout(train_split.images, train_split.labels, config.holdout)
    if config.pieces:
        train_data = with_pieces(train_data, config.pieces, config.seed, progress)
    eval_sets = {"test": Data(torch.from_numpy(test_split.images), torch.from_numpy(test_split.labels).long())}
    if val_data is not None:
        eval_sets = {"val": val_data, **eval_sets}

    torch.manual_seed(config.seed)  # weight initialisation
    model = create_model(config.model, **model_options(config))
    if weights is not None:
        model.load_state_dict(weights)
    model.to(device)
    if state is None:
        (out_dir / LOG_NAME).unlink(missing_ok=True)  # a fresh run starts a fresh log

    def on_epoch_end(s: TrainState, m: nn.Module, ema: WeightEMA | None) -> None:
        with (out_dir / LOG_NAME).open("a") as f:
            f.write(json.dumps(s.history[-1]) + "\n")
        training = {"config": dataclasses.asdict(config), "epochs_completed": s.epoch, "seconds": s.elapsed,
                    "device": device, "threads": torch.get_num_threads()}
        best = ema.model if ema is not None else m  # the weights that were evaluated
        save_checkpoint(ckpt_path, best, training=training, metrics=_metrics(s), data_sha256=data_sha256)
        save_state(state_path, s, m, data_sha256)

    stop = StopRequest()
    with stop.installed():
        final = fit(model, train_data, config, eval_sets=eval_sets, state=state, on_epoch_end=on_epoch_end,
                    should_stop=lambda: stop() or (should_stop is not None and should_stop()), progress=progress,
                    teacher=load_teachers(config, device))
    completed = final.epoch >= config.epochs
    if not completed and final.step_in_epoch:  # stopped inside an epoch: keep its exact position
        save_state(state_path, final, model, data_sha256)
    if completed:  # confidences that mean what they say (calibration.py)
        calibrate_checkpoint(ckpt_path, *calibration_digits(train_split.images, train_split.labels, config.holdout))
    files = {"checkpoint": str(ckpt_path), "log": str(out_dir / LOG_NAME), "state": str(state_path)}
    if final.history:
        curves = out_dir / CURVES_NAME
        plot_curves(final.history, curves)
        files["curves"] = str(curves)
    summary = {"config": dataclasses.asdict(config), "completed": completed, **_metrics(final), "files": files}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return TrainResult(ckpt_path, final, completed, _metrics(final), files)


def _metrics(state: TrainState) -> dict[str, Any]:
    if not state.history:
        return {}
    last = state.history[-1]
    return {k: v for k, v in last.items() if k.endswith(("_accuracy", "_loss"))} | {
        "epochs": last["epoch"], "train_seconds": state.elapsed}


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    from .plotting import pyplot, save_fig

    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in [k for k in history[0] if k.endswith("_loss")]:
        ax_loss.plot(epochs, [r[key] for r in history], marker="o", label=key.removesuffix("_loss"))
    errors = {k.removesuffix("_accuracy"): [100 * (1 - r[k]) for r in history] for k in history[0] if k.endswith("_accuracy")}
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
