"""docs/tutorial.md as a reader follows it: its Python examples are doctests, and every command
in it runs, in order, in a temporary folder.

Try: `.venv/bin/pytest tests/test_tutorial.py -q` (`-m slow` for the path with training).

Which lines are commands: in the tutorial's ```console blocks, a line starting with `$ ` is a
command, and one ending in a backslash goes on to the next line (the test joins them with a
space, as bash would outside single quotes). Every other line of a block is the output the
tutorial shows, measured when it was written; it is not compared, since figures and timings
change with the machine. The ```pycon blocks are doctests, and their output is compared (a
block's closing fence ends its last output, as a blank line would).

How the commands run: each with `bash -o pipefail -c`, in a temporary folder that holds a copy of
src/digitrec/assets (the tutorial runs from the checkout's root), with this environment's bin
first on PATH (so `digitrec` and `python` are this environment's), $DIGITREC_DATA as given, and
the profile store ($XDG_DATA_HOME) and the corrupted sets ($DIGITREC_CACHE) in the temporary
folder. What the test changes:

- `make install` and `. .venv/bin/activate` are skipped: the test runs in the installed
  environment, its bin first on PATH.
- `digitrec train` trains one epoch (`--epochs 1`, replacing the tutorial's), so the whole path
  takes minutes; `digitrec robustness` gets `--limit 500`.
- `digitrec serve` starts in the background on a free port of 127.0.0.1 (`--port`), and the test
  waits for its /healthz; it runs until the next `digitrec serve` or the end. `curl` lines go to
  that port, with `--fail-with-body`, so that an HTTP error fails them.

A command that fails (a non-zero exit) fails the test with its output. Without the slow tests,
only the commands that need no training run: those that neither train nor name a folder a
`digitrec train` writes (its --out); the slow test runs every command in order. Both need MNIST
($DIGITREC_DATA, as test_cli's real-data tests); the doctests and the other checks do not.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import pytest

from helpers import cannot_test

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
ASSETS = ROOT / "src" / "digitrec" / "assets"
BIN = Path(sys.executable).parent  # the environment's bin: digitrec and python
SKIPPED = {"make install", ". .venv/bin/activate"}
TUTORIAL_PORT = "127.0.0.1:8000"  # where the tutorial's curl lines send their requests
TRAIN_EPOCHS = 1
ROBUSTNESS_LIMIT = 500
COMMAND_TIMEOUT_S = 900
SERVER_START_S = 120
OUTPUT_SHOWN = 6000  # characters of a failed command's output in the failure message

needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")


@dataclass(frozen=True)
class Command:
    line: int  # in the tutorial, 1-based
    text: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)

    def is_digitrec(self, command: str) -> bool:
        words = self.words
        return words[:2] == ["digitrec", command]


def tutorial_commands(text: str) -> list[Command]:
    """The `$ ` lines of the ```console blocks, continuation lines joined."""
    commands: list[Command] = []
    in_console = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if not in_console:
            continue
        if pending:
            pending.append(line.strip())
        elif line.startswith("$ "):
            pending, start = [line[2:].strip()], number
        if pending and not pending[-1].endswith("\\"):
            commands.append(Command(start, " ".join(part.removesuffix("\\").strip() for part in pending)))
            pending = []
    assert not pending, f"docs/tutorial.md line {start}: a command ends in a backslash with no line after it"
    return commands


def trained_folders(commands: list[Command]) -> set[str]:
    """The folders the tutorial's `digitrec train` commands write (--out, else runs/PRESET)."""
    folders = set()
    for c in commands:
        if c.is_digitrec("train"):
            words = c.words
            preset = words[words.index("--preset") + 1] if "--preset" in words else "default"
            folders.add(words[words.index("--out") + 1] if "--out" in words else f"runs/{preset}")
    return {f.rstrip("/") for f in folders}


def needs_training(command: Command, folders: set[str]) -> bool:
    return command.is_digitrec("train") or any(
        re.search(rf"(?<![\w./-]){re.escape(f)}(?![\w.-])", command.text) for f in folders
    )


def _with_option(text: str, option: str, value: object) -> str:
    """`text` with `option value`, replacing the option's value if it has one."""
    pattern = rf"{re.escape(option)}[ =]\S+"
    return re.sub(pattern, f"{option} {value}", text) if re.search(pattern, text) else f"{text} {option} {value}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fail(command: Command, what: str, output: str) -> NoReturn:
    pytest.fail(
        f"docs/tutorial.md line {command.line}: `{command.text}` {what}\n{output[-OUTPUT_SHOWN:]}", pytrace=False
    )


class Server:
    """A `digitrec serve` line, running in the background on its own port."""

    def __init__(self, command: Command, folder: Path, env: dict[str, str]) -> None:
        self.command = command
        self.port = free_port()
        self.log = folder / f"serve-{self.port}.log"
        text = _with_option(command.text, "--port", self.port)
        with self.log.open("wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                ["bash", "-c", f"exec {text}"],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one below
            )
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.process.poll() is not None:
                _fail(command, f"exited with {self.process.returncode} before serving", self.log.read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                _fail(command, f"did not answer /healthz within {SERVER_START_S} s", self.log.read_text())
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def tutorial_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The reader's checkout as far as the tutorial needs it, and the environment to run in."""
    folder = tmp_path / "checkout"
    shutil.copytree(ASSETS, folder / "src" / "digitrec" / "assets")
    env = {k: v for k, v in os.environ.items() if k not in ("DIGITREC_STORE", "DIGITREC_ADMIN_TOKEN")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        XDG_DATA_HOME=str(tmp_path / "data"),
        DIGITREC_CACHE=str(tmp_path / "cache"),
    )
    return folder, env


def run_tutorial(tmp_path: Path, *, with_training: bool) -> int:
    """Run the tutorial's commands in order (with_training False: those that need no training);
    returns how many ran."""
    commands = tutorial_commands(TUTORIAL.read_text())
    folders = trained_folders(commands)
    if any(c.words[0] == "curl" for c in commands) and shutil.which("curl") is None:
        cannot_test("the tutorial's curl lines", "curl is not installed")
    ran = 0
    server: Server | None = None
    server_skipped = False
    folder, env = tutorial_folder(tmp_path)
    try:
        for command in commands:
            words = command.words
            if command.text in SKIPPED:
                continue
            if words[0] == "curl":
                if server_skipped:
                    continue
                assert server is not None, f"line {command.line}: a curl line before any `digitrec serve`"
                assert TUTORIAL_PORT in command.text, f"line {command.line}: curl not to {TUTORIAL_PORT}"
                text = "curl --fail-with-body " + command.text.removeprefix("curl ")
                text = text.replace(TUTORIAL_PORT, f"127.0.0.1:{server.port}")
            elif not with_training and needs_training(command, folders):
                server_skipped = server_skipped or command.is_digitrec("serve")
                continue
            elif command.is_digitrec("serve"):
                if server is not None:
                    server.stop()
                server, server_skipped = Server(command, folder, env), False
                ran += 1
                continue
            elif command.is_digitrec("train"):
                text = _with_option(command.text, "--epochs", TRAIN_EPOCHS)
            elif command.is_digitrec("robustness"):
                text = _with_option(command.text, "--limit", ROBUSTNESS_LIMIT)
            else:
                text = command.text
            try:
                done = subprocess.run(
                    ["bash", "-o", "pipefail", "-c", text],
                    cwd=folder,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=COMMAND_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired as e:
                output = [o.decode(errors="replace") if isinstance(o, bytes) else o or "" for o in (e.stdout, e.stderr)]
                _fail(command, f"ran over {COMMAND_TIMEOUT_S} s", "".join(output))
            if done.returncode != 0:
                _fail(command, f"exited with {done.returncode}", done.stdout + done.stderr)
            ran += 1
    finally:
        if server is not None:
            server.stop()
    return ran


def test_the_tutorial_has_commands_and_examples_in_every_chapter():
    text = TUTORIAL.read_text()
    chapters = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    numbered = [c for c in chapters if re.match(r"\d+\. ", c)]  # not "Where next"
    assert len(numbered) >= 8
    for chapter in numbered:
        title = chapter.splitlines()[0]
        assert "```console" in chapter or "```pycon" in chapter, f"chapter {title!r} has no command"
    commands = tutorial_commands(text)
    assert len(commands) > 30
    assert sum(c.is_digitrec("train") for c in commands) >= 5
    assert commands[0].text == "make install"  # the reader starts from a fresh checkout


def test_the_python_examples_print_what_the_tutorial_shows():
    pytest.importorskip("torch")
    # A closing fence ends an example's output as a blank line would; every line keeps its number.
    text = re.sub(r"^```.*$", "", TUTORIAL.read_text(), flags=re.MULTILINE)
    examples = doctest.DocTestParser().get_doctest(text, {}, "docs/tutorial.md", str(TUTORIAL), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    result = runner.run(examples)  # a failure's report goes to stdout, which pytest shows
    assert result.attempted > 10
    assert result.failed == 0, "see the doctest report above"


def test_every_digitrec_command_in_the_tutorial_is_one_the_cli_accepts():
    pytest.importorskip("torch")  # train's --model choices
    from digitrec.cli import build_parser

    parser = build_parser(with_models=True)
    checked = 0
    for command in tutorial_commands(TUTORIAL.read_text()):
        words = command.words
        if words[0] != "digitrec":
            continue
        argv = words[1:]
        for i, word in enumerate(argv):  # only the command itself, not what its output is piped to
            if word in ("|", "&&", ";", ">", "2>&1"):
                argv = argv[:i]
                break
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"docs/tutorial.md line {command.line}: `{command.text}` is refused by the CLI", pytrace=False)
        checked += 1
    assert checked > 20


