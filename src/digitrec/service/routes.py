"""The API's endpoints and what they depend on: the recognition options of a request, the
server's settings, and running a recognition off the event loop.

Try: `digitrec serve`, then `curl -F file=@digit.png 'http://127.0.0.1:8000/api/v1/recognize?top_k=3'`.

Recognition is CPU work: it runs in worker threads (at most `Settings.concurrency` at once) so
the event loop keeps answering, or with `Settings.workers` above 1 in that many processes fed
from one queue (pool.py). Errors are raised as exceptions; errors.py turns them into answers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ..constants import NUM_CLASSES
from ..errors import DigitrecError
from ..image.decode import FORMATS, header_pixels
from ..probabilities import DEFAULT_TOPK
from ..recognition.checksums import CHECKSUMS
from ..recognition.constraints import MAX_PATTERN_CHARS, ConstraintError, Constraints
from ..recognition.explain import OCCLUSION, Attribute, attribution_method, explain
from ..recognition.lattice import DEFAULT_ALTERNATIVES, MAX_ALTERNATIVES
from ..recognition.profile import Profile
from ..recognition.recognizer import DEFAULT_REJECT_BELOW, MAX_EXPECTED_DIGITS, Recognizer
from ..recognition.results import Recognition
from .errors import ERROR_RESPONSES, ServiceBusyError
from .pool import timed
from .profiles import RequestProfile
from .schemas import BatchOut, ExplanationOut, HealthOut, ModelOut, RecognitionOut
from .settings import LARGE_IMAGE_PIXELS, Settings
from .uploads import IMAGE_TYPES, MULTIPART, RAW_TYPES, Upload, batch_uploads, single_upload

log = logging.getLogger("digitrec.service")
MAX_STAGES_SHOWN = 16  # the `stages` option's largest value: more convolutions than any model here has


@dataclass(frozen=True)
class Options:
    """The recognition options a request can set (query parameters)."""

    digits: int | None
    top_k: int
    reject_below: float
    images: bool
    strict: bool = False
    constraints: Constraints = Constraints()  # the lexicon as a file of the server's settings
    alternatives: int = DEFAULT_ALTERNATIVES
    profile: Profile | None = None  # adapted in the server process, handed to the recogniser


def app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(app_settings)]


def recognition_options(
    settings: AppSettings,
    profile: RequestProfile,
    digits: Annotated[
        int | None, Query(ge=1, le=MAX_EXPECTED_DIGITS, description="how many digits the image holds, when known")
    ] = None,
    top_k: Annotated[int, Query(ge=1, le=NUM_CLASSES, description="alternatives listed per digit")] = DEFAULT_TOPK,
    reject_below: Annotated[
        float, Query(ge=0.0, le=1.0, description="digits less confident than this are flagged; all flagged: rejected")
    ] = DEFAULT_REJECT_BELOW,
    images: Annotated[bool, Query(description="include the 28x28 images the network saw (PNG data URLs)")] = False,
    strict: Annotated[
        bool,
        Query(
            description='reject an image holding any ink read as no digit (reason "not a digit"); '
            'without it such a piece reads as "?" in the text'
        ),
    ] = False,
    pattern: Annotated[
        str | None,
        Query(
            max_length=MAX_PATTERN_CHARS,
            description=r"a regular expression the digits must match in full, e.g. \d{6}",
        ),
    ] = None,
    checksum: Annotated[
        str | None,
        Query(max_length=20, description=f"a check digit the number must satisfy: {', '.join(CHECKSUMS)}"),
    ] = None,
    lexicon: Annotated[
        str | None,
        Query(max_length=100, description="the name of a lexicon of valid values this server was started with"),
    ] = None,
    alternatives: Annotated[
        int, Query(ge=0, le=MAX_ALTERNATIVES, description="with constraints: valid readings listed besides the best")
    ] = DEFAULT_ALTERNATIVES,
) -> Options:
    if lexicon is not None and lexicon not in settings.lexicons:
        known = ", ".join(sorted(settings.lexicons)) or "none (start the server with --lexicon NAME=FILE)"
        raise ConstraintError(f"no lexicon named {lexicon!r}; this server has: {known}")
    path = settings.lexicons[lexicon] if lexicon is not None else None
    constraints = Constraints(digits, pattern, checksum, path)
    if constraints.beyond_count:
        constraints.compile()  # a bad pattern is a 422 here, before the upload is read
    return Options(digits, top_k, reject_below, images, strict, constraints, alternatives, profile)


RequestOptions = Annotated[Options, Depends(recognition_options)]


# --- recognition, in a worker thread or a recognition process ----------------------------------------
# Module-level functions of plain arguments: a recognition process receives them pickled.


@contextlib.contextmanager
def _never_a_500(name: str | None, done: str) -> Iterator[None]:
    """A DigitrecError passes; anything else is a bug for the log, but never a 500 for a
    client's image: a DigitrecError saying the image could not be `done`."""
    try:
        yield
    except DigitrecError:
        raise
    except Exception as e:  # noqa: BLE001
        label = name or "image"
        log.error("%s: %s failed unexpectedly", label, done, exc_info=e)
        raise DigitrecError(
            f"{label}: this image could not be {done} ({type(e).__name__}); try another {FORMATS} file"
        ) from None


