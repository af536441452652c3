"""Recognition processes for `digitrec serve --workers N`: N processes, each with its own model,
fed from one queue by the server's single event loop.

Try: `digitrec serve --workers 2`, then `python benchmarks/service_load.py`.

Why one queue: with N uvicorn processes sharing the listening socket, each keep-alive
connection stays with the process that accepted it, however unevenly they are shared; here any
free process takes the next image, whichever connection sent it. Each process has an executor
of its own, so that one that dies fails only the request it was running.
See docs/decisions/recognition-process-queue.md.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

from ..recognition.recognizer import Recognizer

# The model of this recognition process, loaded once by `_load` when the process starts. A
# module global, because that is what a process pool's initializer can set; it exists only in
# the pool's processes, never in the server's.
_recognizer: Recognizer | None = None


def _load(model: str | None, threads: int) -> None:
    global _recognizer
    _recognizer = Recognizer.load(model, threads=threads)


def _ready() -> bool:
    return _recognizer is not None


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """(fn(*args), seconds it took)."""
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


def _run(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """In a recognition process: `timed(fn, its recognizer, *args)`."""
    assert _recognizer is not None, "the pool's initializer loads the model"
    return timed(fn, _recognizer, *args)


class RecognitionPool:
    """`workers` processes, each with `Recognizer.load(model, threads=threads)`, each behind an
    executor of its own: a process that dies fails only the request it was running, and is
    started again while the others go on (`degraded` says so meanwhile)."""

    def __init__(self, model: str | None, threads: int, workers: int) -> None:
        self._args = (model, threads)
        self._workers = workers
        self._slots: list[ProcessPoolExecutor] = []
        self._idle: asyncio.Queue[int] = asyncio.Queue()
        self._restarting: dict[int, asyncio.Task[None]] = {}

    def _executor(self) -> ProcessPoolExecutor:
        # "spawn": a fresh interpreter; forking a process that runs an event loop and threads
        # can copy a lock in a held state.
        return ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_load, initargs=self._args
        )

    async def start(self) -> None:
        """Start the processes and wait until each has loaded its model."""
        self._slots = [self._executor() for _ in range(self._workers)]
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(slot, _ready) for slot in self._slots))
        for i in range(self._workers):
            self._idle.put_nowait(i)

    @property
    def degraded(self) -> bool:
        """Whether a process that died is being started again (fewer processes serve)."""
        return bool(self._restarting)

    async def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """`fn(recognizer, *args)` in the next free process: (its result, seconds it ran there).
        `fn` and `args` must pickle: a module-level function and plain data. Raises
        BrokenProcessPool when the process died (killed, out of memory) while it ran this
        request; that process is started again, and later requests go to the others meanwhile."""
        if not self._slots:
            raise RuntimeError("RecognitionPool.start() was not called")
        loop = asyncio.get_running_loop()
        while True:
            i = await self._idle.get()
            try:
                job = self._slots[i].submit(_run, fn, *args)
            except BrokenProcessPool:  # it died while idle: this request never ran there
                self._restart(i)
                continue
            # The slot is free again when its process is done, even if this request's task is
            # cancelled meanwhile (a client that left).
            job.add_done_callback(partial(self._on_done, loop, i))
            try:
                result: tuple[Any, float] = await asyncio.wrap_future(job)
            except BrokenProcessPool:
                self._restart(i)  # now, so that `degraded` holds as soon as the caller knows
                raise
            return result

    def _on_done(self, loop: asyncio.AbstractEventLoop, i: int, job: Future[Any]) -> None:
        """In the executor's thread: hand the finished job back to the event loop."""
        loop.call_soon_threadsafe(self._finished, i, job)

    def _finished(self, i: int, job: Future[Any]) -> None:
        if not job.cancelled() and isinstance(job.exception(), BrokenProcessPool):
            self._restart(i)
        elif i not in self._restarting:
            self._idle.put_nowait(i)

    def _restart(self, i: int) -> None:
        if i not in self._restarting and self._slots:
            self._restarting[i] = asyncio.get_running_loop().create_task(self._start_again(i))

    async def _start_again(self, i: int) -> None:
        self._slots[i].shutdown(wait=False, cancel_futures=True)
        self._slots[i] = self._executor()
        try:
            await asyncio.get_running_loop().run_in_executor(self._slots[i], _ready)
        finally:
            del self._restarting[i]
            self._idle.put_nowait(i)

    def close(self) -> None:
        for task in self._restarting.values():
            task.cancel()
        for slot in self._slots:
            slot.shutdown(wait=True, cancel_futures=True)
        self._slots = []