def test_the_training_flags_the_tutorial_uses_change_what_chapter_5_says():
    from digitrec.errors import DigitrecError
    from digitrec.training.config import HANDWRITING, make_config

    # runs/nesterov, from the seed preset, and runs/recipe, from the default preset: the same recipe
    # but for bfloat16 and channels-last, which change speed only.
    nesterov = make_config(
        "seed", batch_size=256, lr=0.2, epochs=6, schedule="onecycle", nesterov=True, weight_decay=5e-4
    )
    recipe = make_config("default", model="seed-cnn", augment="none", label_smoothing=0)
    assert recipe.bf16 and recipe.channels_last and not nesterov.bf16
    assert replace(recipe, bf16=False, channels_last=False) == nesterov
    # runs/batchnorm and runs/smoothing: the default preset less its augmentation (and smoothing).
    assert make_config("default", augment="none").augment is None
    assert make_config("default", augment="none", label_smoothing=0).label_smoothing == 0
    assert make_config("seed", augment="handwriting").augment == HANDWRITING == make_config("default").augment
    assert make_config("default", nesterov=False).nesterov is False  # --no-nesterov
    for bad, message in [
        ({"augment": "elastic"}, "unknown augmentation"),
        ({"label_smoothing": 1.0}, "--label-smoothing"),
        ({"weight_decay": -1e-4}, "--weight-decay"),
        ({"schedule": "cosine"}, "unknown schedule"),
    ]:
        with pytest.raises(DigitrecError, match=message):
            make_config("default", **bad)


@needs_mnist
def test_the_commands_that_need_no_training_run_in_order(tmp_path):
    assert run_tutorial(tmp_path, with_training=False) > 15


@needs_mnist
@pytest.mark.slow
def test_the_whole_tutorial_runs_in_order_training_one_epoch_each_time(tmp_path):
    assert run_tutorial(tmp_path, with_training=True) > 30
