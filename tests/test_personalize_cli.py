"""Personal profiles from the command line, as a user runs them: `digitrec personalize`,
`predict --profile`, `profiles list|show|delete|export|import`, `corrections export` and
`train --extra-data`, on a store in a temporary folder (never the user's own).

Try: `.venv/bin/pytest tests/test_personalize_cli.py -q`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from digitrec.cli import main
from digitrec.data.idxpair import read_idx_folder, write_idx_folder
from digitrec.errors import DigitrecError
from digitrec.store.profiles import ProfileStore
from helpers import bar_digits

FONTS = Path("/usr/share/fonts/truetype/dejavu")  # Debian's fonts-dejavu-core


def render(digit: int, font: str = "DejaVuSans.ttf", size: int = 80) -> Image.Image:
    """`digit` in a font, dark ink on white, as a photographed or scanned digit would be."""
    path = FONTS / font
    face = ImageFont.truetype(str(path), int(size * 0.75)) if path.exists() else ImageFont.load_default(size * 0.75)
    image = Image.new("L", (size, size), 255)
    ImageDraw.Draw(image).text((size / 2, size / 2), str(digit), font=face, fill=0, anchor="mm")
    return image


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def no_real_store(tmp_path, monkeypatch):
    """Whatever a command does, the user's own data folder and $DIGITREC_STORE are out of reach."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.delenv("DIGITREC_STORE", raising=False)


@pytest.fixture
def store(tmp_path) -> str:
    return str(tmp_path / "store.sqlite")


@pytest.fixture
def labelled(tmp_path) -> Path:
    """A folder of one hand's digits named by their digit (0_a.png ... 9_a.png, and a bold 3_b.png),
    a file whose name gives no digit, and a text file that is no image."""
    folder = tmp_path / "samples"
    folder.mkdir()
    for d in range(10):
        render(d).save(folder / f"{d}_a.png")
    render(3, "DejaVuSans-Bold.ttf").save(folder / "3_b.png")
    render(5).save(folder / "notes.png")
    (folder / "readme.txt").write_text("not an image")
    return folder


def test_personalize_reads_a_folder_of_labelled_images_and_says_what_it_left_out(labelled, store, capsys):
    code, out, err = run(capsys, "personalize", "--profile", "ana", str(labelled), "--store", store)
    assert code == 0, err
    assert "added 11 samples to profile ana: now 11" in out and "digitrec predict --profile ana" in out
    assert "left out" in err and "notes.png" in err and "readme.txt" not in err
    info = ProfileStore.open(store).info("ana")
    assert info.counts == (1, 1, 1, 2, 1, 1, 1, 1, 1, 1) and info.revision == 1

    code, out, _ = run(capsys, "personalize", "--profile", "ana", str(labelled / "7_a.png"), "--store", store, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["added"] == 1 and answer["samples"] == 12 and answer["base_model_right"] == 1
    assert answer["profile"] == "ana" and answer["skipped"] == [] and answer["revision"] == 2


def test_personalize_reads_a_csv_of_files_and_labels(tmp_path, store, capsys):
    render(7).save(tmp_path / "first.png")
    render(2).save(tmp_path / "second.png")
    (tmp_path / "labels.csv").write_text("file,label\nfirst.png,7\n\nsecond.png, 2\n", encoding="utf-8")
    code, out, err = run(capsys, "personalize", "--profile", "ben", str(tmp_path / "labels.csv"), "--store", store)
    assert code == 0, err
    assert "added 2 samples to profile ben" in out
    images, labels = ProfileStore.open(store).samples("ben")
    assert labels.tolist() == [7, 2] and images.shape == (2, 28, 28) and images.max() > 200  # ink bright, as MNIST's

    (tmp_path / "bad.csv").write_text("first.png,seven\n")
    code, _, err = run(capsys, "personalize", "--profile", "ben", str(tmp_path / "bad.csv"), "--store", store)
    assert code == 2 and "line 1: expected `file,label`" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--profile", "ana", "{empty}"], "no labelled digit images in"),
        (["--profile", "ana", "{unlabelled}"], "left out: "),
        (["--profile", "ana", "{tmp}/missing"], "no such file or folder"),
        (["--profile", "../ana", "{empty}"], "is not a profile name"),
        (["--profile", "x'; DROP TABLE profiles; --", "{empty}"], "is not a profile name"),
    ],
)
def test_personalize_with_nothing_to_learn_from_is_exit_2_and_one_clear_line(tmp_path, store, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "unlabelled").mkdir()
    render(4).save(tmp_path / "unlabelled" / "four.png")
    paths = {"tmp": tmp_path, "empty": tmp_path / "empty", "unlabelled": tmp_path / "unlabelled"}
    code, out, err = run(capsys, "personalize", *[a.format(**paths) for a in args], "--store", store)
    assert code == 2 and out == ""
    assert err.startswith("digitrec: error: ") and message in err and len(err.splitlines()) == 1
    assert not Path(store).exists()  # nothing was stored, nor the store even made


