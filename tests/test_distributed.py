"""Data-parallel training (training/distributed.py): the sharding and the checks here; two CPU
processes with one thread each on loopback, through the library (torch.multiprocessing) and
through torchrun and the `digitrec train` command (slow: each launch starts three interpreters).

Try: `pytest tests/test_distributed.py -q` (add `-m slow` with DIGITREC_DATA set for the MNIST ones).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from digitrec.errors import DigitrecError
from digitrec.nn.checkpoint import load_checkpoint, load_tensors
from digitrec.training.config import TrainConfig
from digitrec.training.distributed import Launch, check_batch, launch_from_env, rank_seed, shard
from digitrec.training.loop import Data
from digitrec.training.run import STATE_NAME, train
from digitrec.training.state import load_state, save_state
from helpers import bar_digits

TESTS = Path(__file__).resolve().parent
needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")

TINY = TrainConfig(
    model="default",
    model_options={"widths": (8, 16)},
    epochs=2,
    batch_size=64,
    lr=0.05,
    schedule="onecycle",
    nesterov=True,
    bf16=True,
    channels_last=True,
    seed=3,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_tensors(a: Path, b: Path) -> bool:
    ta, tb = load_tensors(a), load_tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# ---- sharding, seeds, checks: no processes ------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("batch", [64, 41, 5, 1])  # 41, 5 and 1: a short last batch
def test_each_rank_takes_a_deterministic_disjoint_share_and_together_they_are_the_global_batch(world_size, batch):
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(7))[:batch]
    shards = [shard(order, r, world_size) for r in range(world_size)]
    assert all(torch.equal(s, shard(order, r, world_size)) for r, s in enumerate(shards))  # deterministic
    together = torch.cat(shards)
    assert len(together) == len(order) and set(together.tolist()) == set(order.tolist())  # disjoint, covering
    sizes = [len(s) for s in shards]
    assert sizes == sorted(sizes, reverse=True) and max(sizes) - min(sizes) <= 1  # even; rank 0 never short
    assert torch.equal(shards[0], order[::world_size])  # positions rank, rank + W, ... of the global batch


def test_every_rank_and_epoch_draws_its_own_random_numbers_the_same_in_every_rerun():
    seeds = {(e, r): rank_seed(0, e, r) for e in range(5) for r in range(8)}
    assert len(set(seeds.values())) == len(seeds)
    assert rank_seed(0, 3, 1) == rank_seed(0, 3, 1) != rank_seed(1, 3, 1)


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused():
    check_batch(128, 2)
    check_batch(128, 1)
    with pytest.raises(DigitrecError, match=r"global batch of 127 \(--batch-size\) does not divide among 2 .*126"):
        check_batch(127, 2)


def test_a_distributed_run_refuses_an_odd_global_batch_before_joining_the_others(tmp_path, monkeypatch):
    # RANK and WORLD_SIZE as torchrun sets them, and no other process: joining would wait for it.
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    start = time.monotonic()
    with pytest.raises(DigitrecError, match="global batch of 63 .* does not divide among 2 processes"):
        train(dataclasses.replace(TINY, batch_size=63), tmp_path, splits=(bar_digits(64), bar_digits(64)))
    assert time.monotonic() - start < 5


def test_torchruns_environment_is_read_and_a_broken_one_is_refused():
    assert launch_from_env({}) is None
    assert launch_from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Launch(1, 4, 1)
    assert str(Launch(1, 4, 1)) == "rank 1 of 4"
    with pytest.raises(DigitrecError, match="must both be set"):
        launch_from_env({"RANK": "0"})
    with pytest.raises(DigitrecError, match="does not fit"):
        launch_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_a_state_keeps_every_ranks_generator_state_and_the_world_size(tmp_path):
    result = train(TINY, tmp_path, splits=(bar_digits(256), bar_digits(64)), progress=False, should_stop=lambda: True)
    state, weights, sha = load_state(tmp_path / STATE_NAME)
    assert state.world_size == 1 and state.rng_state is not None and state.rank_rng_states is None
    state.rank_rng_states = [torch.get_rng_state(), torch.manual_seed(5).get_state()]
    state.world_size = 2
    save_state(tmp_path / "two.safetensors", state, _Weights(weights), sha)
    again, _, _ = load_state(tmp_path / "two.safetensors")
    assert again.world_size == 2 and again.rank_rng_states is not None
    assert [torch.equal(a, b) for a, b in zip(again.rank_rng_states, state.rank_rng_states)] == [True, True]
    assert not result.completed and weights
    state.world_size = 3  # and only two ranks' states
    save_state(tmp_path / "damaged.safetensors", state, _Weights(weights), sha)
    with pytest.raises(DigitrecError, match=r"damaged: it holds the generator states of ranks \[0, 1\] of 3"):
        load_state(tmp_path / "damaged.safetensors")


def test_resuming_a_run_at_another_world_size_is_refused(tmp_path):
    splits = (bar_digits(256), bar_digits(64))
    train(TINY, tmp_path, splits=splits, progress=False, threads=1, should_stop=lambda: True)
    state, weights, sha = load_state(tmp_path / STATE_NAME)
    state.world_size, state.rank_rng_states, state.rng_state = 2, [state.rng_state, state.rng_state.clone()], None
    save_state(tmp_path / STATE_NAME, state, _Weights(weights), sha)
    with pytest.raises(DigitrecError, match="trained on 2 processes .* resume it with torchrun on 2 processes"):
        train(TINY, tmp_path, splits=splits, progress=False, resume=True)


class _Weights(nn.Module):
    """A module whose state_dict is the given weights: to write a state file by hand."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._weights = weights

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return dict(self._weights)


