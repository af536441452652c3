"""Personal profiles over HTTP: corrections, reading with a profile, who may see and delete what.

Try: `.venv/bin/pytest tests/test_service_profiles.py -q`.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")  # the `serve` extra
from fastapi.testclient import TestClient  # noqa: E402

from digitrec.service import Settings, create_app  # noqa: E402
from digitrec.store.profiles import ProfileStore  # noqa: E402
from test_service import ONE, SEVEN, canvas_png, number_png  # noqa: E402

TOKEN = "a-token-long-enough-to-count"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "store.sqlite")


@pytest.fixture
def client(store_path):
    with TestClient(create_app(Settings(store=store_path, admin_token=TOKEN))) as c:
        yield c


def correct(client, png: bytes, digit: int, profile: str | None = None, **query):
    params = {"digit": digit, **({"profile": profile} if profile else {}), **query}
    return client.post("/api/v1/corrections", params=params, files={"file": ("d.png", png, "image/png")})


def read(client, png: bytes, profile: str | None = None, **query):
    params = {**({"profile": profile} if profile else {}), **query}
    return client.post("/api/v1/recognize", params=params, content=png, headers={"content-type": "image/png"})


def test_a_first_correction_makes_a_profile_with_an_unguessable_identifier(client):
    answer = correct(client, canvas_png(SEVEN), 1)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["profile"]) == 32 and int(body["profile"], 16) >= 0  # 128 random bits, in hex
    assert body["issued"] is True and body["samples"] == 1 and body["per_digit"]["1"] == 1
    assert body["digit"] == "1" and body["read_as"] == "7"
    assert correct(client, canvas_png(SEVEN), 1).json()["profile"] != body["profile"]


def test_a_correction_changes_the_next_reading_with_that_profile_and_no_other(client):
    seven = canvas_png(SEVEN)
    assert read(client, seven).json()["text"] == "7"
    mine = correct(client, seven, 1).json()["profile"]
    other = correct(client, canvas_png(ONE), 1).json()["profile"]  # someone else's hand
    assert read(client, seven, mine).json()["text"] == "1"
    assert read(client, seven, other).json()["text"] == "7"
    assert read(client, seven).json()["text"] == "7"  # the base model is unchanged


def test_a_correction_of_one_digit_of_a_number_names_its_position(client):
    body = correct(client, number_png(), 4, position=2).json()
    assert body["read_as"] == "7" and body["per_digit"]["4"] == 1
    too_far = correct(client, number_png(), 4, body["profile"], position=3)
    assert too_far.status_code == 400 and "reads as 3 digits" in too_far.json()["detail"]


def test_an_unknown_or_malformed_profile_is_404_and_an_out_of_range_digit_422(client):
    for profile in ("0" * 32, "../etc", "x' OR '1'='1"):
        answer = read(client, canvas_png(ONE), profile)
        assert answer.status_code == 404, (profile, answer.text)
        assert client.get(f"/api/v1/profiles/{profile}").status_code == 404
    assert correct(client, canvas_png(ONE), 10).status_code == 422
    assert correct(client, canvas_png(ONE), 1, "0" * 32).status_code == 404


def test_the_holder_sees_and_deletes_a_profile_and_its_samples_go_with_it(client, store_path):
    profile = correct(client, canvas_png(SEVEN), 1).json()["profile"]
    shown = client.get(f"/api/v1/profiles/{profile}").json()
    assert shown["samples"] == 1 and shown["issued"]
    assert client.delete(f"/api/v1/profiles/{profile}").status_code == 204
    assert client.get(f"/api/v1/profiles/{profile}").status_code == 404
    assert read(client, canvas_png(SEVEN), profile).status_code == 404
    images, _ = ProfileStore.open(store_path).samples()
    assert len(images) == 0


def test_listing_and_clearing_all_profiles_need_the_admin_token(client):
    for _ in range(2):
        client.post("/api/v1/profiles")
    assert client.get("/api/v1/profiles").status_code == 403
    assert client.get("/api/v1/profiles", headers={"Authorization": "Bearer wrong-token-of-length"}).status_code == 403
    assert client.delete("/api/v1/profiles").status_code == 403
    listed = client.get("/api/v1/profiles", headers=ADMIN)
    assert listed.status_code == 200 and len(listed.json()) == 2
    assert client.delete("/api/v1/profiles", headers=ADMIN).json() == {"deleted": 2}
    assert client.get("/api/v1/profiles", headers=ADMIN).json() == []


def test_a_server_without_an_admin_token_lets_nobody_list(store_path):
    with TestClient(create_app(Settings(store=store_path))) as c:
        answer = c.get("/api/v1/profiles", headers=ADMIN)
        assert answer.status_code == 403 and "--admin-token" in answer.json()["detail"]


def test_a_profile_named_with_the_cli_is_read_with_but_changed_only_by_the_admin(client, store_path):
    from digitrec.recognition.recognizer import Recognizer

    store = ProfileStore.open(store_path)
    piece = Recognizer.load().recognize(canvas_png(SEVEN), expected_digits=1).digits[0].image
    store.add_samples("ana", piece[None], [1], create=True)
    assert read(client, canvas_png(SEVEN), "ana").json()["text"] == "1"
    assert correct(client, canvas_png(SEVEN), 2, "ana").status_code == 403
    assert client.delete("/api/v1/profiles/ana").status_code == 403
    assert client.delete("/api/v1/profiles/ana", headers=ADMIN).status_code == 204


def test_a_short_admin_token_is_refused():
    with pytest.raises(Exception, match="at least 16 characters"):
        Settings(admin_token="short")


def test_recognition_processes_read_with_the_profile_too(store_path):
    with TestClient(create_app(Settings(store=store_path, workers=2))) as c:
        seven = canvas_png(SEVEN)
        profile = correct(c, seven, 1).json()["profile"]
        assert {read(c, seven, profile).json()["text"] for _ in range(4)} == {"1"}
        assert read(c, seven).json()["text"] == "7"


def test_a_store_that_cannot_be_opened_stops_the_server_from_starting(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(Exception, match="store"):
        with TestClient(create_app(Settings(store=str(blocked / "store.sqlite")))):
            pass