def test_predict_reads_with_the_profile_and_refuses_an_unknown_one(tmp_path, store, capsys):
    seven = tmp_path / "seven.png"
    render(7).save(seven)
    render(7).save(tmp_path / "1_my-one.png")  # this hand's 1 looks like a printed 7
    assert run(capsys, "personalize", "--profile", "ana", str(tmp_path / "1_my-one.png"), "--store", store)[0] == 0

    code, out, _ = run(capsys, "predict", str(seven), "--json")
    assert code == 0 and json.loads(out)["text"] == "7"
    code, out, _ = run(capsys, "predict", str(seven), "--profile", "ana", "--store", store, "--json")
    assert code == 0 and json.loads(out)["text"] == "1"
    code, out, _ = run(capsys, "predict", str(seven), "--profile", "ana", "--store", store)
    assert code == 0 and out.startswith(f"{seven}: 1")

    code, out, err = run(capsys, "predict", str(seven), "--profile", "nobody", "--store", store)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "no profile nobody" in err and "digitrec profiles list" in err


def test_profiles_lists_shows_exports_deletes_and_imports(tmp_path, labelled, store, capsys):
    code, out, _ = run(capsys, "profiles", "list", "--store", store)
    assert code == 0 and out.startswith("no profiles in sqlite:///")
    assert run(capsys, "profiles", "list", "--store", store, "--json")[1].strip() == "[]"
    run(capsys, "personalize", "--profile", "ana", str(labelled), "--store", store)

    code, out, _ = run(capsys, "profiles", "list", "--store", store)
    assert code == 0 and out.startswith("ana ") and "11 samples" in out and "named" in out
    listed = json.loads(run(capsys, "profiles", "list", "--store", store, "--json")[1])
    assert [(p["profile"], p["samples"], p["issued"]) for p in listed] == [("ana", 11, False)]
    code, out, _ = run(capsys, "profiles", "show", "ana", "--store", store)
    assert code == 0 and "profile ana in sqlite:///" in out and "samples   11" in out and "(revision 1)" in out
    shown = json.loads(run(capsys, "profiles", "show", "ana", "--store", store, "--json")[1])
    assert shown["per_digit"]["3"] == 2 and shown["samples"] == 11

    exported = tmp_path / "out" / "ana.json"  # its folder is made
    code, out, _ = run(capsys, "profiles", "export", "ana", "--out", str(exported), "--store", store)
    assert code == 0 and f"wrote profile ana to {exported}" in out
    assert json.loads(exported.read_text())["format"] == "digitrec-profile"
    before = ProfileStore.open(store).samples("ana")

    code, out, _ = run(capsys, "profiles", "delete", "ana", "--store", store)
    assert code == 0 and "deleted profile ana and its samples" in out
    code, _, err = run(capsys, "profiles", "show", "ana", "--store", store)
    assert code == 2 and "no profile ana" in err and len(err.splitlines()) == 1
    assert run(capsys, "profiles", "delete", "ana", "--store", store)[0] == 2

    code, out, _ = run(capsys, "profiles", "import", str(exported), "--store", store)
    assert code == 0 and out.startswith("profile ana: now 11 samples")
    code, out, _ = run(capsys, "profiles", "import", str(exported), "--name", "ana2", "--store", store, "--json")
    assert code == 0 and json.loads(out)["profile"] == "ana2" and json.loads(out)["samples"] == 11
    for name in ("ana", "ana2"):
        images, labels = ProfileStore.open(store).samples(name)
        assert np.array_equal(images, before[0]) and np.array_equal(labels, before[1])