def recognize_one(
    recognizer: Recognizer, settings: Settings, options: Options, name: str | None, data: bytes
) -> dict[str, Any]:
    """One image -> the JSON dict of its Recognition; raises DigitrecError for a bad image
    (InputTooLargeError for one over the settings' byte or pixel limit)."""
    with _never_a_500(name, "processed"):
        result = recognizer.recognize(
            data,
            expected_digits=options.digits,
            reject_below=options.reject_below,
            top_k=options.top_k,
            name=name,
            max_bytes=settings.max_bytes,
            max_pixels=settings.max_pixels,
            strict=options.strict,
            constraints=options.constraints if options.constraints.beyond_count else None,
            alternatives=options.alternatives,
            profile=options.profile,
        )
    return result.to_dict(include_images=options.images)


@functools.cache
def _gradient_attribution(path: str, method: str) -> Attribute:
    from ..reports.explain import gradient_attribution  # deferred: torch, on servers of a checkpoint

    return gradient_attribution(path, method)


def explain_one(
    recognizer: Recognizer,
    settings: Settings,
    options: Options,
    name: str | None,
    data: bytes,
    method: str,
    stages: int | None,
) -> dict[str, Any]:
    """One image -> the JSON dict of its Explanation (explain.py): occlusion, or with a
    checkpoint on torch a gradient method when asked for (`method` "auto" picks integrated
    gradients there)."""
    method = attribution_method(method, recognizer)
    attribute = None if method == OCCLUSION else _gradient_attribution(recognizer.info["path"], method)
    with _never_a_500(name, "explained"):
        explanation = explain(
            recognizer,
            data,
            attribute=attribute,
            method=method,
            expected_digits=options.digits,
            stages_shown=stages,
            name=name,
            max_bytes=settings.max_bytes,
            max_pixels=settings.max_pixels,
            strict=options.strict,
            constraints=options.constraints if options.constraints.beyond_count else None,
            profile=options.profile,
        )
    return explanation.to_dict()


def recognize_each(
    recognizer: Recognizer, settings: Settings, options: Options, files: list[Upload]
) -> list[dict[str, Any]]:
    """A batch: each file's result; one that cannot be read gets its `error`, the rest still run."""
    out = []
    for name, data in files:
        try:
            out.append(recognize_one(recognizer, settings, options, name, data))
        except DigitrecError as e:
            out.append(Recognition(text="", digits=[], rejected=True, path=name, error=str(e)).to_dict())
    return out


async def in_worker(
    request: Request, fn: Callable[..., Any], *args: Any, large: bool = False
) -> tuple[Any, dict[str, str]]:
    """Run `fn(recognizer, *args)` in a worker thread, or a recognition process when there are
    some: (its result, a Server-Timing header saying how long it waited for a free worker and
    how long it ran), for browsers' developer tools and benchmarks. A recognition process that
    dies raises BrokenProcessPool (503, errors.py). `large`: the request holds an image over
    LARGE_IMAGE_PIXELS; at most `Settings.large_at_once` run at a time, and one that waits past
    `Settings.queue_budget_s` for its turn is a 503 (ServiceBusyError)."""
    state = request.app.state
    start = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        if large:
            settings: Settings = state.settings
            with anyio.move_on_after(settings.queue_budget_s) as waiting:
                await state.large_gate.acquire()
            if waiting.cancelled_caught:
                raise ServiceBusyError(
                    f"the server is busy reading other large images; send it again later, or send it under "
                    f"{LARGE_IMAGE_PIXELS:,} pixels"
                )
            stack.callback(state.large_gate.release)
        if state.pool is not None:
            result, ran = await state.pool.run(fn, *args)
        else:
            run = partial(timed, fn, state.recognizer, *args)
            result, ran = await anyio.to_thread.run_sync(run, limiter=state.limiter)
    waited = time.perf_counter() - start - ran
    return result, {"Server-Timing": f"queue;dur={1000 * waited:.2f}, recognize;dur={1000 * ran:.2f}"}


