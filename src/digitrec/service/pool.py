"""Recognition processes for `digitrec serve --workers N`: N processes, each with its own model,
fed from one queue by the server's single event loop.

Try: `digitrec serve --workers 2`, then `python benchmarks/service_load.py`.

Why one queue: with N uvicorn processes sharing the listening socket, each keep-alive
connection stays with the process that accepted it, however unevenly they are shared; here any
free process takes the next image, whichever connection sent it.
See docs/decisions/recognition-process-queue.md.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
    """`workers` processes, each with `Recognizer.load(model, threads=threads)`."""

    def __init__(self, model: str | None, threads: int, workers: int) -> None:
        self._args = (model, threads)
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._restarting = asyncio.Lock()

    async def start(self) -> None:
        """Start the processes and wait until each has loaded its model."""
        # "spawn": a fresh interpreter; forking a process that runs an event loop and threads
        # can copy a lock in a held state.
        self._executor = ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn"), initializer=_load, initargs=self._args
        )
        loop = asyncio.get_running_loop()
        # Each task submitted while no process is idle starts one more: all start, all load.
        await asyncio.gather(*(loop.run_in_executor(self._executor, _ready) for _ in range(self._workers)))

    async def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """`fn(recognizer, *args)` in the next free process: (its result, seconds it ran there).
        `fn` and `args` must pickle: a module-level function and plain data. Raises
        BrokenProcessPool when a process died (killed, out of memory) while it ran; the pool is
        then started afresh, so later requests work."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("RecognitionPool.start() was not called")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, _run, fn, *args)
        except BrokenProcessPool:
            async with self._restarting:
                if self._executor is executor:  # the first request to see it restarts the pool
                    self.close()
                    await self.start()
            raise

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
