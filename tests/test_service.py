"""The HTTP API through FastAPI's TestClient: every endpoint, every error status, the page's assets.

Try: `.venv/bin/pytest tests/test_service.py -q`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")  # the `serve` extra
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from digitrec import cli
from digitrec.errors import DigitrecError, InputTooLargeError
from digitrec.recognition.recognizer import Recognizer
from digitrec.service import Settings, create_app
from digitrec.service.errors import status_for
from digitrec.service.settings import MAX_BATCH_FILES

PEN = 20  # stroke width on a 280-pixel-high canvas, as the page draws it

Stroke = list[tuple[float, float]]
ONE: list[Stroke] = [[(140, 45), (140, 235)]]
SEVEN: list[Stroke] = [[(80, 55), (200, 55), (120, 235)]]


def canvas_png(strokes: list[Stroke], size: tuple[int, int] = (280, 280), ellipses=()) -> bytes:
    """Dark strokes on white, like a canvas export of the drawing page."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for s in strokes:
        draw.line(s, fill="black", width=PEN, joint="curve")
    for box in ellipses:
        draw.ellipse(box, outline="black", width=PEN)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def blank_png(size: tuple[int, int], mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 255).save(buf, format="PNG")
    return buf.getvalue()


def number_png() -> bytes:
    """ "107" on a 560x280 canvas with clear gaps."""
    return canvas_png(
        [[(90, 45), (90, 235)], [(390, 55), (510, 55), (430, 235)]], (560, 280), ellipses=[(185, 45, 295, 235)]
    )


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(max_bytes=200_000, max_pixels=4_000_000))) as c:
        yield c


@pytest.fixture(scope="module")
def tiny_client():
    """Limits small enough to trip with a normal canvas PNG."""
    with TestClient(create_app(Settings(max_bytes=500, max_batch_bytes=2_000, max_batch_files=3))) as c:
        yield c


def post_raw(client, data: bytes, query: str = "", content_type: str = "image/png"):
    return client.post(f"/api/v1/recognize{query}", content=data, headers={"content-type": content_type})


def assert_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for w in words:
        assert w in detail, detail
    return detail


# ---- recognise -----------------------------------------------------------------------------------


