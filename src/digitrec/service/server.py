"""Run the app under uvicorn: what `digitrec serve` calls.

Try: `python -c "from digitrec.service.server import serve; from digitrec.service import Settings;
serve(Settings(workers=2), port=8000)"`, or simply `digitrec serve --workers 2`.

One server process answers HTTP; `Settings.workers` above 1 adds that many recognition
processes behind one queue (pool.py), rather than several server processes with a connection
each to themselves.
"""

from __future__ import annotations

import json
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
MAX_HEADER_BYTES = 64 * 1024  # a request's headers together; browsers send a few KB


def json_http_protocol() -> type | str:
    """uvicorn's httptools protocol with its own 400 (a request it cannot parse: a 100 KB URL, a
    broken header, headers over MAX_HEADER_BYTES) in JSON, as every other error is; "auto"
    where httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class JsonErrorsProtocol(HttpToolsProtocol):
        header_bytes = 0

        def on_message_begin(self) -> None:
            self.header_bytes = 0
            super().on_message_begin()

        def on_header(self, name: bytes, value: bytes) -> None:
            self.header_bytes += len(name) + len(value)
            if self.header_bytes > MAX_HEADER_BYTES:  # the parser answers 400 for a callback that raises
                raise ValueError(f"request headers over {MAX_HEADER_BYTES} bytes")
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            detail = f"{msg} The request line or a header is malformed or too long; send a valid, shorter one."
            body = json.dumps({"detail": detail}).encode()
            head = [b"HTTP/1.1 400 Bad Request\r\n"]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: application/json\r\n",
                b"x-content-type-options: nosniff\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    return JsonErrorsProtocol


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
        http=json_http_protocol(),
    )
    uvicorn.Server(config).run()
