"""Run the app under uvicorn: what `digitrec serve` calls.

Try: `python -c "from digitrec.service.server import serve; from digitrec.service import Settings;
serve(Settings(workers=2), port=8000)"`, or simply `digitrec serve --workers 2`.

One server process answers HTTP; `Settings.workers` above 1 adds that many recognition
processes behind one queue (pool.py), rather than several server processes with a connection
each to themselves.
"""

from __future__ import annotations

import sys

from .app import create_app
from .settings import DEFAULT_HOST, DEFAULT_PORT, Settings

# A recognition thread holds the GIL for milliseconds; with Python's default 5 ms switch interval
# the event loop waits that long to read the next request. This process only serves.
GIL_SWITCH_S = 0.0005
# SIGTERM ends the server within this many seconds whatever its clients do: a client sending a
# byte a second would otherwise hold the shutdown open for ever.
SHUTDOWN_S = 8
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this long


def serve(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, access_log: bool = True) -> None:
    """Serve until interrupted."""
    import uvicorn

    sys.setswitchinterval(GIL_SWITCH_S)
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        access_log=access_log,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=SHUTDOWN_S,
    )
    uvicorn.Server(config).run()
