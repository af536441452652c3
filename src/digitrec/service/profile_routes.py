"""The profile endpoints: corrections, and a profile's creation, view and deletion; listing and
clearing all of them with the admin token. What they rely on (the store, who may do what) is in
profiles.py.

Try: `digitrec serve`, then
`curl -F file=@seven.png 'http://127.0.0.1:8000/api/v1/corrections?digit=7'`.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from ..constants import NUM_CLASSES
from ..store.schema import PROFILE_ID_LENGTH
from .errors import ERROR_RESPONSES
from .profiles import RequestCaller, checked_id, correct_with, may_change, need_admin, profiles_of
from .routes import Options, recognition_options
from .schemas import CorrectionOut, ProfileOut
from .uploads import IMAGE_TYPES, MULTIPART, RAW_TYPES, single_upload

__all__ = ["profile_router"]


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
        options: Annotated[Options, Depends(recognition_options)],
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
        really is; with `position`, the recognition options too, so that the image is read (and
        cut) as it was when that digit was shown. The next recognition with the profile, on any
        server sharing the store, uses it. Answers the profile's identifier (a new one when none
        was given) and its samples."""
        name, data = await single_upload(request, request.app.state.settings)
        run = partial(
            correct_with,
            profiles_of(request),
            who,
            profile,
            digit,
            position,
            data,
            name,
            digits=options.digits,
            constraints=options.constraints,
            adapted=options.profile,
        )
        return await anyio.to_thread.run_sync(run, limiter=request.app.state.limiter)

    @router.post("/api/v1/profiles", response_model=ProfileOut, status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        """A new empty profile with an unguessable identifier."""
        store = await anyio.to_thread.run_sync(lambda: profiles_of(request).store)
        profile = await anyio.to_thread.run_sync(store.create)
        return (await anyio.to_thread.run_sync(store.info, profile)).to_dict()

    @router.get("/api/v1/profiles/{profile}", response_model=ProfileOut, responses={404: ERROR_RESPONSES[404]})
    async def show(request: Request, profile: str) -> dict[str, Any]:
        """A profile's samples per digit and when it changed."""
        store = await anyio.to_thread.run_sync(lambda: profiles_of(request).store)
        return (await anyio.to_thread.run_sync(store.info, checked_id(profile))).to_dict()

    @router.delete("/api/v1/profiles/{profile}", status_code=204, responses={404: ERROR_RESPONSES[404]})
    async def delete(request: Request, profile: str, who: RequestCaller) -> Response:
        """Delete a profile and every sample of it."""
        store = await anyio.to_thread.run_sync(lambda: profiles_of(request).store)

        def remove() -> None:
            may_change(store.info(checked_id(profile)), who)
            store.delete(profile)

        await anyio.to_thread.run_sync(remove)
        return Response(status_code=204)

    @router.get("/api/v1/profiles", response_model=list[ProfileOut], responses={403: {"description": "no admin token"}})
    async def list_all(request: Request, who: RequestCaller) -> list[dict[str, Any]]:
        """Every profile (the admin token only)."""
        need_admin(request, who)
        store = await anyio.to_thread.run_sync(lambda: profiles_of(request).store)
        return [i.to_dict() for i in await anyio.to_thread.run_sync(store.list_profiles)]

    @router.delete("/api/v1/profiles", responses={403: {"description": "no admin token"}})
    async def delete_all(request: Request, who: RequestCaller) -> JSONResponse:
        """Delete every profile and sample (the admin token only)."""
        need_admin(request, who)
        store = await anyio.to_thread.run_sync(lambda: profiles_of(request).store)
        deleted = await anyio.to_thread.run_sync(store.delete_all)
        return JSONResponse({"deleted": deleted})

    return router
