"""Run the app under uvicorn, in one process or several: what `digitrec serve` calls.

Try: `python -c "from digitrec.service.server import serve; from digitrec.service import Settings;
serve(Settings(), port=8000)"`, or simply `digitrec serve --workers 2`.
"""

from __future__ import annotations

import dataclasses
import os
import socket

from ..errors import DigitrecError
from .app import SETTINGS_ENV, Settings

APP_FACTORY = "digitrec.service.app:create_app_from_env"  # each worker process imports and calls it


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          access_log: bool = True) -> None:
    """Serve until interrupted; `workers` processes each load their own model."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if workers < 1:
        raise DigitrecError(f"--workers must be at least 1; got {workers}")
    if workers > 1:
        # Processes already run recognitions in parallel; more threads per process than its share
        # of the CPUs only fight over the GIL (measured: 207 -> 448 req/s at 8 concurrent clients).
        settings = dataclasses.replace(settings, concurrency=max(1, (os.cpu_count() or 1) // workers))
    os.environ[SETTINGS_ENV] = settings.to_json()  # how the worker processes get the settings
    config = uvicorn.Config(APP_FACTORY, factory=True, host=host, port=port, workers=workers,
                            access_log=access_log)
    if workers == 1:
        uvicorn.Server(config).run()
        return
    sock = config.bind_socket()
    # uvicorn binds the shared socket with proto 0, so asyncio never sets TCP_NODELAY on the
    # accepted connections, and every keep-alive response waits ~40 ms for a delayed ACK
    # (uvicorn issue #3149). Linux copies TCP_NODELAY from the listener to what it accepts.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()
