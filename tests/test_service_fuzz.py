"""Property-based fuzzing of the HTTP API: never a 5xx, every answer as /openapi.json documents.

Try: `.venv/bin/pytest tests/test_service_fuzz.py -q`.

Two sources of requests: schemathesis generates them from the OpenAPI document (valid and
invalid options, bodies, content types), and hypothesis damages a real canvas PNG (flipped,
cut, inserted bytes) so that the decoder and the preprocessing, not only the first magic-byte
check, meet broken input. Both are bounded to run in seconds.
"""

from __future__ import annotations

import io
import logging

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from digitrec.service import Settings, create_app

pytestmark = pytest.mark.timeout(120)
LIMITS = Settings(max_bytes=100_000, max_pixels=2_000_000, max_batch_files=4, max_batch_bytes=400_000)
# Not `positive_data_acceptance`: the schema can only say "binary"; random bytes are rarely an
# image, and a 400 is the right answer to them.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


# 413 is how this API refuses a batch over its file limit (the schema's maxItems): a rejection.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 404, 405, 406, 413, 415, 422]}}}
)
# Building the app loads nothing (the model loads in its lifespan, which schemathesis runs).
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(LIMITS), config=CONFIG)


@schemathesis.serializer("image/bmp", "image/tiff")
def _raw_bytes(ctx, value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@schema.parametrize()
@FUZZ
def test_api_matches_its_schema_and_never_fails(case, caplog):
    with caplog.at_level(logging.ERROR, logger="digitrec.service"):
        case.call_and_validate(checks=CHECKS)
    assert not caplog.records, caplog.text  # an unexpected exception, even when answered with a 4xx


def _canvas_png() -> bytes:
    img = Image.new("RGB", (140, 140), "white")
    ImageDraw.Draw(img).line([(40, 28), (100, 28), (60, 118)], fill="black", width=10)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PNG = _canvas_png()


@st.composite
def damaged(draw) -> bytes:
    data = bytearray(PNG)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        if not data:
            break
    return bytes(data)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(LIMITS)) as c:
        yield c


@FUZZ
@given(
    body=damaged(),
    digits=st.none() | st.integers(-2, 25),
    top_k=st.integers(-1, 12),
    reject=st.floats(-0.5, 1.5),
    content_type=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream"]),
    strict=st.booleans(),
)
def test_damaged_images_get_a_clear_answer(client, body, digits, top_k, reject, content_type, strict):
    params = {"top_k": top_k, "reject_below": reject, "images": "true", "strict": str(strict).lower()}
    if digits is not None:
        params["digits"] = digits
    r = client.post("/api/v1/recognize", params=params, content=body, headers={"content-type": content_type})
    assert r.status_code in (200, 400, 413, 422), r.text
    body = r.json()
    if r.status_code == 200:
        assert set(body) == {"path", "text", "digits", "rejected", "reason", "error"}
        assert body["rejected"] == (body["reason"] in ("no ink", "not a digit", "low confidence"))
        assert all("not_digit" in d for d in body["digits"])
        assert all(len(d["probabilities"]) == 10 and d["image"].startswith("data:image/png") for d in body["digits"])
    else:
        assert isinstance(body["detail"], str) and body["detail"]
        assert "could not be processed" not in body["detail"]  # the catch-all for bugs
