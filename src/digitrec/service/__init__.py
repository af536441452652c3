"""The HTTP service: a JSON API for recognising digits and a drawing page, on FastAPI.

Try: `digitrec serve`, then open http://127.0.0.1:8000/ (the drawing page) or /docs (the API).

Needs the `serve` extra (fastapi, uvicorn, python-multipart); `import digitrec` never imports it.
"""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
