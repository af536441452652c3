"""One training loop for every model: schedules, EMA, distillation, progress, stop and resume.

Try: `digitrec train --preset default` (or `--preset seed`, `--preset reference`).

`fit()` knows nothing about any particular model: it takes an nn.Module, uint8 images held in
memory and a `TrainConfig`. `training.run.train()` wires it to the data set, the output folder
and the checkpoints. Given a `World` (several processes launched by torchrun), it trains the model
wrapped in DistributedDataParallel, each rank on its shard of every global batch (distributed.py).
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import DigitrecError
from ..nn.augment import augment_batch
from ..nn.predict import EVAL_BATCH_SIZE, accuracy, predict_logits, prepare_batch
from .config import TrainConfig
from .distributed import World, check_batch, rank_seed, shard
from .state import TrainState

WARMUP_START = 0.04  # one-cycle warm-up starts at this fraction of the peak learning rate


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


def make_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _epoch_seed(seed: int, epoch: int) -> int:
    # Every epoch's shuffling and dropout come from (seed, epoch), so a run resumed at an epoch
    # boundary draws exactly what an uninterrupted one would.
    return (seed * 1_000_003 + epoch) % (2**63)


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
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: object) -> None:
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


def fit(
    model: nn.Module,
    train: Data,
    config: TrainConfig,
    *,
    eval_sets: dict[str, Data] | None = None,
    state: TrainState | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = True,
    teacher: nn.Module | None = None,
    world: World | None = None,
) -> TrainState:
    """Train `model` for `config.epochs` epochs (continuing `state` if given). Returns the final
    state; `state.epoch < config.epochs` means it stopped early on request. With `config.ema`,
    the moving average is what gets evaluated and handed to the callbacks for saving. With a
    `teacher` (a module returning logits), `config.distill` of the loss is matching its softened
    probabilities on the same augmented batch.

    With a `world` (distributed.py) every rank calls `fit` with the same data, config and state;
    `config.batch_size` is the global batch. Rank 0 alone evaluates, shows progress and runs the
    callbacks, the others waiting for it; `should_stop` is agreed on after every step (any rank's
    request stops all after the same step), and every rank returns the same history."""
    device = next(model.parameters()).device
    state = state or TrainState(config)
    is_main = world is None or world.is_main
    if world is not None:
        check_batch(config.batch_size, world.size)
    world_size = 1 if world is None else world.size
    if state.world_size != world_size and (state.epoch or state.step_in_epoch):
        raise DigitrecError(
            f"this run trained on {state.world_size} processes and continues only on {state.world_size}, not {world_size}"
        )
    state.world_size = world_size
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit it
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = make_optimizer(config, model.parameters())
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    # The EMA only serves evaluation and saving: rank 0's.
    ema = WeightEMA(model, config.ema) if config.ema and is_main else None
    if ema is not None and state.ema_weights is not None:
        ema.model.load_state_dict(state.ema_weights)
        ema.updates = state.ema_updates
    eval_model = ema.model if ema is not None else model
    net: nn.Module = model
    if world is not None:  # made after channels_last, so that its gradient buckets match the weights
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    n = len(train.images)
    steps_per_epoch = math.ceil(n / config.batch_size)
    images, labels = train.images.to(device), train.labels.to(device)
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=state.epoch * steps_per_epoch + state.step_in_epoch,
        disable=not progress or not is_main,
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )

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
                state.rng_state = state.rank_rng_states = None
            elif world is not None:
                torch.manual_seed(rank_seed(config.seed, epoch, world.rank))
            else:
                torch.manual_seed(_epoch_seed(config.seed, epoch))
            net.train()
            epoch_start = time.perf_counter()
            seen = correct = 0
            loss_sum = 0.0
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            for step in range(state.step_in_epoch, steps_per_epoch):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                batch_share = 1.0
                if world is not None:
                    global_size = len(idx)
                    idx = shard(idx, world.rank, world.size)
                    # DDP averages the ranks' gradients: a shard of another size than its equal share
                    # weighs in by its size, so that the step follows the global batch's mean loss.
                    batch_share = len(idx) * world.size / global_size
                idx = idx.to(device)
                batch = images[idx]  # (B, 28, 28) uint8
                if config.augment is not None:
                    batch = augment_batch(batch.float() / 255, config.augment)
                x = prepare_batch(batch, channels_last=config.channels_last)
                y = labels[idx]
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, epoch * steps_per_epoch + step, steps_per_epoch)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    logits = net(x).float()
                if len(y):
                    loss = loss_fn(logits, y)
                    if teacher is not None:
                        distilled = distillation_loss(logits, teacher, x, config)
                        loss = (1 - config.distill) * loss + config.distill * distilled
                else:  # a short last batch left this rank nothing: it still takes part in the step
                    loss = logits.sum()
                optimizer.zero_grad(set_to_none=True)
                (loss * batch_share if batch_share != 1.0 else loss).backward()
                optimizer.step()
                if ema is not None:
                    ema.update()
                seen += len(y)
                correct += (logits.argmax(1) == y).sum().item()
                loss_sum += loss.item() * len(y)
                state.step_in_epoch = step + 1
                bar.update()
                if step % 20 == 0 or step == steps_per_epoch - 1:
                    rate = seen / max(1e-9, time.perf_counter() - epoch_start) * (1 if world is None else world.size)
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", img_s=f"{rate:.0f}")
                if on_step is not None and is_main:
                    on_step(epoch * steps_per_epoch + step + 1, eval_model)
                    net.train()
                stop = should_stop()
                if world is not None:
                    stop = world.any(stop)
                if stop and state.step_in_epoch < steps_per_epoch:
                    state.elapsed += time.perf_counter() - epoch_start
                    state.rng_state = torch.get_rng_state()
                    if world is not None:
                        state.rank_rng_states = world.gather(state.rng_state)
                        state.elapsed = world.broadcast(state.elapsed)
                    snapshot()
                    return state
            train_seconds = time.perf_counter() - epoch_start
            if world is not None:  # the whole global batches' figures
                seen_f, correct_f, loss_sum = world.sum([seen, correct, loss_sum])
                seen, correct = round(seen_f), round(correct_f)
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / max(1, seen),
                "train_accuracy": correct / max(1, seen),
                "train_seconds": train_seconds,
                "images_per_second": seen / max(1e-9, train_seconds),
            }
            for name, data in ((eval_sets or {}) if is_main else {}).items():
                logits = predict_logits(
                    eval_model,
                    data.images,
                    bf16=config.bf16,
                    channels_last=config.channels_last,
                    batch_size=EVAL_BATCH_SIZE,
                )
                record[f"{name}_accuracy"] = accuracy(logits, data.labels)
                record[f"{name}_loss"] = nn.functional.cross_entropy(logits, data.labels.long()).item()
            state.elapsed += time.perf_counter() - epoch_start
            record["elapsed_seconds"] = state.elapsed
            state.history.append(record)
            state.epoch, state.step_in_epoch = epoch + 1, 0
            snapshot()
            if is_main:
                if progress:  # without it (`train --json`) stdout holds the JSON alone
                    bar.write(format_epoch(record, config.epochs))
                if on_epoch_end is not None:
                    on_epoch_end(state, model, ema)
            stop = should_stop()
            if world is not None:  # rank 0's record (its evaluation, its clock) is the run's; the others wait for it
                state.history[-1] = world.broadcast(record)
                state.elapsed = state.history[-1]["elapsed_seconds"]
                stop = world.any(stop)
            if stop and state.epoch < config.epochs:
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


def distillation_loss(logits: torch.Tensor, teacher: nn.Module, x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """KL divergence from the teacher's probabilities to the model's, both softened by the
    temperature T, times T^2 so its gradients keep their scale whatever T (Hinton et al. 2015)."""
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.bf16):
        target = teacher(x).float()
    return softened_kl(logits, target, config.distill_temperature)


def softened_kl(logits: torch.Tensor, target: torch.Tensor, t: float) -> torch.Tensor:
    """KL divergence from softmax(target / t) to softmax(logits / t), both (B, classes), times
    t^2: the distillation loss (Hinton et al. 2015)."""
    return (
        nn.functional.kl_div(
            nn.functional.log_softmax(logits / t, 1),
            nn.functional.log_softmax(target / t, 1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    evals = "  ".join(
        f"{k.removesuffix('_accuracy')} acc {v:.4f}"
        for k, v in record.items()
        if k.endswith("_accuracy") and not k.startswith("train")
    )
    return (
        f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  train acc "
        f"{record['train_accuracy']:.4f}  {evals}  {record['images_per_second']:.0f} img/s  "
        f"{record['elapsed_seconds']:.1f}s"
    )