@pytest.mark.parametrize(
    "args, message",
    [
        (["import", "{tmp}/missing.json"], "cannot read it"),
        (["import", "{tmp}"], "cannot read it"),
        (["import", "{tmp}/garbage.json"], "not a profile file made by `digitrec profiles export`"),
        (["import", "{tmp}/huge.json"], "over the 16777216-byte limit"),
        (["import", "{tmp}/garbage.json", "--name", "../x"], "is not a profile name"),
        (["export", "nobody", "--out", "{tmp}/x.json"], "no profile nobody"),
        (["export", "ana", "--out", "{tmp}"], "cannot write it"),
        (["show", "x'; DROP TABLE profiles; --"], 'no profile "x\'; DROP TABLE profiles; --";'),
    ],
)
def test_profile_commands_given_what_they_cannot_use_are_exit_2_and_one_line(tmp_path, store, capsys, args, message):
    (tmp_path / "garbage.json").write_text('{"format": "digitrec-profile", "samples": [')
    with (tmp_path / "huge.json").open("wb") as f:
        f.truncate(17 * 2**20)  # sparse: read no further than the limit
    ProfileStore.open(store).add_samples("ana", np.zeros((1, 28, 28), np.uint8), [1], create=True)
    code, out, err = run(capsys, "profiles", *[a.format(tmp=tmp_path) for a in args], "--store", store)
    assert code == 2 and out == ""
    assert err.startswith("digitrec: error: ") and message in err and len(err.splitlines()) == 1
    assert [p.id for p in ProfileStore.open(store).list_profiles()] == ["ana"]


def test_corrections_export_writes_the_samples_as_an_idx_pair_that_reads_back(tmp_path, labelled, store, capsys):
    code, _, err = run(capsys, "corrections", "export", "--out", str(tmp_path / "none"), "--store", store)
    assert code == 2 and "no samples to export" in err and len(err.splitlines()) == 1
    run(capsys, "personalize", "--profile", "ana", str(labelled), "--store", store)
    ProfileStore.open(store).add_samples("ben", np.full((2, 28, 28), 9, np.uint8), [4, 2], create=True)

    code, out, _ = run(capsys, "corrections", "export", "--out", str(tmp_path / "all"), "--store", store)
    assert code == 0 and "wrote 13 digits" in out and f"digitrec train --extra-data {tmp_path / 'all'}" in out
    images, labels = read_idx_folder(tmp_path / "all")
    every = ProfileStore.open(store).samples()
    assert np.array_equal(images, every[0]) and np.array_equal(labels, every[1])
    assert images.shape == (13, 28, 28) and images.dtype == labels.dtype == np.uint8

    code, out, _ = run(
        capsys, "corrections", "export", "--out", str(tmp_path / "ben"), "--profile", "ben", "--store", store
    )
    assert code == 0 and "wrote 2 digits" in out
    images, labels = read_idx_folder(tmp_path / "ben")
    assert labels.tolist() == [4, 2] and (images == 9).all()

    code, _, err = run(
        capsys, "corrections", "export", "--out", str(tmp_path / "x"), "--profile", "nobody", "--store", store
    )
    assert code == 2 and "no profile nobody" in err


