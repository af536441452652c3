"""The FastAPI app: recognise uploaded images, describe the model, serve the drawing page.

Try: `digitrec serve --port 8000`, then
`curl -F file=@digit.png 'http://127.0.0.1:8000/api/v1/recognize?top_k=3'`.

`create_app(Settings(...))` builds an app; the model is loaded once, in the lifespan, and lives
in `app.state`. Recognition is CPU work: it runs in worker threads (at most
`Settings.concurrency` at once) so the event loop keeps answering, or with `Settings.workers`
above 1 in that many processes fed from one queue (pool.py). Everything a client can get
wrong is a 4xx with a JSON `detail` saying what to do: 400 unreadable image, 413 too large,
415 wrong content type, 422 bad option.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..constants import NUM_CLASSES
from ..errors import DigitrecError
from ..image.decode import FORMATS, MAX_PIXELS
from ..probabilities import DEFAULT_TOPK
from ..recognition.recognizer import DEFAULT_REJECT_BELOW, MAX_EXPECTED_DIGITS, Recognizer
from ..recognition.results import Recognition
from ..version import __version__
from .pool import RecognitionPool, timed
from .schemas import BatchOut, ErrorOut, HealthOut, ModelOut, RecognitionOut

log = logging.getLogger("digitrec.service")

# --- request limits (defaults of Settings) ------------------------------------------------------
MAX_UPLOAD_BYTES = 16 * 2**20  # one image; phone photos are 2-12 MiB
MAX_UPLOAD_PIXELS = MAX_PIXELS  # preprocessing refuses more anyway: a decompression-bomb cap
MAX_BATCH_FILES = 32  # images per batch request
MAX_BATCH_BYTES = 64 * 2**20  # a whole batch request
MULTIPART_OVERHEAD = 64 * 2**10  # boundaries and part headers around a single upload
MAX_FORM_FIELDS = 16  # non-file multipart fields accepted (and ignored)
MAX_NAME_CHARS = 200  # an uploaded file name is echoed back at most this long

STATIC_DIR = Path(__file__).parent / "static"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")
RAW_TYPES = ("application/octet-stream",)  # raw bytes of unstated type: decoding decides
# The page loads nothing from elsewhere; the browser enforces it. Data URLs are the 28x28 images.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Settings:
    """Everything a server needs to start: the model and the request limits."""

    model: str | None = None  # .onnx or .safetensors; None: the shipped model
    threads: int = 1  # backend threads per recognition: requests run in parallel instead
    workers: int = 1  # recognition processes; 1: recognitions run in threads of the server's process
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)  # threads: recognitions at once
    max_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_UPLOAD_PIXELS
    max_batch_files: int = MAX_BATCH_FILES
    max_batch_bytes: int = MAX_BATCH_BYTES

    def __post_init__(self) -> None:
        for name in (
            "threads",
            "workers",
            "concurrency",
            "max_bytes",
            "max_pixels",
            "max_batch_files",
            "max_batch_bytes",
        ):
            if getattr(self, name) < 1:
                raise DigitrecError(f"service setting {name} must be at least 1; got {getattr(self, name)}")
        if self.max_pixels > MAX_PIXELS:
            raise DigitrecError(
                f"service setting max_pixels can be at most {MAX_PIXELS:,} (the decoder's cap); got {self.max_pixels:,}"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))

    def limits(self) -> dict[str, int]:
        return {
            "max_bytes": self.max_bytes,
            "max_pixels": self.max_pixels,
            "max_batch_files": self.max_batch_files,
            "max_batch_bytes": self.max_batch_bytes,
        }


@dataclass(frozen=True)
class Options:
    """The recognition options a request can set (query parameters)."""

    digits: int | None
    top_k: int
    reject_below: float
    images: bool


def recognition_options(
    digits: Annotated[
        int | None, Query(ge=1, le=MAX_EXPECTED_DIGITS, description="how many digits the image holds, when known")
    ] = None,
    top_k: Annotated[int, Query(ge=1, le=NUM_CLASSES, description="alternatives listed per digit")] = DEFAULT_TOPK,
    reject_below: Annotated[
        float, Query(ge=0.0, le=1.0, description="digits less confident than this are flagged; all flagged: rejected")
    ] = DEFAULT_REJECT_BELOW,
    images: Annotated[bool, Query(description="include the 28x28 images the network saw (PNG data URLs)")] = False,
) -> Options:
    return Options(digits, top_k, reject_below, images)


# --- errors --------------------------------------------------------------------------------------


def _too_large(size: int, limit: int, what: str) -> HTTPException:
    return HTTPException(
        413,
        f"{what} is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB — resize or compress the image first",
    )


def _status_for(error: DigitrecError) -> int:
    """413 for the decoder's size caps, 400 for everything else it cannot read."""
    message = str(error)
    return 413 if "too many pixels" in message or "too large" in message else 400


