"""Saving and restoring a run's exact position: weights, optimizer, EMA, RNG, history.

Try: interrupt `digitrec train` with Ctrl-C, then `digitrec train --out DIR --resume`.

A state file is a safetensors file like a checkpoint: tensors plus one JSON document, no pickle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DigitrecError
from ..nn.checkpoint import load_tensors, read_metadata, save_tensors
from .config import TrainConfig

STATE_FORMAT = "digitrec-train-state"


@dataclass
class TrainState:
    """Where a run is: enough to continue it as if it had never stopped."""

    config: TrainConfig
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps done in the current (incomplete) epoch
    elapsed: float = 0.0  # training + evaluation seconds so far
    history: list[dict[str, Any]] = field(default_factory=list)
    rng_state: torch.Tensor | None = None  # set only when stopped inside an epoch
    # Distributed (distributed.py): every rank's generator state, in rank order, when stopped
    # inside an epoch; each rank takes its own back on resume.
    rank_rng_states: list[torch.Tensor] | None = None
    optimizer_state: dict | None = None
    ema_weights: dict[str, torch.Tensor] | None = None
    ema_updates: int = 0
    # torch's CPU threads: another count splits the sums otherwise and gives other weights.
    threads: int | None = None  # None: a state saved before the count was kept
    # Processes training together: another count shards the batches and draws the random numbers
    # otherwise, so a run resumes only at its own.
    world_size: int = 1


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

    opt_tensors, opt_meta = _flatten_optimizer_state(state.optimizer_state or {"state": {}, "param_groups": []})
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | opt_tensors
    tensors |= {f"ema.{k}": v for k, v in (state.ema_weights or {}).items()}
    if state.rank_rng_states is not None:
        tensors |= {f"rng_state.{rank}": t for rank, t in enumerate(state.rank_rng_states)}
    elif state.rng_state is not None:
        tensors["rng_state"] = state.rng_state
    meta = {
        "format": STATE_FORMAT,
        "format_version": 1,
        "config": dataclasses.asdict(state.config),
        "epoch": state.epoch,
        "step_in_epoch": state.step_in_epoch,
        "elapsed": state.elapsed,
        "history": state.history,
        "optimizer": opt_meta,
        "ema_updates": state.ema_updates,
        "data_sha256": data_sha256,
        "threads": state.threads,
        "world_size": state.world_size,
    }
    save_tensors(path, tensors, meta)


def load_state(path: Path) -> tuple[TrainState, dict[str, torch.Tensor], str | None]:
    """The saved state, the model's weights, and the checksum of the data it was trained on."""

    meta = read_metadata(path, expected_format=STATE_FORMAT)
    tensors = load_tensors(path)
    config = TrainConfig.from_dict(meta["config"])
    state = TrainState(
        config,
        epoch=meta["epoch"],
        step_in_epoch=meta["step_in_epoch"],
        elapsed=meta["elapsed"],
        history=meta["history"],
        rng_state=tensors.get("rng_state"),
        optimizer_state=_unflatten_optimizer_state(tensors, meta["optimizer"]),
        ema_weights={k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")} or None,
        ema_updates=meta.get("ema_updates", 0),
        threads=meta.get("threads"),
        world_size=meta.get("world_size", 1),
    )
    ranks = sorted(int(k.removeprefix("rng_state.")) for k in tensors if k.startswith("rng_state."))
    if ranks:
        if ranks != list(range(state.world_size)):
            raise DigitrecError(
                f"{path} is damaged: it holds the generator states of ranks {ranks} of {state.world_size}"
            )
        state.rank_rng_states = [tensors[f"rng_state.{r}"] for r in ranks]
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    return state, weights, meta.get("data_sha256")