def test_an_idx_folder_is_checked_when_read(tmp_path):
    with pytest.raises(DigitrecError, match="corrections export --out FOLDER"):
        read_idx_folder(tmp_path)
    write_idx_folder(tmp_path / "bad", np.zeros((2, 28, 28), np.uint8), np.array([1, 12], np.uint8))
    with pytest.raises(DigitrecError, match="label 12 is not a digit"):
        read_idx_folder(tmp_path / "bad")
    write_idx_folder(tmp_path / "short", np.zeros((2, 28, 28), np.uint8), np.array([1], np.uint8))
    with pytest.raises(DigitrecError, match="has 1 labels but"):
        read_idx_folder(tmp_path / "short")


def test_train_with_extra_data_trains_on_them_too_and_resumes_only_with_them(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from digitrec.nn.checkpoint import load_checkpoint
    from digitrec.training import run as training_run
    from digitrec.training.config import TrainConfig

    splits = bar_digits(256, seed=1), bar_digits(64, seed=2)  # tiny: what is trained on is checked, not how well
    extra = bar_digits(40, seed=7)
    write_idx_folder(tmp_path / "extra", extra.images, extra.labels)
    write_idx_folder(tmp_path / "other", extra.images, (extra.labels + 1) % 10)
    trained_on = []
    real_fit = training_run.fit

    def fit(model, train_data, *args, **kwargs):
        trained_on.append(train_data)
        return real_fit(model, train_data, *args, **kwargs)

    monkeypatch.setattr(training_run, "fit", fit)
    config = TrainConfig(model="default", model_options={"widths": (8, 16)}, epochs=1, batch_size=64, lr=0.05, seed=3)
    result = training_run.train(config, tmp_path / "run", splits=splits, progress=False, extra_data=tmp_path / "extra")
    assert result.completed
    seen = trained_on[-1]
    assert len(seen.labels) == 256 + 40
    assert torch.equal(seen.images[-40:], torch.from_numpy(extra.images))
    assert seen.labels[-40:].tolist() == extra.labels.tolist()
    meta = load_checkpoint(tmp_path / "run" / "model.safetensors").metadata
    assert meta["training"]["extra_digits"] == 40 and meta["data_sha256"] != "fake"  # the checksum covers them

    cut = tmp_path / "cut"
    stopped = training_run.train(
        config, cut, splits=splits, progress=False, extra_data=tmp_path / "extra", should_stop=lambda: True
    )
    assert not stopped.completed
    for other in (None, tmp_path / "other"):
        with pytest.raises(DigitrecError, match="same --extra-data"):
            training_run.train(config, cut, splits=splits, progress=False, resume=True, extra_data=other)
    resumed = training_run.train(config, cut, splits=splits, progress=False, resume=True, extra_data=tmp_path / "extra")
    assert resumed.completed
    assert load_checkpoint(cut / "model.safetensors").metadata["training"]["extra_digits"] == 40


def test_the_train_command_hands_its_extra_data_to_the_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from digitrec.training import run as training_run

    handed = {}

    def train(config, out, **kwargs):
        handed.update(kwargs, out=out)
        return SimpleNamespace(completed=True, metrics={}, files={}, state=SimpleNamespace(history=[]))

    monkeypatch.setattr(training_run, "train", train)
    code, out, _ = run(
        capsys, "train", "--extra-data", str(tmp_path / "extra"), "--out", str(tmp_path / "run"), "--json"
    )
    assert code == 0 and json.loads(out)["completed"] is True
    assert handed["extra_data"] == tmp_path / "extra" and handed["out"] == tmp_path / "run"


def test_train_with_a_folder_that_holds_no_idx_pair_fails_before_reading_mnist(tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "extra").mkdir()
    code, _, err = run(
        capsys,
        "train",
        "--extra-data",
        str(tmp_path / "extra"),
        "--out",
        str(tmp_path / "run"),
        "--data-dir",
        str(tmp_path / "no-mnist"),
        "--json",
    )
    assert code == 2 and "images-idx3-ubyte.gz" in err and len(err.splitlines()) == 1
