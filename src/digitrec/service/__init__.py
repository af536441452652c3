"""The HTTP service: a JSON API for recognising digits and a drawing page, on FastAPI.

Try: `digitrec serve`, then open http://127.0.0.1:8000/ (the drawing page) or /docs (the API).

Needs the `serve` extra (fastapi, uvicorn, python-multipart); `import digitrec` never imports it.
`Settings` (settings.py) imports no fastapi, so the CLI can read its defaults; `create_app`
imports the app, and with it fastapi, when it is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
