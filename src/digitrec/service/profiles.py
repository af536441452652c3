"""Personal profiles over HTTP: corrections teach a profile, recognition reads with one.

Try: `digitrec serve`, then
`curl -F file=@seven.png 'http://127.0.0.1:8000/api/v1/corrections?digit=7'` (answers a new profile's
identifier), then `curl -F file=@seven.png 'http://127.0.0.1:8000/api/v1/recognize?profile=ID'`.

A profile made here gets an identifier of 128 random bits: whoever holds it may read with it,
correct it and delete it, and nobody can list or guess it. Profiles named from the CLI can be
read with but changed only with the admin token (`digitrec serve --admin-token`, or
$DIGITREC_ADMIN_TOKEN), which listing and deleting all profiles need too. The store is opened
when first needed (`--store`, $DIGITREC_STORE, or the default SQLite file); every server on one
database sees every change on its next request, since each read compares the profile's revision.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from ..constants import NUM_CLASSES
from ..errors import DigitrecError
from ..recognition.profile import Profile
from ..recognition.recognizer import Recognizer
from ..store.profiles import PROFILE_NAME, ProfileCache, ProfileInfo, ProfileNotFoundError, ProfileStore
from ..store.schema import PROFILE_ID_LENGTH
from .errors import ERROR_RESPONSES, AccessDeniedError
from .schemas import CorrectionOut, ProfileOut
from .settings import Settings
from .uploads import IMAGE_TYPES, MULTIPART, RAW_TYPES, single_upload

__all__ = ["Profiles", "profile_router", "request_profile"]


class Profiles:
    """The server's store and its cache of adapted profiles, opened on first use (thread-safe)."""

    def __init__(self, settings: Settings, recognizer: Recognizer) -> None:
        self.settings, self.recognizer = settings, recognizer
        self._lock = threading.Lock()
        self._cache: ProfileCache | None = None

    @property
    def cache(self) -> ProfileCache:
        with self._lock:
            if self._cache is None:
                self._cache = ProfileCache(ProfileStore.open(self.settings.store), self.recognizer)
            return self._cache

    @property
    def store(self) -> ProfileStore:
        return self.cache.store


def _profiles(request: Request) -> Profiles:
    profiles: Profiles = request.app.state.profiles
    return profiles


def _checked_id(profile: str) -> str:
    """A profile identifier from a request: one the store could hold, else a 404 without a query."""
    if not PROFILE_NAME.fullmatch(profile):
        raise ProfileNotFoundError("no such profile; POST /api/v1/corrections without one makes a new profile")
    return profile


ProfileQuery = Annotated[
    str | None,
    Query(
        max_length=PROFILE_ID_LENGTH,
        description="read with this personal profile (an identifier /api/v1/corrections or /api/v1/profiles gave)",
    ),
]


def request_profile(request: Request, profile: ProfileQuery = None) -> Profile | None:
    """The adapted profile a recognition request names (a sync dependency: FastAPI runs it in a
    thread, as the store's query and a first adaptation need)."""
    if profile is None:
        return None
    try:
        return _profiles(request).cache.get(_checked_id(profile))
    except ProfileNotFoundError:
        raise ProfileNotFoundError(f"no profile {profile}; it may have been deleted: read without it") from None


RequestProfile = Annotated[Profile | None, Depends(request_profile)]


@dataclass(frozen=True)
class Caller:
    """Who is asking: with the admin token, or not."""

    admin: bool


def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """The caller: admin when `Authorization: Bearer TOKEN` carries the server's admin token."""
    token: str | None = request.app.state.settings.admin_token
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not token or not given:
        return Caller(admin=False)
    return Caller(admin=secrets.compare_digest(given.encode(), token.encode()))


RequestCaller = Annotated[Caller, Depends(caller)]


def _may_change(info: ProfileInfo, who: Caller) -> None:
    if not (info.issued or who.admin):
        raise AccessDeniedError(
            f"profile {info.id} was made with the CLI; only the admin token may change it over HTTP"
        )


def _need_admin(request: Request, who: Caller) -> None:
    if who.admin:
        return
    if not request.app.state.settings.admin_token:
        raise AccessDeniedError("this server has no admin token; start it with --admin-token or $DIGITREC_ADMIN_TOKEN")
    raise AccessDeniedError("this needs the admin token: send `Authorization: Bearer TOKEN`")


