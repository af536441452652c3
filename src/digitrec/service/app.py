"""The FastAPI app: recognise uploaded images, describe the model, serve the drawing page.

Try: `digitrec serve --port 8000`, then
`curl -F file=@digit.png 'http://127.0.0.1:8000/api/v1/recognize?top_k=3'`.

`create_app(Settings(...))` builds an app; the model is loaded once, in the lifespan, and lives
in `app.state`. The parts: settings.py (the limits), uploads.py (reading request bodies),
routes.py (the endpoints), errors.py (exception types -> status codes), pool.py (recognition
processes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..recognition.constraints import load_lexicon
from ..recognition.recognizer import Recognizer
from ..version import __version__
from .errors import add_error_handlers
from .pool import RecognitionPool
from .profile_routes import profile_router
from .profiles import Profiles
from .routes import api_router
from .settings import Settings

__all__ = ["Settings", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
# The page loads nothing from elsewhere; the browser enforces it. Data URLs are the 28x28 images.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class NoSniff:
    """ASGI middleware: every answer carries `X-Content-Type-Options: nosniff`, so a browser
    never runs an answer as another type than the one it says (a pure ASGI wrapper: no
    per-request task, unlike an `@app.middleware` function)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_header)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving the API and the drawing page; the model loads when it starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.recognizer = await anyio.to_thread.run_sync(
            partial(Recognizer.load, settings.model, threads=settings.threads)
        )
        for path in settings.lexicons.values():  # loaded once here: a request naming one is not slowed
            await anyio.to_thread.run_sync(load_lexicon, path)
        app.state.profiles = Profiles(settings, app.state.recognizer)
        if settings.store is not None:  # a store named explicitly is opened now: a bad URL stops the start
            await anyio.to_thread.run_sync(lambda: app.state.profiles.store)
        app.state.limiter = anyio.CapacityLimiter(settings.concurrency)
        app.state.large_gate = anyio.Semaphore(settings.large_at_once)
        app.state.pool = None
        if settings.workers > 1:
            app.state.pool = RecognitionPool(settings.model, settings.threads, settings.workers)
            await app.state.pool.start()
        try:
            yield
        finally:
            if app.state.pool is not None:
                app.state.pool.close()

    # FastAPIOffline: FastAPI whose /docs and /redoc load Swagger UI and ReDoc from the
    # fastapi-offline package, not from a CDN, so they work offline and load nothing from elsewhere.
    app = FastAPIOffline(
        title="digitrec",
        version=__version__,
        lifespan=lifespan,
        description="Recognise handwritten digits and numbers in images. The drawing page is at /.",
    )
    app.state.settings = settings
    app.add_middleware(NoSniff)
    add_error_handlers(app)
    app.include_router(api_router(settings))
    app.include_router(profile_router())

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
