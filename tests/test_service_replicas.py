"""Two `digitrec serve` processes on one PostgreSQL: what one learns, the other reads with.

Try: `DIGITREC_TEST_POSTGRES=postgresql://$USER@/postgres?host=/var/run/postgresql .venv/bin/pytest tests/test_service_replicas.py -q`.

Real processes on loopback, a real database (skipped without one here, failed on CI).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")  # the `serve` extra

from helpers import postgres_database  # noqa: E402
from test_service import ONE, SEVEN, canvas_png, real_server  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "replica-admin-token-0123456789"


@contextlib.contextmanager
def serving(store: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`digitrec serve --store STORE` with the admin token, once it answers: (the process, its
    base URL)."""
    with real_server("--store", store, env={**os.environ, "DIGITREC_ADMIN_TOKEN": TOKEN}) as (server, port):
        yield server, f"http://127.0.0.1:{port}"


def read(base: str, png: bytes, profile: str | None = None) -> str:
    params = {"profile": profile} if profile else {}
    answer = httpx.post(
        f"{base}/api/v1/recognize", params=params, content=png, headers={"content-type": "image/png"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["text"])


def correct(base: str, png: bytes, digit: int, profile: str | None = None) -> dict:
    params = {"digit": digit, **({"profile": profile} if profile else {})}
    answer = httpx.post(f"{base}/api/v1/corrections", params=params, files={"file": ("d.png", png)}, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_profile_made_and_corrected_through_one_replica_is_used_by_the_other_and_survives_a_kill():
    seven, one = canvas_png(SEVEN), canvas_png(ONE)
    with postgres_database() as url, serving(url) as (a, base_a), serving(url) as (_, base_b):
        assert read(base_a, seven) == read(base_b, seven) == "7"
        profile = correct(base_a, seven, 1)["profile"]  # made on A
        assert read(base_b, seven, profile) == "1"  # B reads with it on its next request
        shown = httpx.get(f"{base_b}/api/v1/profiles/{profile}").json()
        assert shown["samples"] == 1 and shown["per_digit"]["1"] == 1

        # A correction acknowledged by B, then A killed without a chance to clean up: nothing is lost.
        assert read(base_a, one, profile) == "1"
        assert correct(base_b, one, 7, profile)["samples"] == 2
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
        assert read(base_b, one, profile) == "7"
        assert read(base_b, one) == "1"  # without the profile, the model as shipped
        listed = httpx.get(f"{base_b}/api/v1/profiles", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert [p["profile"] for p in listed] == [profile] and listed[0]["samples"] == 2

        # A replica started again on the same store sees everything the others acknowledged.
        with serving(url) as (_, base_c):
            assert read(base_c, seven, profile) == "1" and read(base_c, one, profile) == "7"
            assert httpx.delete(f"{base_c}/api/v1/profiles/{profile}").status_code == 204
        assert httpx.get(f"{base_b}/api/v1/profiles/{profile}").status_code == 404
        assert (
            httpx.post(
                f"{base_b}/api/v1/recognize",
                params={"profile": profile},
                content=seven,
                headers={"content-type": "image/png"},
            ).status_code
            == 404
        )
