"""How errors become HTTP answers: each exception type has its status code, and every answer is
JSON with a `detail` saying what to do.

Try: `python -c "from digitrec.service.errors import status_for; from digitrec.errors import InputTooLargeError;
print(status_for(InputTooLargeError('x')))"`.

A client's mistakes are 4xx: 400 an unreadable image (`DigitrecError`), 413 an input over a limit
(`InputTooLargeError`), 415 a wrong content type, 422 a bad option (`ConstraintError` too: a bad
pattern, checksum or lexicon); 403 another's profile or an admin action without the token, 404
an unknown profile; 503 when a recognition process died under a request or the store cannot
be reached. Anything else is a bug: logged, and a 500 without details.
"""

from __future__ import annotations

import logging
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from ..errors import DigitrecError, InputTooLargeError
from ..recognition.constraints import ConstraintError
from ..recognition.explain import MethodError
from ..store.db import StoreError
from ..store.profiles import ProfileNotFoundError
from .schemas import ErrorOut

log = logging.getLogger("digitrec.service")


# The most specific type listed for an exception (along its class hierarchy) decides its status.
class ServiceBusyError(DigitrecError):
    """The server had no room for this request within its time budget: 503, retry later."""


class AccessDeniedError(DigitrecError):
    """The request may not do this: another's profile, or an admin action without the token (403)."""


ERROR_STATUS: dict[type[Exception], int] = {
    ServiceBusyError: 503,
    StoreError: 503,
    AccessDeniedError: 403,
    ProfileNotFoundError: 404,
    InputTooLargeError: 413,
    ConstraintError: 422,
    MethodError: 422,
    DigitrecError: 400,
}
BROKEN_POOL_STATUS = 503
RETRY_AFTER_S = 1  # the other recognition processes still answer while the dead one restarts

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the image cannot be read, or the request is malformed"},
    413: {"model": ErrorOut, "description": "the upload is over the byte or pixel limit"},
    404: {"model": ErrorOut, "description": "no profile with that identifier"},
    415: {"model": ErrorOut, "description": "the Content-Type is not multipart/form-data or an image type"},
    422: {
        "model": ErrorOut,
        "description": "an option is out of range, a constraint is invalid, or the file field is missing",
    },
}


def status_for(error: DigitrecError) -> int:
    """The status code of `error`'s type: 413 for InputTooLargeError, 422 for ConstraintError, 400
    for any other DigitrecError."""
    return next(ERROR_STATUS[t] for t in type(error).__mro__ if t in ERROR_STATUS)


async def _digitrec_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DigitrecError), "registered for DigitrecError only"
    status = status_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _broken_pool(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "a recognition process stopped unexpectedly; send the request again"},
        status_code=BROKEN_POOL_STATUS,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _option_errors(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
        got = f" (got {e['input']!r:.80})" if e.get("input") is not None else ""
        parts.append(f"{where}: {e.get('msg', 'invalid')}{got}")
    return "; ".join(parts) + " — see /docs for the options"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError), "registered for RequestValidationError only"
    return JSONResponse({"detail": _option_errors(exc), "errors": jsonable_encoder(exc.errors())}, status_code=422)


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    # Nothing went wrong here and nobody is left to answer: one line, no traceback.
    log.info("the client disconnected during %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "the client disconnected before sending the whole request"}, status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every exception type above with its status and a JSON `detail`."""
    for error_type in ERROR_STATUS:
        app.add_exception_handler(error_type, _digitrec_error)
    app.add_exception_handler(BrokenProcessPool, _broken_pool)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