def _check_pixels(data: bytes, max_pixels: int, label: str) -> None:
    """Refuse an image over a lower pixel limit than the decoder's, from its header alone."""
    if max_pixels >= MAX_PIXELS:
        return  # load_image checks its own cap before decoding
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Exception:  # noqa: BLE001 - unreadable: recognize() says precisely why
        return
    if w * h > max_pixels:
        raise DigitrecError(f"{label}: {w}x{h} is too many pixels (limit {max_pixels:,}); resize the image first")


def _option_errors(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
        got = f" (got {e['input']!r:.80})" if e.get("input") is not None else ""
        parts.append(f"{where}: {e.get('msg', 'invalid')}{got}")
    return "; ".join(parts) + " — see /docs for the options"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _option_errors(exc), "errors": jsonable_encoder(exc.errors())}, status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the image cannot be read, or the request is malformed"},
    413: {"model": ErrorOut, "description": "the upload is over the byte or pixel limit"},
    415: {"model": ErrorOut, "description": "the Content-Type is not multipart/form-data or an image type"},
    422: {"model": ErrorOut, "description": "an option is out of range, or the file field is missing"},
}


def _binary_body(field_name: str, *, raw: bool, max_files: int | None = None) -> dict[str, Any]:
    """The OpenAPI requestBody of the upload endpoints (they parse the body themselves)."""
    binary = {"type": "string", "format": "binary"}
    prop = binary if max_files is None else {"type": "array", "items": binary, "minItems": 1, "maxItems": max_files}
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {field_name: prop}, "required": [field_name]}
        }
    }
    if raw:
        content.update({t: {"schema": binary} for t in (*IMAGE_TYPES, *RAW_TYPES)})
    return {"requestBody": {"required": True, "content": content}}


# --- reading uploads -------------------------------------------------------------------------------


def _limited(request: Request, limit: int, what: str) -> Request:
    """The same request, refusing (413) a body over `limit` bytes before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit, what)
    receive = request.receive
    received = 0

    async def counting_receive() -> Any:  # also covers chunked bodies, which declare no length
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise _too_large(received, limit, what)
        return message

    return Request(request.scope, counting_receive)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _unsupported(media_type: str, raw: bool) -> HTTPException:
    accepted = "multipart/form-data" + (" or raw bytes with an image/* Content-Type" if raw else "")
    return HTTPException(415, f"Content-Type {media_type or '(none)'} is not accepted; send {accepted}")


async def _form_files(
    request: Request, limit: int, max_files: int, what: str, too_many: HTTPException
) -> list[tuple[str | None, bytes]]:
    """Every file part of a multipart body, in order, as (file name, bytes)."""
    try:
        async with _limited(request, limit, what).form(max_files=max_files, max_fields=MAX_FORM_FIELDS) as form:
            return [(_name(v.filename), await v.read()) for _, v in form.multi_items() if isinstance(v, UploadFile)]
    except StarletteHTTPException as e:  # the multipart parser's own 400s
        if e.status_code == 400 and "Too many files" in str(e.detail):
            raise too_many from None
        raise


def _name(filename: str | None) -> str | None:
    return filename[:MAX_NAME_CHARS] if filename else None


async def _single_upload(request: Request, settings: Settings) -> tuple[str | None, bytes]:
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        files = await _form_files(
            request,
            settings.max_bytes + MULTIPART_OVERHEAD,
            1,
            "the upload",
            HTTPException(422, "one image per request here; send several to /api/v1/recognize/batch"),
        )
        if not files:
            raise HTTPException(422, "no image: send it as a multipart file field named 'file'")
        name, data = files[0]
    elif media_type.startswith("image/") or media_type in RAW_TYPES:
        name, data = None, await _limited(request, settings.max_bytes, "the upload").body()
    else:
        raise _unsupported(media_type, raw=True)
    if len(data) > settings.max_bytes:
        raise _too_large(len(data), settings.max_bytes, "the image")
    return name, data


# --- recognition (worker threads) -------------------------------------------------------------------


def _recognize(
    recognizer: Recognizer, settings: Settings, options: Options, name: str | None, data: bytes
) -> dict[str, Any]:
    """One image -> the JSON dict of its Recognition; raises DigitrecError for a bad image."""
    label = name or "image"
    if len(data) > settings.max_bytes:
        raise DigitrecError(
            f"{label}: {len(data) / 2**20:.1f} MiB is too large "
            f"(limit {settings.max_bytes / 2**20:.1f} MiB); resize or compress the image first"
        )
    _check_pixels(data, settings.max_pixels, label)
    try:
        result = recognizer.recognize(
            data, expected_digits=options.digits, reject_below=options.reject_below, top_k=options.top_k, name=name
        )
    except DigitrecError:
        raise
    except Exception as e:  # noqa: BLE001 - a bug for the log, but never a 500 for a client's image
        log.error("recognising %s failed unexpectedly", label, exc_info=e)
        raise DigitrecError(
            f"{label}: this image could not be processed ({type(e).__name__}); try another {FORMATS} file"
        ) from None
    return result.to_dict(include_images=options.images)


def _recognize_each(
    recognizer: Recognizer, settings: Settings, options: Options, files: list[tuple[str | None, bytes]]
) -> list[dict[str, Any]]:
    """A batch: each file's result; one that cannot be read gets its `error`, the rest still run."""
    out = []
    for name, data in files:
        try:
            out.append(_recognize(recognizer, settings, options, name, data))
        except DigitrecError as e:
            out.append(Recognition(text="", digits=[], rejected=True, path=name, error=str(e)).to_dict())
    return out


