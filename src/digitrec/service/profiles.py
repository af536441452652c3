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

from fastapi import Depends, Header, Query, Request

from ..errors import DigitrecError
from ..recognition.constraints import Constraints
from ..recognition.profile import Profile
from ..recognition.recognizer import Recognizer
from ..store.profiles import PROFILE_NAME, ProfileCache, ProfileInfo, ProfileNotFoundError, ProfileStore
from ..store.schema import PROFILE_ID_LENGTH
from .errors import AccessDeniedError
from .settings import Settings

__all__ = ["Caller", "Profiles", "RequestCaller", "RequestProfile", "request_profile"]


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


def profiles_of(request: Request) -> Profiles:
    profiles: Profiles = request.app.state.profiles
    return profiles


def checked_id(profile: str) -> str:
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
        return profiles_of(request).cache.get(checked_id(profile))
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


def may_change(info: ProfileInfo, who: Caller) -> None:
    if not (info.issued or who.admin):
        raise AccessDeniedError(
            f"profile {info.id} was made with the CLI; only the admin token may change it over HTTP"
        )


def need_admin(request: Request, who: Caller) -> None:
    if who.admin:
        return
    if not request.app.state.settings.admin_token:
        raise AccessDeniedError("this server has no admin token; start it with --admin-token or $DIGITREC_ADMIN_TOKEN")
    raise AccessDeniedError("this needs the admin token: send `Authorization: Bearer TOKEN`")


def correct_with(
    profiles: Profiles,
    who: Caller,
    profile: str | None,
    digit: int,
    position: int | None,
    data: bytes,
    name: str | None,
    *,
    digits: int | None,
    constraints: Constraints,
    adapted: Profile | None,
) -> dict[str, Any]:
    """Read the image as /api/v1/recognize would with the same options (`digits`, `constraints`,
    the profile `adapted`): the digit at `position` of its reading, or without one the image as
    one digit; store that piece as a sample of `digit` in `profile` (a new issued one if None)."""
    store = profiles.store
    if profile is not None:
        may_change(store.info(checked_id(profile)), who)
    settings = profiles.settings
    result = profiles.recognizer.recognize(
        data,
        expected_digits=1 if position is None else digits,
        name=name,
        max_bytes=settings.max_bytes,
        max_pixels=settings.max_pixels,
        constraints=constraints if position is not None and constraints.beyond_count else None,
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