def test_multipart_upload_reads_a_drawn_one(client):
    r = client.post("/api/v1/recognize", files={"file": ("one.png", canvas_png(ONE), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "1" and body["path"] == "one.png" and not body["rejected"] and body["error"] is None
    (d,) = body["digits"]
    assert d["digit"] == "1" and d["confidence"] > 0.8 and not d["flagged"]
    assert len(d["probabilities"]) == 10 and abs(sum(d["probabilities"]) - 1) < 1e-3
    x0, y0, x1, y1 = d["box"]  # canvas pixels, around the stroke
    assert x0 <= 140 <= x1 and y0 <= 50 and y1 >= 230
    assert [t["digit"] for t in d["top_k"]][0] == "1" and len(d["top_k"]) == 3
    assert "image" not in d


def test_raw_bytes_with_images_gives_the_28x28_png(client):
    r = post_raw(client, canvas_png(SEVEN), "?images=true")
    assert r.status_code == 200, r.text
    (d,) = r.json()["digits"]
    assert r.json()["text"] == "7" and r.json()["path"] is None
    prefix = "data:image/png;base64,"
    assert d["image"].startswith(prefix)
    img = Image.open(io.BytesIO(base64.b64decode(d["image"][len(prefix) :])))
    assert img.size == (28, 28)


def test_answer_is_the_recognizers_json(client):
    data = canvas_png(SEVEN)
    expected = Recognizer.load().recognize(data, name="seven.png").to_dict()
    r = client.post("/api/v1/recognize", files={"file": ("seven.png", data, "image/png")})
    assert r.json() == expected


def test_a_number_is_read_digit_by_digit_with_boxes(client):
    r = post_raw(client, number_png())
    body = r.json()
    assert body["text"] == "107", body
    lefts = [d["box"][0] for d in body["digits"]]
    assert lefts == sorted(lefts) and lefts[0] < 100 < lefts[1] < 300 < lefts[2]


def test_options_are_applied(client):
    body = post_raw(client, number_png(), "?digits=3&top_k=5").json()
    assert len(body["digits"]) == 3 and all(len(d["top_k"]) == 5 for d in body["digits"])
    body = post_raw(client, canvas_png(ONE), "?reject_below=1.0").json()  # nothing is that sure
    assert body["rejected"] and body["text"] == "" and body["digits"][0]["flagged"]


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", "image/png; charset=binary"])
def test_raw_bytes_with_any_image_type_are_decoded_by_content(client, content_type):
    # The bytes decide the format: browsers label files by their name, not their content.
    assert post_raw(client, canvas_png(ONE), content_type=content_type).json()["text"] == "1"


def test_blank_canvas_is_no_digit_not_an_error(client):
    r = post_raw(client, blank_png((280, 280)))
    assert r.status_code == 200
    assert r.json() == {"path": None, "text": "", "digits": [], "rejected": True, "reason": "no ink", "error": None}


# ---- ink that is no digit: a fake 12-output model -------------------------------------------------

NARROW = 3  # columns of ink in the 28x28 image: a 1 is no wider; the fake model calls wider ink no digit
ONE_SEVEN = [[(90, 45), (90, 235)], [(390, 55), (510, 55), (430, 235)]]  # "17" on a 560x280 canvas


def ones_or_no_digit(x):
    """A fake 12-output model: narrow ink is a sure 1, any other ink is no digit at all."""
    import numpy as np

    logits = np.zeros((len(x), 12), np.float32)
    for i, image in enumerate(x[:, 0] > x[:, 0].min()):
        logits[i, 1 if image.any(0).sum() <= NARROW else 11] = 20
    return logits


@pytest.fixture(scope="module")
def odd_client(tmp_path_factory):
    """The app with its recognizer over `ones_or_no_digit` instead of the shipped model."""
    from digitrec.recognition.backends import Backend

    path = tmp_path_factory.mktemp("fake") / "fake.onnx"
    path.write_bytes(b"")
    with TestClient(create_app(Settings())) as c:
        c.app.state.recognizer = Recognizer(Backend(run=ones_or_no_digit, fixed_batch=None, metadata={}, info={}), path)
        yield c


def test_ink_that_is_no_digit_is_rejected_as_not_a_digit(odd_client):
    body = post_raw(odd_client, canvas_png(SEVEN)).json()
    assert body["rejected"] and body["reason"] == "not a digit" and body["text"] == ""
    assert [d["digit"] for d in body["digits"]] == ["?"] and body["digits"][0]["not_digit"] > 0.99


def test_a_number_reads_question_marks_for_pieces_that_are_no_digit_and_strict_rejects_it(odd_client):
    number = canvas_png(ONE_SEVEN, (560, 280))
    body = post_raw(odd_client, number).json()
    assert body["text"] == "1?" and not body["rejected"] and body["reason"] is None
    assert [d["flagged"] for d in body["digits"]] == [False, True]
    assert body["digits"][0]["not_digit"] < 0.01 and body["digits"][1]["not_digit"] > 0.99
    strict = post_raw(odd_client, number, "?strict=true").json()
    assert strict["rejected"] and strict["reason"] == "not a digit" and strict["text"] == ""
    files = [("files", ("n.png", number, "image/png")), ("files", ("one.png", canvas_png(ONE), "image/png"))]
    batch = odd_client.post("/api/v1/recognize/batch?strict=true", files=files).json()["results"]
    assert [(r["text"], r["reason"]) for r in batch] == [("", "not a digit"), ("1", None)]


def test_a_reading_under_reject_below_is_rejected_as_low_confidence(client):
    body = post_raw(client, canvas_png(ONE), "?reject_below=1.0").json()
    assert body["rejected"] and body["reason"] == "low confidence"
    assert body["digits"][0]["not_digit"] < 0.01  # a clear 1: the shipped model says it is a digit


# ---- errors --------------------------------------------------------------------------------------


def test_garbage_is_400(client):
    assert_error(post_raw(client, b"this is not a PNG"), 400, "cannot read")
    r = client.post("/api/v1/recognize", files={"file": ("notes.png", b"\x89PNG\r\n\x1a\n garbage", "image/png")})
    assert_error(r, 400, "notes.png")
    assert_error(post_raw(client, canvas_png(ONE)[:300]), 400)  # truncated
    assert_error(post_raw(client, b""), 400, "empty")


def test_over_the_byte_limit_is_413(tiny_client):
    data = canvas_png(ONE)
    assert len(data) > 500
    assert_error(post_raw(tiny_client, data), 413, "limit")
    assert_error(tiny_client.post("/api/v1/recognize", files={"file": ("one.png", data)}), 413, "limit")

    def chunks():  # no Content-Length: the body is counted as it arrives
        for i in range(0, len(data), 256):
            yield data[i : i + 256]

    assert_error(
        tiny_client.post("/api/v1/recognize", content=chunks(), headers={"content-type": "image/png"}), 413, "limit"
    )


def test_too_many_pixels_is_413(client):
    assert_error(post_raw(client, blank_png((3000, 2000))), 413, "too many pixels", "3000x2000")


def test_the_status_follows_the_exception_type_and_never_its_message():
    assert status_for(InputTooLargeError("a message that names no limit")) == 413
    assert status_for(DigitrecError("too many pixels, too large")) == 400  # the words alone decide nothing

    class Unreadable(DigitrecError):
        pass

    assert status_for(Unreadable("x")) == 400


def test_an_image_over_the_pixel_limit_is_413_because_the_recognizer_raises_input_too_large(monkeypatch):
    seen = {}

    def refuse(*args, **kwargs):  # stands in for the decoder: the limits arrive, the type answers
        seen.update(kwargs)
        raise InputTooLargeError("this image is over a limit")

    with TestClient(create_app(Settings(max_bytes=123_456, max_pixels=7_890))) as c:
        monkeypatch.setattr(c.app.state.recognizer, "recognize", refuse)
        assert_error(post_raw(c, canvas_png(ONE)), 413, "this image is over a limit")
    assert (seen["max_bytes"], seen["max_pixels"]) == (123_456, 7_890)


def test_a_digitrec_error_that_mentions_size_is_still_400(monkeypatch):
    def refuse(*args, **kwargs):
        raise DigitrecError("too many pixels and too large, but only in words")

    with TestClient(create_app()) as c:
        monkeypatch.setattr(c.app.state.recognizer, "recognize", refuse)
        assert_error(post_raw(c, canvas_png(ONE)), 400, "only in words")


def test_wrong_content_type_is_415(client):
    assert_error(post_raw(client, b"1", content_type="text/plain"), 415, "text/plain", "multipart/form-data")
    assert_error(client.post("/api/v1/recognize", content=b"x"), 415, "(none)")
    assert_error(client.post("/api/v1/recognize", data={"file": "not a file"}), 415)  # a urlencoded form


@pytest.mark.parametrize(
    "query, word",
    [
        ("?digits=-1", "digits"),
        ("?digits=0", "digits"),
        ("?digits=99", "digits"),
        ("?digits=two", "digits"),
        ("?top_k=100", "top_k"),
        ("?top_k=0", "top_k"),
        ("?reject_below=2", "reject_below"),
        ("?reject_below=nan", "reject_below"),
        ("?images=maybe", "images"),
    ],
)
def test_bad_options_are_422_naming_the_option(client, query, word):
    r = post_raw(client, canvas_png(ONE), query)
    assert_error(r, 422, word)
    assert r.json()["errors"]


@pytest.fixture(scope="module")
def lexicon_client(tmp_path_factory):
    """A server with a lexicon named "codes" that holds 107 and 707."""
    path = tmp_path_factory.mktemp("lexicons") / "codes.txt"
    path.write_text("707\n107\n")
    with TestClient(create_app(Settings(lexicons={"codes": str(path)}))) as c:
        yield c


def test_constraints_choose_among_valid_readings_and_list_them(lexicon_client):
    body = post_raw(lexicon_client, number_png(), "?pattern=1\\d7&alternatives=2").json()
    assert body["text"] == "107" and not body["rejected"]
    c = body["constrained"]
    assert c["readings"][0]["text"] == "107" and len(c["readings"]) == 3 and c["unconstrained"] == "107"
    assert 0 < c["share"] <= 1 and c["exact"]
    body = post_raw(lexicon_client, number_png(), "?lexicon=codes").json()
    assert body["text"] == "107" and [r["text"] for r in body["constrained"]["readings"]] == ["107", "707"]
    # Only what no valid reading can be is refused; without constraints there is no such key.
    body = post_raw(lexicon_client, number_png(), "?pattern=9\\d\\d").json()
    assert body["rejected"] and body["reason"] == "no valid reading" and body["text"] == ""
    assert body["constrained"]["unconstrained"] == "107"
    assert "constrained" not in post_raw(lexicon_client, number_png(), "?digits=3").json()


@pytest.mark.parametrize(
    "query, words",
    [
        ("?pattern=(", ["not a valid regular expression"]),
        ("?checksum=mod97", ["unknown checksum", "luhn"]),
        ("?lexicon=cities", ["no lexicon named 'cities'", "codes"]),
        ("?alternatives=99", ["alternatives"]),
        ("?pattern=" + "1" * 300, ["pattern"]),
    ],
)
def test_bad_constraints_are_422_saying_what_is_wrong(lexicon_client, query, words):
    assert_error(post_raw(lexicon_client, canvas_png(ONE), query), 422, *words)
    info = lexicon_client.get("/api/v1/model").json()
    assert info["lexicons"] == ["codes"] and info["checksums"] == ["luhn", "verhoeff", "gtin"]


def test_multipart_without_a_file_or_with_two_is_422(client):
    assert_error(client.post("/api/v1/recognize", files={"note": (None, "hello")}), 422, "'file'")
    two = [("file", ("a.png", canvas_png(ONE))), ("file", ("b.png", canvas_png(ONE)))]
    assert_error(client.post("/api/v1/recognize", files=two), 422, "batch")


def test_every_answer_says_nosniff(client):
    for r in (client.get("/"), client.get("/api/v1/model"), post_raw(client, b"junk"), client.get("/nowhere")):
        assert r.headers["x-content-type-options"] == "nosniff", r.url


def test_a_client_that_disconnects_mid_upload_is_one_info_line(client, caplog):
    import anyio

    body = canvas_png(ONE)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/recognize",
        "raw_path": b"/api/v1/recognize",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
        "app": client.app,
    }
    messages = iter([{"type": "http.request", "body": body[:100], "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages, {"type": "http.disconnect"})

    async def send(message):
        pass

    with caplog.at_level(logging.INFO, logger="digitrec.service"):
        anyio.run(client.app, scope, receive, send)
    records = [r for r in caplog.records if r.name.startswith("digitrec")]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("INFO", "the client disconnected during POST /api/v1/recognize")
    ]
    assert not any(r.exc_info for r in caplog.records)


def test_unexpected_failure_is_logged_and_never_a_500(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ValueError("a bug")

    with TestClient(create_app()) as c:
        monkeypatch.setattr(c.app.state.recognizer, "recognize", broken)
        with caplog.at_level(logging.ERROR, logger="digitrec.service"):
            assert_error(post_raw(c, canvas_png(ONE)), 400, "could not be processed")
    assert "a bug" in caplog.text


def test_recognition_runs_off_the_event_loop(monkeypatch):
    with TestClient(create_app()) as c:
        recognize = c.app.state.recognizer.recognize

        def slow(*args, **kwargs):
            time.sleep(1.0)
            return recognize(*args, **kwargs)

        monkeypatch.setattr(c.app.state.recognizer, "recognize", slow)
        worker = threading.Thread(target=post_raw, args=(c, canvas_png(ONE)))
        worker.start()
        time.sleep(0.2)  # the slow request is inside recognize() now
        start = time.perf_counter()
        assert c.get("/healthz").status_code == 200
        assert time.perf_counter() - start < 0.5
        worker.join()


# ---- batch ---------------------------------------------------------------------------------------


def test_batch_reports_each_file_and_a_bad_one_does_not_spoil_the_rest(client):
    files = [
        ("files", ("one.png", canvas_png(ONE), "image/png")),
        ("files", ("bad.png", b"nope", "image/png")),
        ("files", ("seven.png", canvas_png(SEVEN), "image/png")),
    ]
    r = client.post("/api/v1/recognize/batch?top_k=2", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3
    one, bad, seven = body["results"]
    assert (one["path"], one["text"], one["error"]) == ("one.png", "1", None)
    assert (seven["path"], seven["text"], seven["error"]) == ("seven.png", "7", None)
    assert bad["path"] == "bad.png" and "cannot read" in bad["error"] and bad["digits"] == [] and bad["rejected"]
    assert len(one["digits"][0]["top_k"]) == 2


def test_batch_limits(tiny_client):
    small = blank_png((8, 8))
    too_many = [("files", (f"{i}.png", small)) for i in range(4)]
    assert_error(tiny_client.post("/api/v1/recognize/batch", files=too_many), 413, "at most 3")
    big = canvas_png(ONE)  # over the 500-byte per-image limit, under the batch limit
    r = tiny_client.post("/api/v1/recognize/batch", files=[("files", ("big.png", big)), ("files", ("s.png", small))])
    assert r.status_code == 200
    assert "too large" in r.json()["results"][0]["error"] and r.json()["results"][1]["error"] is None
    over = [("files", (f"{i}.png", big)) for i in range(3)]
    assert_error(tiny_client.post("/api/v1/recognize/batch", files=over), 413, "batch")


def test_batch_errors(client):
    assert_error(
        client.post("/api/v1/recognize/batch", content=canvas_png(ONE), headers={"content-type": "image/png"}),
        415,
        "multipart/form-data",
    )
    assert_error(client.post("/api/v1/recognize/batch", files={"note": (None, "x")}), 422, "'files'")
    assert_error(client.post("/api/v1/recognize/batch?top_k=11", files={"files": ("a.png", b"x")}), 422, "top_k")
    assert MAX_BATCH_FILES == 32


# ---- model, health, docs, page ---------------------------------------------------------------------


def test_model_and_health(client):
    info = client.get("/api/v1/model").json()
    assert info["architecture"] and info["file"].endswith(".onnx") and info["file_bytes"] > 0
    assert "/" not in info["file"]  # no server paths
    assert 0.9 < info["test_accuracy"] <= 1 and info["digitrec_version"]
    assert info["limits"]["max_bytes"] == 200_000 and info["limits"]["max_batch_files"] == MAX_BATCH_FILES
    assert client.get("/healthz").json() == {"status": "ok", "model": info["architecture"]}


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/api/v1/recognize"]["post"]
    assert {"multipart/form-data", "image/png"} <= set(post["requestBody"]["content"])
    assert {"200", "400", "413", "415", "422"} <= set(post["responses"])
    assert {p["name"] for p in post["parameters"]} == {
        "digits",
        "top_k",
        "reject_below",
        "images",
        "strict",
        "pattern",
        "checksum",
        "lexicon",
        "alternatives",
        "profile",
    }
    schemas = spec["components"]["schemas"]
    assert "not_digit" in schemas["DigitOut"]["properties"]
    reason = schemas["RecognitionOut"]["properties"]["reason"]
    assert {"no ink", "not a digit", "low confidence", "no valid reading"} <= set(json.dumps(reason).split('"'))
    assert "ratio" in schemas["ConstrainedOut"]["properties"]
    assert "/api/v1/recognize/batch" in spec["paths"] and "/api/v1/model" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_page_uses_only_local_assets(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    elsewhere = re.compile(r"https?://(?!127\.0\.0\.1|localhost)")  # comments name the local server
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/app.js" in refs and "/static/style.css" in refs
    for ref in refs:
        assert ref.startswith("/") or ref.startswith("data:"), f"external reference {ref}"
        if ref.startswith("/static/"):
            asset = client.get(ref)
            assert asset.status_code == 200, ref
            assert not elsewhere.search(asset.text), f"{ref} refers to another site"
    assert not elsewhere.search(html)


# ---- settings and the CLI --------------------------------------------------------------------------


def test_settings_validate_and_round_trip():
    s = Settings(model="m.onnx", max_bytes=123)
    assert Settings.from_json(s.to_json()) == s
    with pytest.raises(DigitrecError, match="max_bytes"):
        Settings(max_bytes=0)
    with pytest.raises(DigitrecError, match="max_pixels"):
        Settings(max_pixels=10**12)


def test_serve_refuses_a_missing_model_with_a_message(capsys):
    assert cli.main(["serve", "--model", "/no/such/model.onnx"]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_serve_runs_one_server_process_with_the_settings(monkeypatch):
    import uvicorn

    from digitrec.service.server import serve

    started = {}

    class Server:  # stands in for uvicorn's: records what it would serve
        def __init__(self, config):
            started["config"] = config

        def run(self):
            pass

    monkeypatch.setattr(uvicorn, "Server", Server)
    serve(Settings(max_bytes=1234, workers=2), port=0)
    assert started["config"].app.state.settings == Settings(max_bytes=1234, workers=2)


def test_recognition_processes_answer_like_threads():
    """`--workers 2`: recognitions run in two processes fed from one queue (service/pool.py)."""
    with TestClient(create_app(Settings(workers=2))) as pooled:
        for _ in range(4):  # more requests than processes
            r = post_raw(pooled, canvas_png(SEVEN))
            assert r.status_code == 200 and r.json()["text"] == "7"
            assert "recognize;dur=" in r.headers["server-timing"]
        # An error raised in a recognition process is the same clear 400.
        assert_error(post_raw(pooled, b"not an image"), 400, "cannot read")
        files = [("files", ("one.png", canvas_png(ONE), "image/png")), ("files", ("bad.png", b"xx", "image/png"))]
        batch = pooled.post("/api/v1/recognize/batch", files=files).json()
        assert batch["results"][0]["text"] == "1" and batch["results"][1]["error"]


@contextlib.contextmanager
def real_server(*options: str, env: dict[str, str] | None = None):
    """`digitrec serve OPTIONS` in a process of its own on a free port of 127.0.0.1, once it
    answers: yields (the process, its port); stopped at the end, killed if it will not stop."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "digitrec", "serve", "--port", str(port), "--no-access-log", *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until the server answers
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if c.recv(100):
                        break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield server, port
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.mark.slow
def test_sigterm_ends_the_server_in_time_though_a_client_trickles_bytes(tmp_path):
    import signal

    from digitrec.service.server import SHUTDOWN_S

    with real_server() as (server, port):
        slow = socket.create_connection(("127.0.0.1", port))
        stop = threading.Event()

        def trickle() -> None:  # an upload that never ends: two bytes a second
            slow.sendall(
                b"POST /api/v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000000\r\n\r\n"
            )
            while not stop.wait(0.5):
                try:
                    slow.sendall(b"x")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(1.5)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=SHUTDOWN_S + 10)
        took = time.monotonic() - start
        stop.set()
        slow.close()
        assert took < SHUTDOWN_S + 2, took


def test_a_request_whose_recognition_process_died_is_a_503_to_retry_and_health_says_degraded():
    from concurrent.futures.process import BrokenProcessPool

    class DeadPool:  # a pool whose process died under this request and is starting again
        degraded = True

        async def run(self, fn, *args):
            raise BrokenProcessPool("a process died")

    with TestClient(create_app(Settings())) as c:
        c.app.state.pool = DeadPool()
        r = post_raw(c, canvas_png(ONE))
        assert (
            r.status_code == 503 and r.headers["retry-after"] == "1" and "send the request again" in r.json()["detail"]
        )
        assert c.get("/healthz").json()["status"] == "degraded"
        c.app.state.pool = None


@pytest.mark.slow
def test_a_recognition_process_killed_mid_request_fails_only_its_own_request():
    import asyncio
    import os
    import signal
    import tempfile
    from concurrent.futures.process import BrokenProcessPool

    from digitrec.service.pool import RecognitionPool
    from helpers import pid_then_sleep

    async def scenario(folder: str) -> None:
        pool = RecognitionPool(None, 1, 2)
        await pool.start()
        try:
            jobs = [asyncio.ensure_future(pool.run(pid_then_sleep, folder, 2.0)) for _ in range(2)]
            for _ in range(200):  # until both processes have taken their request
                if len(os.listdir(folder)) == 2:
                    break
                await asyncio.sleep(0.05)
            victim = int(sorted(os.listdir(folder))[0])
            os.kill(victim, signal.SIGKILL)  # while both requests run
            done, running = await asyncio.wait(jobs, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            assert len(done) == 1 and isinstance(done.pop().exception(), BrokenProcessPool)
            assert pool.degraded  # while the dead process starts again
            first, _ = await asyncio.wait_for(running.pop(), 10)  # the other request was not failed
            assert first != victim
            # The healthy process answers meanwhile, and the dead one comes back.
            assert (await asyncio.wait_for(pool.run(pid_then_sleep, folder, 0.0), 10))[0] != victim
            for _ in range(600):
                if not pool.degraded:
                    break
                await asyncio.sleep(0.05)
            assert not pool.degraded
            pids = {(await pool.run(pid_then_sleep, folder, 0.2))[0] for _ in range(2)}
            assert victim not in pids
        finally:
            pool.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(folder))


def blank_page_png(width: int, height: int) -> bytes:
    """A mostly white page of width x height pixels with one stroke: a small file, many pixels."""
    img = Image.new("L", (width, height), 255)
    ImageDraw.Draw(img).line([(100, 100), (100, height - 100)], fill=0, width=40)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_a_large_image_waits_its_turn_and_past_the_budget_is_a_503_to_retry():
    with TestClient(create_app(Settings(large_at_once=1, queue_budget_s=0.2))) as c:
        large = blank_page_png(3000, 1500)  # 4.5 M pixels: over LARGE_IMAGE_PIXELS
        c.portal.call(c.app.state.large_gate.acquire)  # another large image is being read
        start = time.monotonic()
        r = post_raw(c, large)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
        assert time.monotonic() - start < 5
        assert post_raw(c, canvas_png(ONE)).json()["text"] == "1"  # small images do not wait
        c.portal.call(c.app.state.large_gate.release)
        assert post_raw(c, large).status_code == 200


def test_the_service_refuses_images_over_12_megapixels_by_default_from_the_header():
    with TestClient(create_app(Settings())) as c:
        r = post_raw(c, blank_page_png(39_999, 1000))  # 40 KB, 40 M pixels
        assert_error(r, 413, "too many pixels")


@pytest.mark.slow
def test_a_request_the_http_parser_refuses_is_answered_in_json_too():
    with real_server() as (_, port):
        for request in (
            b"GET /healthz?q=" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a 100 KB query string
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 1_000_000 + b"\r\n\r\n",  # a 1 MB header
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                try:
                    c.sendall(request)
                except OSError:  # the server may answer and close before it is all sent
                    pass
                answer = b""
                while chunk := c.recv(4096):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head, head
            assert "too long" in json.loads(body)["detail"]


def test_the_api_docs_load_nothing_from_elsewhere(client):
    for page_path in ("/docs", "/redoc"):
        page = client.get(page_path)
        assert page.status_code == 200, page_path
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and not [a for a in assets if re.match(r"(https?:)?//", a)], (page_path, assets)
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


@pytest.mark.slow
def test_a_recognition_process_that_dies_idle_fails_no_request():
    import asyncio
    import os
    import signal
    import tempfile

    from digitrec.service.pool import RecognitionPool
    from helpers import pid_then_sleep

    async def scenario(folder: str) -> None:
        pool = RecognitionPool(None, 1, 2)
        await pool.start()
        try:
            pids = {(await pool.run(pid_then_sleep, folder, 0.0))[0] for _ in range(6)}
            os.kill(min(pids), signal.SIGKILL)
            await asyncio.sleep(0.5)  # idle: no request was on it
            start = time.monotonic()
            for _ in range(6):  # none fails, and none waits for the restart
                assert (await asyncio.wait_for(pool.run(pid_then_sleep, folder, 0.0), 10))[0] != min(pids)
            assert time.monotonic() - start < 1.0
        finally:
            pool.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(folder))