# ---- two processes through the library (torch.multiprocessing, gloo) ---------------------------


LINEAR = TrainConfig(model="default", epochs=2, batch_size=16, lr=0.05, momentum=0.9, seed=1)
N_LINEAR = 69  # 5 batches of 16 and one of 5: the two ranks' shards of the last are 3 and 2


def _linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))  # no batch norm, no dropout


def _library_worker(rank: int, world_size: int, port: int, out: str) -> None:
    from safetensors.torch import save_file

    from digitrec.training.distributed import process_group
    from digitrec.training.loop import fit

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    digits = bar_digits(N_LINEAR, seed=4)
    data = Data(torch.from_numpy(digits.images), torch.from_numpy(digits.labels).long())
    with process_group("cpu") as world:
        assert world is not None and world.size == world_size and world.rank == rank
        model = _linear_model()
        state = fit(model, data, LINEAR, progress=False, world=world)
        if world.is_main:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/weights.safetensors")
            Path(out, "history.json").write_text(json.dumps(state.history))
        # Rank 1 alone asks to stop, after its 3rd step: both stop there.
        calls = iter(range(10**6))
        stopped = fit(
            _linear_model(),
            data,
            LINEAR,
            progress=False,
            world=world,
            should_stop=lambda: rank == 1 and next(calls) >= 2,
        )
        rng = [s.tolist() for s in stopped.rank_rng_states or []]
        Path(out, f"stopped.{rank}.json").write_text(
            json.dumps({"epoch": stopped.epoch, "step": stopped.step_in_epoch, "rng": rng})
        )