async def _in_worker(request: Request, fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, str]]:
    """Run `fn(recognizer, *args)` in a worker thread, or a recognition process when there are
    some: (its result, a Server-Timing header saying how long it waited for a free worker and
    how long it ran), for browsers' developer tools and benchmarks."""
    state = request.app.state
    start = time.perf_counter()
    if state.pool is not None:
        try:
            result, ran = await state.pool.run(fn, *args)
        except BrokenProcessPool:
            raise HTTPException(503, "a recognition process stopped unexpectedly; send the request again") from None
    else:
        result, ran = await anyio.to_thread.run_sync(partial(timed, fn, state.recognizer, *args), limiter=state.limiter)
    waited = time.perf_counter() - start - ran
    return result, {"Server-Timing": f"queue;dur={1000 * waited:.2f}, recognize;dur={1000 * ran:.2f}"}


# --- the app --------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving the API and the drawing page; the model loads when it starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.recognizer = await anyio.to_thread.run_sync(
            partial(Recognizer.load, settings.model, threads=settings.threads)
        )
        app.state.limiter = anyio.CapacityLimiter(settings.concurrency)
        app.state.pool = None
        if settings.workers > 1:
            app.state.pool = RecognitionPool(settings.model, settings.threads, settings.workers)
            await app.state.pool.start()
        try:
            yield
        finally:
            if app.state.pool is not None:
                app.state.pool.close()

    app = FastAPI(
        title="digitrec",
        version=__version__,
        lifespan=lifespan,
        description="Recognise handwritten digits and numbers in images. The drawing page is at /.",
    )
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)

    @app.post(
        "/api/v1/recognize",
        response_model=None,
        tags=["recognition"],
        responses={200: {"model": RecognitionOut}, **ERROR_RESPONSES},
        openapi_extra=_binary_body("file", raw=True),
    )
    async def recognize(request: Request, options: Annotated[Options, Depends(recognition_options)]) -> JSONResponse:
        """Read the digits in one image: a multipart field `file`, or the raw bytes with an image
        Content-Type. The same JSON as `digitrec predict --json`."""
        name, data = await _single_upload(request, settings)
        try:
            result, timing = await _in_worker(request, _recognize, settings, options, name, data)
        except DigitrecError as e:
            raise HTTPException(_status_for(e), str(e)) from None
        return JSONResponse(result, headers=timing)

    @app.post(
        "/api/v1/recognize/batch",
        response_model=None,
        tags=["recognition"],
        responses={200: {"model": BatchOut}, **ERROR_RESPONSES},
        openapi_extra=_binary_body("files", raw=False, max_files=settings.max_batch_files),
        description=f"Read up to {settings.max_batch_files} images sent as multipart fields `files`; each "
        "gets its own result, and one that cannot be read gets an `error` while the others "
        "still succeed.",
    )
    async def recognize_batch(
        request: Request, options: Annotated[Options, Depends(recognition_options)]
    ) -> JSONResponse:
        media_type = _media_type(request)
        if media_type != "multipart/form-data":
            raise _unsupported(media_type, raw=False)
        files = await _form_files(
            request,
            settings.max_batch_bytes,
            settings.max_batch_files,
            "the batch",
            HTTPException(413, f"too many files: at most {settings.max_batch_files} per batch"),
        )
        if not files:
            raise HTTPException(
                422, f"no images: send 1 to {settings.max_batch_files} multipart file fields named 'files'"
            )
        results, timing = await _in_worker(request, _recognize_each, settings, options, files)
        return JSONResponse({"count": len(results), "results": results}, headers=timing)

    @app.get("/api/v1/model", response_model=ModelOut, tags=["service"])
    async def model(request: Request) -> dict[str, Any]:
        """The model being served: architecture, test accuracy, size, versions; and the limits."""
        info = dict(request.app.state.recognizer.info)
        info["file"] = Path(info.pop("path")).name  # the server's folders are nobody's business
        return {**info, "limits": settings.limits()}

    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz(request: Request) -> dict[str, str]:
        """Ready: the model is loaded."""
        return {"status": "ok", "model": request.app.state.recognizer.info["architecture"]}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
