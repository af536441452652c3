"""Data-parallel training on several processes: PyTorch's DistributedDataParallel, launched by torchrun.

Try: `torchrun --nproc_per_node 2 -m digitrec train --preset fast --threads 1` (CPU: gloo; with
GPUs, one process per GPU: NCCL). Several machines: torchrun's own options, e.g.
`torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node N -m digitrec train ...`.

`training.run.train()` finds torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), joins the process group (`process_group`) and leaves it at the end, errors
included; `training.loop.fit()` runs the one training loop on every rank with the model wrapped
in DDP. A world of one process (`--nproc_per_node 1`) is a plain run, with the plain run's
weights. How the work is split (figures and reasons: docs/decisions/distributed-training.md):

- **One global batch.** `config.batch_size` is the batch of the whole job, whatever the number of
  processes W. Every rank draws the epoch's permutation from (seed, epoch), the same on every
  rank, cuts it into global batches exactly as one process would, and takes positions
  rank, rank + W, rank + 2W, ... of each (`shard`): the shards are disjoint and together are the
  global batch. Each rank's loss is its shard's mean (weighted by its share of the batch when a
  last, short batch does not split evenly) and DDP averages the gradients, so a step follows the
  gradient of the whole global batch, with the single process's steps per epoch and learning-rate
  schedule. A global batch that does not divide by W is refused (`check_batch`).
- **Randomness.** Augmentation and dropout draw from torch's generator, seeded at each epoch from
  (seed, epoch, rank) (`rank_seed`): every rank draws its own numbers, and the same ones again
  in a rerun at the same world size.
- **Stopping.** Ctrl-C or SIGTERM reaches every rank (torchrun passes it on) but at different
  steps: after each step the ranks agree with a one-number all-reduce of the stop flag
  (`World.any`), so all stop after the same step. Stopped inside an epoch, every rank's generator
  state is gathered and saved by rank 0, and given back to each rank on resume: the resumed run
  ends with the weights of an uninterrupted one at the same world size (not another: the shards,
  the batch-norm statistics and the random numbers depend on W, so resuming at another world
  size is refused).
- **Rank 0 alone** holds the output folder: it reads the state to resume (and hands it to the
  others), evaluates on the whole test set after each epoch, and writes checkpoints, state, log,
  curves and progress; the other ranks wait for it at the next collective (the epoch's record,
  which rank 0 sends to all, is the barrier).
- **Failures.** A rank that fails says which it is (`digitrec: error: rank 1 of 2: ...`) and
  writes it to torchrun's error file (`report_failure`), for torchrun's summary. A failure in the
  setup (`together`, `from_rank0`) stops the other ranks with a line naming it (`PeerFailed`); one
  during training makes the others' collectives fail as it leaves, and they stop the same way.
  Ranks leave the group together (a barrier) unless one failed alone.
- **Batch norm.** DDP sends rank 0's buffers (the running statistics) to every rank before each
  forward pass, so the running statistics are rank 0's; in training, each rank normalises with
  its own shard's statistics. SyncBatchNorm is not used: on the CPU this torch refuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import DigitrecError

T = TypeVar("T")

# What torchrun (and other env:// launchers) set for each process.
ENV_RANK, ENV_WORLD_SIZE, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"
ENV_MASTER = ("MASTER_ADDR", "MASTER_PORT")


class PeerFailed(DigitrecError):
    """Another rank failed, and this one stops with it: that rank says why."""


# Set on an error every rank raised together (`together`): they can still leave the group together.
AGREED = "digitrec_every_rank"
# Where torchrun asks each process to write why it failed (its summary shows it).
ENV_ERROR_FILE = "TORCHELASTIC_ERROR_FILE"
# A rank stopping because another failed leaves this much later, so that torchrun sees the failing
# rank end first and names it as the root cause (it checks its processes every 0.1 s).
PEER_EXIT_DELAY_S = 1.0


def report_failure(message: str, peer: bool) -> None:
    """Tell torchrun why this process fails: its own `message` in the error file torchrun reads
    for its summary; a rank stopping for another's failure (`peer`) writes none and lingers
    `PEER_EXIT_DELAY_S`, so that the summary's root cause is the rank that failed."""
    if peer:
        time.sleep(PEER_EXIT_DELAY_S)
        return
    path = os.environ.get(ENV_ERROR_FILE)
    if not path:
        return
    record = {
        "message": {"message": message, "extraInfo": {"py_callstack": message, "timestamp": str(int(time.time()))}}
    }
    with contextlib.suppress(OSError):
        with open(path, "w") as f:
            json.dump(record, f)


@dataclass(frozen=True)
class Launch:
    """The process's place in the job, from torchrun's environment."""

    rank: int
    world_size: int
    local_rank: int

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def launch_from_env(environ: dict[str, str] | None = None) -> Launch | None:
    """This process's `Launch` when torchrun (or another env:// launcher) started it, else None."""
    env = os.environ if environ is None else environ
    if ENV_RANK not in env and ENV_WORLD_SIZE not in env:
        return None
    try:
        rank, size = int(env[ENV_RANK]), int(env[ENV_WORLD_SIZE])
        local = int(env.get(ENV_LOCAL_RANK, rank))
    except (KeyError, ValueError):
        raise DigitrecError(
            f"{ENV_RANK} and {ENV_WORLD_SIZE} must both be set to whole numbers for distributed training "
            f"(got {ENV_RANK}={env.get(ENV_RANK)!r}, {ENV_WORLD_SIZE}={env.get(ENV_WORLD_SIZE)!r}); "
            "launch with torchrun, or unset them"
        ) from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise DigitrecError(f"{ENV_RANK}={rank} does not fit {ENV_WORLD_SIZE}={size}; launch with torchrun")
    return Launch(rank, size, local)


