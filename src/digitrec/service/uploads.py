"""Reading uploaded images out of a request: a multipart form or raw bytes, never more than the
limits allow (a body over them is refused while it arrives, before it is all read).

Try: `curl -F file=@digit.png http://127.0.0.1:8000/api/v1/recognize` (multipart), or
`curl --data-binary @digit.png -H 'Content-Type: image/png' http://127.0.0.1:8000/api/v1/recognize`.

An input over a limit raises InputTooLargeError (413, errors.py); a wrong content type or a
missing file field is an HTTPException (415, 422).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputTooLargeError
from .settings import MAX_FORM_FIELDS, MAX_NAME_CHARS, MULTIPART_OVERHEAD, Settings

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")
RAW_TYPES = ("application/octet-stream",)  # raw bytes of unstated type: decoding decides
MULTIPART = "multipart/form-data"

Upload = tuple[str | None, bytes]  # (the file name, when it had one; the bytes)


def too_large(size: int, limit: int, what: str) -> InputTooLargeError:
    return InputTooLargeError(
        f"{what} is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB — resize or compress the image first"
    )


def limited(request: Request, limit: int, what: str) -> Request:
    """The same request, refusing a body over `limit` bytes before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit, what)
    receive = request.receive
    received = 0

    async def counting_receive() -> Any:  # also covers chunked bodies, which declare no length
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large(received, limit, what)
        return message

    return Request(request.scope, counting_receive)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def unsupported(media_type: str, raw: bool) -> HTTPException:
    accepted = MULTIPART + (" or raw bytes with an image/* Content-Type" if raw else "")
    return HTTPException(415, f"Content-Type {media_type or '(none)'} is not accepted; send {accepted}")


async def form_files(request: Request, limit: int, max_files: int, what: str, too_many: Exception) -> list[Upload]:
    """Every file part of a multipart body, in order; `too_many` is raised for more than `max_files`."""
    try:
        async with limited(request, limit, what).form(max_files=max_files, max_fields=MAX_FORM_FIELDS) as form:
            return [(_name(v.filename), await v.read()) for _, v in form.multi_items() if isinstance(v, UploadFile)]
    except StarletteHTTPException as e:  # the multipart parser's own 400s
        if e.status_code == 400 and "Too many files" in str(e.detail):
            raise too_many from None
        raise


def _name(filename: str | None) -> str | None:
    return filename[:MAX_NAME_CHARS] if filename else None


async def single_upload(request: Request, settings: Settings) -> Upload:
    """The one image of a request to /api/v1/recognize: a multipart field, or the raw body."""
    kind = media_type(request)
    if kind == MULTIPART:
        files = await form_files(
            request,
            settings.max_bytes + MULTIPART_OVERHEAD,
            1,
            "the upload",
            HTTPException(422, "one image per request here; send several to /api/v1/recognize/batch"),
        )
        if not files:
            raise HTTPException(422, "no image: send it as a multipart file field named 'file'")
        name, data = files[0]
    elif kind.startswith("image/") or kind in RAW_TYPES:
        name, data = None, await limited(request, settings.max_bytes, "the upload").body()
    else:
        raise unsupported(kind, raw=True)
    if len(data) > settings.max_bytes:
        raise too_large(len(data), settings.max_bytes, "the image")
    return name, data


async def batch_uploads(request: Request, settings: Settings) -> list[Upload]:
    """The images of a request to /api/v1/recognize/batch: multipart fields, at least one."""
    kind = media_type(request)
    if kind != MULTIPART:
        raise unsupported(kind, raw=False)
    files = await form_files(
        request,
        settings.max_batch_bytes,
        settings.max_batch_files,
        "the batch",
        InputTooLargeError(f"too many files: at most {settings.max_batch_files} per batch"),
    )
    if not files:
        raise HTTPException(422, f"no images: send 1 to {settings.max_batch_files} multipart file fields named 'files'")
    return files
