import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from digitrec.constants import NON_DIGIT
from digitrec.data import synthetic
from digitrec.errors import DigitrecError
from digitrec.nn.augment_config import AugmentConfig
from digitrec.nn.checkpoint import load_checkpoint, load_tensors
from digitrec.training.config import BEST_CHOICE_HOLDOUT, PRESETS, TrainConfig, make_config
from digitrec.training.loop import lr_at
from digitrec.training.run import model_options, train
from helpers import FakeSplit, bar_digits

TINY = TrainConfig(
    model="default",
    model_options={"widths": (8, 16)},
    epochs=2,
    batch_size=64,
    lr=0.05,
    schedule="onecycle",
    nesterov=True,
    bf16=True,
    channels_last=True,
    seed=3,
)


@pytest.fixture(scope="module")
def splits():
    return bar_digits(1024, seed=1), bar_digits(256, seed=2)


def weights(path):
    return load_tensors(path)


def test_training_learns_and_writes_everything(tmp_path, splits):
    result = train(TINY, tmp_path, splits=splits, progress=False)
    assert result.completed
    assert result.metrics["test_accuracy"] > 0.9
    for name in ("model.safetensors", "train_state.safetensors", "log.jsonl", "curves.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"train_loss", "train_accuracy", "test_accuracy", "images_per_second", "elapsed_seconds"} <= set(log[0])
    meta = load_checkpoint(tmp_path / "model.safetensors").metadata
    assert meta["training"]["config"]["epochs"] == 2 and meta["data_sha256"] == "fake"
    calibration = meta["calibration"]  # fitted when the run completed
    assert calibration["fitted_on"] == "1024 training digits" and calibration["temperature"] > 0
    assert calibration["nll_after"] <= calibration["nll_before"]


def test_same_seed_same_weights(tmp_path, splits):
    a = train(TINY, tmp_path / "a", splits=splits, progress=False)
    b = train(TINY, tmp_path / "b", splits=splits, progress=False)
    wa, wb = weights(a.checkpoint), weights(b.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


AUGMENTED = dataclasses.replace(TINY, ema=0.9, augment=AugmentConfig(rotate=10, shift=2, elastic_alpha=2, noise=0.05))


@pytest.mark.parametrize(
    "config, stop_after_calls",
    [
        (TINY, 5),
        (TINY, 16),  # inside epoch 1, and at the epoch boundary
        (AUGMENTED, 7),  # augmentation draws random numbers and the EMA has state of its own
    ],
)
def test_resumed_run_ends_where_an_uninterrupted_one_would(tmp_path, splits, config, stop_after_calls):
    whole = train(config, tmp_path / "whole", splits=splits, progress=False)
    calls = iter(range(10**6))
    stopped = train(
        config, tmp_path / "cut", splits=splits, progress=False, should_stop=lambda: next(calls) >= stop_after_calls
    )
    assert not stopped.completed
    resumed = train(config, tmp_path / "cut", splits=splits, progress=False, resume=True)
    assert resumed.completed and resumed.state.epoch == 2
    wa, wb = weights(whole.checkpoint), weights(resumed.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture
def torch_threads():
    """Gives back torch's thread count as the test found it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


STEPS_PER_EPOCH = 16  # 1024 digits in batches of 64: should_stop's 17th call comes after epoch 1


def test_a_resumed_run_trains_with_its_saved_threads_whatever_torch_is_set_to(tmp_path, splits, torch_threads):
    # The thread count changes how torch splits its sums, so another count gives other weights.
    torch.set_num_threads(1)
    whole = train(TINY, tmp_path / "whole", splits=splits, progress=False)
    calls = iter(range(10**6))
    stopped = train(
        TINY, tmp_path / "cut", splits=splits, progress=False, should_stop=lambda: next(calls) >= STEPS_PER_EPOCH
    )
    assert not stopped.completed and stopped.state.epoch == 1
    torch.set_num_threads(4)
    resumed = train(TINY, tmp_path / "cut", splits=splits, progress=False, resume=True)
    assert resumed.completed and torch.get_num_threads() == 4  # the caller's setting is left as it was
    wa, wb = weights(whole.checkpoint), weights(resumed.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resuming_with_other_threads_than_the_run_saved_is_refused(tmp_path, splits, torch_threads):
    train(TINY, tmp_path, splits=splits, progress=False, threads=1, should_stop=lambda: True)
    with pytest.raises(DigitrecError, match="trained with 1 threads"):
        train(TINY, tmp_path, splits=splits, progress=False, resume=True, threads=2)
    assert train(TINY, tmp_path, splits=splits, progress=False, resume=True, threads=1).completed


def test_a_second_training_into_a_folder_in_use_is_refused_until_the_first_ends(tmp_path, splits):
    from digitrec.training.run import lock_run_folder  # here, so the other tests run without it

    with lock_run_folder(tmp_path):
        start = time.monotonic()
        with pytest.raises(DigitrecError, match="another training is writing to"):
            train(TINY, tmp_path, splits=splits, progress=False)
        assert time.monotonic() - start < 1  # refused before any data is read
    assert train(dataclasses.replace(TINY, epochs=1), tmp_path, splits=splits, progress=False).completed


HOLD_LOCK = """
import sys, time
from pathlib import Path
from digitrec.training.run import lock_run_folder
with lock_run_folder(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_killed_trainings_lock_does_not_block_the_next_one(tmp_path, splits):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(DigitrecError, match=f"another training is writing to .*pid {holder.pid}"):
            train(TINY, tmp_path, splits=splits, progress=False)
    finally:
        holder.kill()  # SIGKILL: no chance to release the lock itself
        holder.wait()
    assert train(dataclasses.replace(TINY, epochs=1), tmp_path, splits=splits, progress=False).completed


def test_an_interrupted_runs_summary_lists_only_files_that_exist_and_are_its_own(tmp_path, splits):
    (tmp_path / "curves.png").write_bytes(b"an older run's")
    result = train(TINY, tmp_path, splits=splits, progress=False, should_stop=lambda: True)  # stops after 1 step
    assert not result.completed
    files = json.loads((tmp_path / "summary.json").read_text())["files"]
    assert files == result.files == {"state": str(tmp_path / "train_state.safetensors")}
    assert all(Path(p).exists() for p in files.values())


def test_resume_errors(tmp_path, splits):
    with pytest.raises(DigitrecError, match="nothing to resume"):
        train(TINY, tmp_path, splits=splits, resume=True, progress=False)
    train(dataclasses.replace(TINY, epochs=1), tmp_path, splits=splits, progress=False)
    with pytest.raises(DigitrecError, match="already finished"):
        train(TINY, tmp_path, splits=splits, resume=True, progress=False)


def test_holdout_is_evaluated_separately(tmp_path, splits):
    result = train(dataclasses.replace(TINY, holdout=200, epochs=1), tmp_path, splits=splits, progress=False)
    assert "val_accuracy" in result.metrics and "test_accuracy" in result.metrics
    assert load_checkpoint(result.checkpoint).metadata["calibration"]["fitted_on"] == "200 held-out training digits"


def test_schedules():
    c = dataclasses.replace(TINY, lr=1.0, epochs=10, warmup=0.2)
    assert lr_at(c, 0, 10) == pytest.approx(0.04)
    assert lr_at(c, 20, 10) == pytest.approx(1.0)
    assert lr_at(c, 99, 10) == pytest.approx(1 / 80)
    s = dataclasses.replace(c, schedule="step", step_gamma=0.5)
    assert lr_at(s, 9, 10) == 1.0 and lr_at(s, 10, 10) == 0.5 and lr_at(s, 25, 10) == 0.25
    assert lr_at(dataclasses.replace(c, schedule="constant"), 55, 10) == 1.0


def test_presets_and_overrides():
    assert {"seed", "reference", "default"} <= set(PRESETS)
    seed = PRESETS["seed"]
    assert (seed.model, seed.optimizer, seed.lr, seed.momentum, seed.batch_size, seed.epochs) == (
        "seed-cnn",
        "sgd",
        0.001,
        0.9,
        4,
        2,
    )
    ref = PRESETS["reference"]
    assert (ref.model, ref.optimizer, ref.lr, ref.step_gamma, ref.batch_size, ref.epochs) == (
        "torch-example",
        "adadelta",
        1.0,
        0.7,
        64,
        14,
    )
    assert make_config("default", epochs=1, lr=None).epochs == 1
    assert make_config("fast", model="seed-cnn").model_options == {}
    with pytest.raises(DigitrecError, match="unknown preset"):
        make_config("fastest")
    with pytest.raises(DigitrecError, match="at least 1"):
        make_config("default", epochs=0)
    assert make_config("default", ema=0.99).ema == 0.99
    with pytest.raises(DigitrecError, match="--ema"):
        make_config("default", ema=1.5)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_its_model_and_round_trips_through_json(name):
    from digitrec.nn.models.registry import create_model

    config = PRESETS[name]
    assert TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == dataclasses.replace(
        config, model_options={k: list(v) if isinstance(v, tuple) else v for k, v in config.model_options.items()}
    )
    model = create_model(config.model, **model_options(config))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 12 if config.negatives else 11 if config.pieces else 10)


def drawn_splits(n: int, n_test: int) -> tuple[np.ndarray, tuple[FakeSplit, FakeSplit]]:
    """n stroke-drawn digits, and them as (train, test) splits with the last n_test as the test set."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    digits = np.stack([synthetic.draw_digit(int(d), rng) for d in labels])
    cut = n - n_test
    return digits, (
        FakeSplit(digits[:cut], labels[:cut].astype(np.uint8)),
        FakeSplit(digits[cut:], labels[cut:].astype(np.uint8)),
    )


def test_training_on_pieces_adds_the_not_a_digit_class(tmp_path):
    from digitrec.recognition.recognizer import Recognizer

    digits, split = drawn_splits(300, 60)
    result = train(dataclasses.replace(TINY, epochs=1, pieces=20), tmp_path, splits=split, progress=False)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.metadata["model"]["config"]["num_classes"] == 11
    assert 0 <= result.metrics["test_accuracy"] <= 1  # over the ten digits only
    probs = Recognizer.load(result.checkpoint).predict_proba(digits[240:])
    assert probs.shape == (60, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_training_on_negatives_adds_the_not_a_digit_class_after_not_one_digit(tmp_path):
    _, split = drawn_splits(200, 40)
    config = dataclasses.replace(TINY, epochs=1, pieces=10, negatives=30)
    result = train(config, tmp_path, splits=split, progress=False)
    assert load_checkpoint(result.checkpoint).metadata["model"]["config"]["num_classes"] == 12
    assert 0 <= result.metrics["test_accuracy"] <= 1  # over the ten digits only


def test_training_on_negatives_without_pieces_keeps_not_a_digit_the_12th_output(tmp_path):
    _, split = drawn_splits(200, 40)
    result = train(dataclasses.replace(TINY, epochs=1, negatives=30), tmp_path, splits=split, progress=False)
    assert load_checkpoint(result.checkpoint).metadata["model"]["config"]["num_classes"] == NON_DIGIT + 1


def test_best_is_chosen_held_out_then_trained_on_every_digit():
    # Its settings come from runs with `--holdout BEST_CHOICE_HOLDOUT`; the final model sees all.
    assert BEST_CHOICE_HOLDOUT > 0 and PRESETS["best"].holdout == 0 and PRESETS["best"].ema > 0
    assert make_config("best", holdout=BEST_CHOICE_HOLDOUT).holdout == BEST_CHOICE_HOLDOUT


def test_unwritable_output_folder(tmp_path, splits):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DigitrecError, match="cannot create output folder"):
        train(TINY, blocker / "out", splits=splits, progress=False)


def test_distillation_loss_is_zero_only_when_the_model_agrees_with_its_teacher():
    from digitrec.training.loop import Teachers, distillation_loss

    teacher = Teachers([torch.nn.Flatten(), torch.nn.Flatten()]).eval()  # logits = the inputs, averaged
    x = torch.randn(4, 10)
    config = dataclasses.replace(TINY, bf16=False, teachers=("t",), distill=0.5)
    assert distillation_loss(x.clone(), teacher, x, config).item() == pytest.approx(0, abs=1e-6)
    assert distillation_loss(x.flip(1), teacher, x, config).item() > 0.1


def test_a_model_learns_from_its_teacher_alone(tmp_path, splits):
    # A teacher taught that every digit is the next one: with distill=1 the labels carry no
    # weight, so the student reads the next digit too.
    (train_split, test_split) = splits
    shifted = FakeSplit(train_split.images, (train_split.labels + 1) % 10), test_split
    teacher = train(TINY, tmp_path / "teacher", splits=shifted, progress=False)
    config = dataclasses.replace(TINY, seed=4, teachers=(str(teacher.checkpoint),), distill=1.0)
    student = train(config, tmp_path / "student", splits=splits, progress=False)
    assert student.metrics["test_accuracy"] < 0.2
    from digitrec.recognition.recognizer import Recognizer

    probs = Recognizer.load(student.checkpoint).predict_proba(test_split.images)
    assert np.mean(probs.argmax(1) == (test_split.labels + 1) % 10) > 0.9
    saved = load_checkpoint(student.checkpoint).metadata["training"]["config"]
    assert TrainConfig.from_dict(saved) == dataclasses.replace(config, model_options={"widths": [8, 16]})


def test_a_teacher_must_have_held_out_the_same_digits(tmp_path, splits):
    teacher = train(TINY, tmp_path / "teacher", splits=splits, progress=False)
    config = dataclasses.replace(TINY, holdout=100, teachers=(str(teacher.checkpoint),), distill=0.5)
    with pytest.raises(DigitrecError, match="held out 0 training digits"):
        train(config, tmp_path / "student", splits=splits, progress=False)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"teachers": ("a",)}, "go together"),
        ({"distill": 0.5}, "go together"),
        ({"teachers": ("a",), "distill": 1.5}, r"\[0, 1\]"),
        ({"teachers": ("a",), "distill": 0.5, "pieces": 10}, "pieces"),
    ],
)
def test_distillation_settings_are_checked(overrides, message):
    with pytest.raises(DigitrecError, match=message):
        make_config("default", **overrides)