@dataclass(frozen=True)
class World:
    """The processes training together, seen from one of them."""

    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank (the stop flag)."""
        t = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, values: list[float]) -> list[float]:
        """`values` summed over the ranks, element by element, in float64."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.tolist()]

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank (pickled: the ranks trust each other)."""
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        box: list[Any] = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]


def check_batch(batch_size: int, world_size: int) -> None:
    """Refuse a global batch the ranks cannot share equally."""
    if batch_size % world_size:
        raise DigitrecError(
            f"the global batch of {batch_size} (--batch-size) does not divide among {world_size} processes; "
            f"choose a multiple of {world_size}, such as {max(world_size, batch_size // world_size * world_size)}"
        )


def shard(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s part of one global batch (indices into the training set): positions
    rank, rank + W, ... Deterministic, disjoint across ranks, and together the whole batch; a short
    last batch leaves the higher ranks one fewer (or none)."""
    return batch[rank::world_size]


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of rank `rank`'s augmentation and dropout in `epoch`: its own stream, the same
    in every rerun at the same world size."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + rank + 1) % (2**63)


@contextlib.contextmanager
def process_group(device: str) -> Iterator[World | None]:
    """Join the process group torchrun's environment describes, and leave it at the end (errors
    too). None when the process was not launched for distributed training, or is the only one.
    A group the caller already joined is used as it is, and left to the caller."""
    launch = launch_from_env()
    if launch is None or launch.world_size == 1:
        yield None
        return
    if not dist.is_available():
        raise DigitrecError("this torch was built without torch.distributed; train in one process")
    where = torch.device(device)
    if where.type == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise DigitrecError(
                f"{launch}: local rank {launch.local_rank} has no GPU (this machine has "
                f"{torch.cuda.device_count()}); start at most one process per GPU (--nproc_per_node)"
            )
        where = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(where)
    elif where.type != "cpu":
        raise DigitrecError(f"distributed training runs on the CPU (gloo) or on CUDA GPUs (NCCL), not on {where}")
    owned = not dist.is_initialized()
    if owned:
        missing = [v for v in ENV_MASTER if not os.environ.get(v)]
        if missing:
            raise DigitrecError(f"{', '.join(missing)} not set: launch with torchrun")
        backend = "nccl" if where.type == "cuda" else "gloo"
        try:
            dist.init_process_group(
                backend,
                rank=launch.rank,
                world_size=launch.world_size,
                device_id=where if where.type == "cuda" else None,
            )
        except (RuntimeError, ValueError) as e:  # DistNetworkError, a refused store, ...
            master = ":".join(os.environ.get(v, "?") for v in ENV_MASTER)
            raise DigitrecError(f"cannot join the other processes ({backend} at {master}): {e}") from None
    world = World(dist.get_rank(), dist.get_world_size(), launch.local_rank, where)
    try:
        yield world
    except BaseException as e:
        # After a failure on every rank (`together`) they leave together; after one rank's own
        # failure the others may be gone or busy, and a barrier would wait for them in vain.
        if owned and getattr(e, AGREED, False):
            dist.barrier()
        if _lost_peer(e):
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PeerFailed(
                f"stopped: another rank failed or was stopped (its own message, and torchrun's summary, "
                f"say which): {first_line}"
            ) from e
        raise
    else:
        # Every rank leaves together: gloo aborts a process that leaves while its peers still
        # hold the group ("terminate called without an active exception").
        if owned:
            dist.barrier()
    finally:
        if owned:
            dist.destroy_process_group()


def _lost_peer(e: BaseException) -> bool:
    """Whether `e` is a collective failing because another process left (it crashed, or was killed)."""
    if isinstance(e, dist.DistError):
        return True
    return isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("Connection closed by peer", "Connection reset by peer", "NCCL communicator was aborted")
    )


@contextlib.contextmanager
def together(world: World | None) -> Iterator[None]:
    """Run the block on every rank, then agree on how it went: if it failed on any rank, it fails
    on all, the failing rank with its own error and the others with `PeerFailed` naming it. Without
    a world, the block alone."""
    if world is None:
        yield
        return
    error: BaseException | None = None
    try:
        yield
    except Exception as e:
        error = e
    failures = world.gather(None if error is None else (str(error) or type(error).__name__))
    if error is not None:
        setattr(error, AGREED, True)
        raise error
    for rank, message in enumerate(failures):
        if message is not None:
            peer = PeerFailed(f"stopped: rank {rank} of {world.size} failed ({message})")
            setattr(peer, AGREED, True)
            raise peer


def from_rank0(world: World | None, fn: Callable[[], T]) -> T:
    """`fn()` run on rank 0 alone, its result handed to every rank; its failure fails every rank
    (the others with `PeerFailed`). Without a world, `fn()`."""
    if world is None:
        return fn()
    result: Any = None
    with together(world):
        if world.is_main:
            result = fn()
    return world.broadcast(result)