def is_large(data: bytes) -> bool:
    """Whether an upload's header states more than LARGE_IMAGE_PIXELS pixels."""
    return (header_pixels(data) or 0) > LARGE_IMAGE_PIXELS


# --- the endpoints ---------------------------------------------------------------------------------


def _binary_body(field_name: str, *, raw: bool, max_files: int | None = None) -> dict[str, Any]:
    """The OpenAPI requestBody of the upload endpoints (they parse the body themselves)."""
    binary = {"type": "string", "format": "binary"}
    prop = binary if max_files is None else {"type": "array", "items": binary, "minItems": 1, "maxItems": max_files}
    content: dict[str, Any] = {
        MULTIPART: {"schema": {"type": "object", "properties": {field_name: prop}, "required": [field_name]}}
    }
    if raw:
        content.update({t: {"schema": binary} for t in (*IMAGE_TYPES, *RAW_TYPES)})
    return {"requestBody": {"required": True, "content": content}}


def api_router(settings: Settings) -> APIRouter:
    """The API's endpoints; `settings` fills in the limits their OpenAPI documentation states."""
    router = APIRouter()

    @router.post(
        "/api/v1/recognize",
        response_model=None,
        tags=["recognition"],
        responses={200: {"model": RecognitionOut}, **ERROR_RESPONSES},
        openapi_extra=_binary_body("file", raw=True),
    )
    async def recognize(request: Request, options: RequestOptions, settings: AppSettings) -> JSONResponse:
        """Read the digits in one image: a multipart field `file`, or the raw bytes with an image
        Content-Type. The same JSON as `digitrec predict --json`."""
        name, data = await single_upload(request, settings)
        result, timing = await in_worker(request, recognize_one, settings, options, name, data, large=is_large(data))
        return JSONResponse(result, headers=timing)

    @router.post(
        "/api/v1/recognize/batch",
        response_model=None,
        tags=["recognition"],
        responses={200: {"model": BatchOut}, **ERROR_RESPONSES},
        openapi_extra=_binary_body("files", raw=False, max_files=settings.max_batch_files),
        description=f"Read up to {settings.max_batch_files} images sent as multipart fields `files`; each "
        "gets its own result, and one that cannot be read gets an `error` while the others "
        "still succeed.",
    )
    async def recognize_batch(request: Request, options: RequestOptions, settings: AppSettings) -> JSONResponse:
        files = await batch_uploads(request, settings)
        large = any(is_large(data) for _, data in files)
        results, timing = await in_worker(request, recognize_each, settings, options, files, large=large)
        return JSONResponse({"count": len(results), "results": results}, headers=timing)

    @router.post(
        "/api/v1/explain",
        response_model=None,
        tags=["recognition"],
        responses={200: {"model": ExplanationOut}, **ERROR_RESPONSES},
        openapi_extra=_binary_body("file", raw=True),
    )
    async def explain_image(
        request: Request,
        options: RequestOptions,
        settings: AppSettings,
        method: Annotated[
            Literal["auto", "occlusion", "integrated-gradients", "grad-cam"],
            Query(
                description="the attribution: occlusion works on any model; the gradient methods need a "
                "checkpoint served on torch (auto: integrated-gradients there, else occlusion)"
            ),
        ] = "auto",
        stages: Annotated[
            int | None,
            Query(ge=0, le=MAX_STAGES_SHOWN, description="convolutions whose feature maps are sent (default: all)"),
        ] = None,
    ) -> JSONResponse:
        """What the network sees in one image (sent as to /api/v1/recognize): for each digit its
        28x28 input, an attribution map over it (which pixels raised or lowered the digit's
        score) and the most active feature maps of each convolution."""
        name, data = await single_upload(request, settings)
        result, timing = await in_worker(
            request, explain_one, settings, options, name, data, method, stages, large=is_large(data)
        )
        return JSONResponse(result, headers=timing)

    @router.get("/api/v1/model", response_model=ModelOut, tags=["service"])
    async def model(request: Request, settings: AppSettings) -> dict[str, Any]:
        """The model being served: architecture, test accuracy, size, versions; and the limits."""
        info = dict(request.app.state.recognizer.info)
        info["file"] = Path(info.pop("path")).name  # the server's folders are nobody's business
        return {
            **info,
            "limits": settings.limits(),
            "checksums": list(CHECKSUMS),
            "lexicons": sorted(settings.lexicons),
        }

    @router.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz(request: Request) -> dict[str, str]:
        """Ready: the model is loaded. "degraded" while a recognition process that died is
        started again (the others still answer)."""
        pool = request.app.state.pool
        status = "degraded" if pool is not None and pool.degraded else "ok"
        return {"status": status, "model": request.app.state.recognizer.info["architecture"]}

    return router