@pytest.fixture(scope="module")
def library_run(tmp_path_factory) -> Path:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("library")
    mp.spawn(_library_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return out


def test_two_processes_follow_the_steps_of_one_with_the_same_global_batch(library_run):
    from digitrec.training.loop import fit

    torch.set_num_threads(1)
    digits = bar_digits(N_LINEAR, seed=4)
    model = _linear_model()
    state = fit(
        model, Data(torch.from_numpy(digits.images), torch.from_numpy(digits.labels).long()), LINEAR, progress=False
    )
    two = load_tensors(library_run / "weights.safetensors")
    # Without batch norm or dropout, sharding changes only the order of the sums: the same steps.
    for k, v in model.state_dict().items():
        torch.testing.assert_close(two[k], v, rtol=1e-5, atol=1e-6)
    history = json.loads((library_run / "history.json").read_text())
    assert [r["train_accuracy"] for r in history] == [r["train_accuracy"] for r in state.history]
    assert [r["train_loss"] for r in history] == pytest.approx([r["train_loss"] for r in state.history], rel=1e-5)


def test_a_stop_asked_by_one_rank_stops_every_rank_after_the_same_step(library_run):
    stopped = [json.loads((library_run / f"stopped.{r}.json").read_text()) for r in (0, 1)]
    assert stopped[0]["epoch"] == stopped[1]["epoch"] == 0
    assert stopped[0]["step"] == stopped[1]["step"] == 3
    rng = stopped[0]["rng"]
    assert len(rng) == 2 and rng[0] != rng[1] and rng == stopped[1]["rng"]  # every rank's own, gathered


# ---- two processes through torchrun and `digitrec train` ---------------------------------------

# `digitrec train` on small made-up digits (helpers.bar_digits), for torchrun. FAIL_RANK fails
# that rank while it reads the data (or at step FAIL_AT_STEP); STEP_MARKER: rank 0 writes that
# file at its 5th step, and from then on every step waits 0.2 s, so that a signal sent then
# arrives inside the first epoch. Every rank writes its pid to STEP_MARKER.RANK.
FAKE_TRAIN = r"""
import os, sys, time
sys.path.insert(0, os.environ["DIGITREC_TESTS"])
from helpers import bar_digits
import digitrec.training.loop as loop
import digitrec.training.run as run
from digitrec.errors import DigitrecError

RANK = os.environ["RANK"]
FAIL = os.environ.get("FAIL_RANK") == RANK
FAIL_AT = int(os.environ.get("FAIL_AT_STEP", "0"))
MARKER = os.environ.get("STEP_MARKER")
if MARKER:
    with open(f"{MARKER}.{RANK}", "w") as f:
        f.write(str(os.getpid()))


def fake_mnist(split, data_dir=None, progress=False):
    if FAIL and not FAIL_AT:
        raise DigitrecError("cannot read the training digits here")
    return bar_digits(1001, seed=1) if split == "train" else bar_digits(256, seed=2)


run.load_mnist = fake_mnist
real_lr_at, calls = loop.lr_at, 0


def lr_at(config, step, steps_per_epoch):
    global calls
    calls += 1
    if FAIL and calls == FAIL_AT:
        raise DigitrecError(f"failed at step {calls}")
    if MARKER and calls >= 5:
        if RANK == "0" and calls == 5:
            open(MARKER, "w").close()
        time.sleep(0.2)
    return real_lr_at(config, step, steps_per_epoch)


loop.lr_at = lr_at
from digitrec.cli import main

sys.exit(main(sys.argv[1:]))
"""
# 1001 digits in global batches of 64: 16 steps an epoch, the last of 41 split 21 + 20. The
# default preset augments (random numbers on every rank), smooths labels, and the EMA has a state.
FAKE_ARGS = ["--preset", "default", "--epochs", "2", "--batch-size", "64", "--ema", "0.9", "--threads", "1"]


def torchrun(
    tmp: Path, *args: str, nproc: int = 2, env: dict[str, str] | None = None, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    script = tmp / "fake_train.py"
    if not script.exists():
        script.write_text(FAKE_TRAIN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), "train", *args]
    full_env = {**os.environ, "DIGITREC_TESTS": str(TESTS), **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)


def stop_with_sigterm(tmp: Path, out: Path, to: str) -> str:
    """Start the fake run into `out`, and once it is inside its first epoch send SIGTERM to
    torchrun (which passes it on to every rank) or to rank 1 alone. Returns its stderr."""
    marker = tmp / f"marker-{out.name}"
    run = torchrun(tmp, *FAKE_ARGS, "--out", str(out), env={"STEP_MARKER": str(marker)}, wait=False)
    assert isinstance(run, subprocess.Popen)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), run.communicate()[1]
        os.kill(run.pid if to == "torchrun" else int(Path(f"{marker}.1").read_text()), signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    return err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    done = torchrun(tmp, *FAKE_ARGS, "--out", str(tmp / "run"), "--json")
    assert done.returncode == 0, done.stderr
    return tmp / "run"


@pytest.mark.slow
@pytest.mark.parametrize("to", ["torchrun", "rank 1 alone"])
def test_a_run_stopped_by_sigterm_inside_an_epoch_resumes_to_the_weights_of_an_uninterrupted_one(
    tmp_path, uninterrupted, to
):
    out = tmp_path / "run"
    err = stop_with_sigterm(tmp_path, out, to)
    assert "stopped after 0 epochs and" in err, err
    stopped, _, _ = load_state(out / STATE_NAME)
    assert stopped.epoch == 0 and 0 < stopped.step_in_epoch < 16, err  # inside the first epoch
    assert stopped.world_size == 2 and stopped.rank_rng_states is not None and len(stopped.rank_rng_states) == 2
    assert "terminate called" not in err  # every rank left the group cleanly

    done = torchrun(tmp_path, "--out", str(out), "--resume", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["completed"]
    assert same_tensors(out / "model.safetensors", uninterrupted / "model.safetensors")  # the EMA's weights
    assert same_tensors(out / STATE_NAME, uninterrupted / STATE_NAME)  # weights, optimizer, EMA
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and "test_accuracy" in log[-1]
    assert load_checkpoint(out / "model.safetensors").metadata["training"]["world_size"] == 2


@pytest.mark.slow
def test_resuming_a_two_process_run_in_one_process_and_a_one_process_run_in_two_is_refused(tmp_path, uninterrupted):
    # A two-process state, unfinished, resumed in one process (through the library).
    two = tmp_path / "two"
    shutil.copytree(uninterrupted, two)
    state, weights, sha = load_state(two / STATE_NAME)
    state.epoch = 1
    save_state(two / STATE_NAME, state, _Weights(weights), sha)
    config = state.config
    splits = (bar_digits(1001, seed=1), bar_digits(256, seed=2))
    with pytest.raises(DigitrecError, match=r"trained on 2 processes .* resume it with torchrun on 2 processes"):
        train(config, two, splits=splits, progress=False, resume=True, threads=1)
    # A one-process state resumed by torchrun on two.
    one = tmp_path / "one"
    train(config, one, splits=splits, progress=False, threads=1, should_stop=lambda: True)
    done = torchrun(tmp_path, "--out", str(one), "--resume")
    assert done.returncode != 0
    assert "digitrec: error: rank 0 of 2: the run in" in done.stderr
    assert "trained on 1 process and another count" in done.stderr and "not on 2 processes" in done.stderr
    assert "digitrec/training/" not in done.stderr  # no traceback from a worker, only torchrun's own


@pytest.mark.slow
def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused_by_every_rank(tmp_path):
    done = torchrun(tmp_path, "--batch-size", "63", "--out", str(tmp_path / "run"))
    assert done.returncode != 0
    for rank in (0, 1):
        assert (
            f"digitrec: error: rank {rank} of 2: the global batch of 63 (--batch-size) does not divide" in done.stderr
        )
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
@pytest.mark.parametrize("when", ["reading the data", "training"])
def test_a_failing_rank_names_itself_and_torchrun_names_it_as_the_root_cause(tmp_path, when):
    env = {"FAIL_RANK": "1", **({"FAIL_AT_STEP": "8"} if when == "training" else {})}
    done = torchrun(tmp_path, *FAKE_ARGS, "--out", str(tmp_path / "run"), env=env)
    assert done.returncode != 0
    message = "cannot read the training digits here" if when == "reading the data" else "failed at step 8"
    assert f"digitrec: error: rank 1 of 2: {message}" in done.stderr, done.stderr
    root = done.stderr.split("Root Cause (first observed failure):")[1]
    assert "rank      : 1 (local_rank: 1)" in root and f"rank 1 of 2: {message}" in root, root
    assert "digitrec/training/" not in done.stderr  # no traceback from a worker: the other rank stops quietly


# ---- the fast preset on MNIST: two processes against one ----------------------------------------


@needs_mnist
@pytest.mark.slow
def test_the_fast_preset_on_two_processes_reaches_99_percent_like_one_process(tmp_path):
    """One epoch of 60,000 digits in global batches of 128, once in one process and once in two
    (one thread each): both reach 99%, within 0.15 points of each other. About a minute here."""
    common = ["--preset", "fast", "--threads", "1", "--json"]
    one = subprocess.run(
        [sys.executable, "-m", "digitrec", "train", *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert one.returncode == 0, one.stderr
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(free_port()), "-m", "digitrec", "train", *common, "--out", str(tmp_path / "two")]
    two = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr
    acc = {name: json.loads((tmp_path / name / "summary.json").read_text())["test_accuracy"] for name in ("one", "two")}
    print(f"fast preset, test accuracy: one process {acc['one']:.4f}, two processes {acc['two']:.4f}")
    assert acc["two"] >= 0.99 and acc["one"] >= 0.99
    assert abs(acc["two"] - acc["one"]) <= 0.0015
    meta = load_checkpoint(tmp_path / "two" / "model.safetensors").metadata
    assert meta["training"]["world_size"] == 2 and meta["training"]["config"]["batch_size"] == 128