def _correct(
    profiles: Profiles,
    who: Caller,
    profile: str | None,
    digit: int,
    position: int | None,
    data: bytes,
    name: str | None,
) -> dict[str, Any]:
    """Read the image (the digit at `position` of its reading, or the image as one digit), store
    that piece as a sample of `digit` in `profile` (a new issued one if None)."""
    store = profiles.store
    if profile is not None:
        _may_change(store.info(_checked_id(profile)), who)
    adapted = profiles.cache.get(profile) if profile is not None else None
    settings = profiles.settings
    result = profiles.recognizer.recognize(
        data,
        expected_digits=1 if position is None else None,
        name=name,
        max_bytes=settings.max_bytes,
        max_pixels=settings.max_pixels,
        profile=adapted,
    )
    index = 0 if position is None else position
    if not result.digits:
        raise DigitrecError("no digit-like ink in this image; nothing to learn from it")
    if index >= len(result.digits):
        raise DigitrecError(f"position {index}: the image reads as {len(result.digits)} digits ({result.text!r})")
    piece = result.digits[index]
    profile = profile if profile is not None else store.create()
    info = store.add_samples(profile, piece.image[None], [digit])
    return {**info.to_dict(), "digit": str(digit), "read_as": piece.digit}


def profile_router() -> APIRouter:
    router = APIRouter(tags=["profiles"])

    @router.post(
        "/api/v1/corrections",
        response_model=CorrectionOut,
        responses={**ERROR_RESPONSES, 403: {"description": "a CLI profile, without the admin token"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    MULTIPART: {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    **{t: {"schema": {"type": "string", "format": "binary"}} for t in (*IMAGE_TYPES, *RAW_TYPES)},
                },
            }
        },
    )
    async def correct(
        request: Request,
        who: RequestCaller,
        digit: Annotated[int, Query(ge=0, le=NUM_CLASSES - 1, description="what the image really shows")],
        profile: Annotated[
            str | None,
            Query(max_length=PROFILE_ID_LENGTH, description="the profile to teach; none: a new one is made"),
        ] = None,
        position: Annotated[
            int | None,
            Query(ge=0, le=100, description="which digit of the image's reading (0: the first); none: one digit"),
        ] = None,
    ) -> dict[str, Any]:
        """Teach a profile one sample: an image (as /api/v1/recognize takes it) and the digit it
        really is. The next recognition with the profile, on any server sharing the store, uses
        it. Answers the profile's identifier (a new one when none was given) and its samples."""
        name, data = await single_upload(request, request.app.state.settings)
        return await anyio.to_thread.run_sync(
            _correct, _profiles(request), who, profile, digit, position, data, name, limiter=request.app.state.limiter
        )

    @router.post("/api/v1/profiles", response_model=ProfileOut, status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        """A new empty profile with an unguessable identifier."""
        store = await anyio.to_thread.run_sync(lambda: _profiles(request).store)
        profile = await anyio.to_thread.run_sync(store.create)
        return (await anyio.to_thread.run_sync(store.info, profile)).to_dict()

    @router.get("/api/v1/profiles/{profile}", response_model=ProfileOut, responses={404: ERROR_RESPONSES[404]})
    async def show(request: Request, profile: str) -> dict[str, Any]:
        """A profile's samples per digit and when it changed."""
        store = await anyio.to_thread.run_sync(lambda: _profiles(request).store)
        return (await anyio.to_thread.run_sync(store.info, _checked_id(profile))).to_dict()

    @router.delete("/api/v1/profiles/{profile}", status_code=204, responses={404: ERROR_RESPONSES[404]})
    async def delete(request: Request, profile: str, who: RequestCaller) -> Response:
        """Delete a profile and every sample of it."""
        store = await anyio.to_thread.run_sync(lambda: _profiles(request).store)

        def remove() -> None:
            _may_change(store.info(_checked_id(profile)), who)
            store.delete(profile)

        await anyio.to_thread.run_sync(remove)
        return Response(status_code=204)

    @router.get("/api/v1/profiles", response_model=list[ProfileOut], responses={403: {"description": "no admin token"}})
    async def list_all(request: Request, who: RequestCaller) -> list[dict[str, Any]]:
        """Every profile (the admin token only)."""
        _need_admin(request, who)
        store = await anyio.to_thread.run_sync(lambda: _profiles(request).store)
        return [i.to_dict() for i in await anyio.to_thread.run_sync(store.list_profiles)]

    @router.delete("/api/v1/profiles", responses={403: {"description": "no admin token"}})
    async def delete_all(request: Request, who: RequestCaller) -> JSONResponse:
        """Delete every profile and sample (the admin token only)."""
        _need_admin(request, who)
        store = await anyio.to_thread.run_sync(lambda: _profiles(request).store)
        deleted = await anyio.to_thread.run_sync(store.delete_all)
        return JSONResponse({"deleted": deleted})

    return router
