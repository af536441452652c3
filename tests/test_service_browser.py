"""The drawing page end to end: a real server, headless Chromium, real pointer events.

Try: `.venv/bin/pytest tests/test_service_browser.py -q` (needs Debian's chromium and
chromium-driver, and `pip install selenium`; skipped when /usr/bin/chromium is absent, but
failed when CI=true: there a missing browser must not pass as a skipped test).
Set DIGITREC_SCREENSHOT=docs/service.png to also save the screenshot for the docs there.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI", "").lower() == "true"


def cannot_run(why: str) -> None:
    """Skip the module here; fail it on CI, where the browser test must run."""
    if IN_CI:
        pytest.fail(f"headless browser test on CI: {why}", pytrace=False)
    pytest.skip(f"headless browser test: {why}", allow_module_level=True)


if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
    cannot_run(f"{CHROMIUM} or {CHROMEDRIVER} is absent (apt-get install chromium chromium-driver)")
try:
    import fastapi  # noqa: F401
    import uvicorn
    from selenium import webdriver
except ImportError as e:
    cannot_run(f"{e.name} is not installed (pip install -e '.[serve]' selenium)")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from digitrec.recognition.backends import Backend  # noqa: E402
from digitrec.recognition.recognizer import Recognizer  # noqa: E402
from digitrec.service.app import Settings, create_app  # noqa: E402

pytestmark = pytest.mark.timeout(180)
WAIT_S = 20  # a prediction normally shows within a second; the machine may be busy

Stroke = list[tuple[float, float]]
# Shapes in the page canvas's pixels (560x280), drawn large and clear.
ONE: list[Stroke] = [[(90, 45), (90, 235)]]
SEVEN: list[Stroke] = [[(390, 55), (510, 55), (430, 235)]]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> Stroke:
    # Start at the top and go round once, a little past the start so the loop closes.
    return [(cx + rx * math.sin(2 * math.pi * i / n), cy - ry * math.cos(2 * math.pi * i / n)) for i in range(n + 3)]


ZERO: list[Stroke] = [ellipse(240, 140, 55, 95)]


def densify(stroke: Stroke, step: float = 8.0) -> Stroke:
    """Points every `step` pixels, as a real pointer reports them."""
    out = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(1, n + 1)]
    return out


NARROW = 3  # columns of ink in the 28x28 image: a 1 is no wider; the fake model calls wider ink no digit


def ones_or_no_digit(x):
    """A fake 12-output model: narrow ink is a sure 1, any other ink is no digit at all."""
    import numpy as np

    logits = np.zeros((len(x), 12), np.float32)
    for i, image in enumerate(x[:, 0] > x[:, 0].min()):
        logits[i, 1 if image.any(0).sum() <= NARROW else 11] = 20
    return logits


def serve_in_thread(app):
    """`app` under uvicorn on a free port of 127.0.0.1, in a thread: (server, URL, stop)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        threading.Event().wait(0.05)
    assert srv.started, "the server did not start"

    def stop() -> None:
        srv.should_exit = True
        thread.join(10)
        sock.close()

    return srv, f"http://127.0.0.1:{sock.getsockname()[1]}/", stop


def temporary_store(tmp_path_factory) -> str:
    """A profile store of its own: a test never writes into the user's real data folder."""
    return str(tmp_path_factory.mktemp("store") / "store.sqlite")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app under uvicorn on a free port of 127.0.0.1, in a thread; yields it and its URL."""
    srv, url, stop = serve_in_thread(create_app(Settings(store=temporary_store(tmp_path_factory))))
    yield srv, url
    stop()


@pytest.fixture(scope="module")
def odd_server(tmp_path_factory):
    """The app with its recognizer over `ones_or_no_digit`; yields its URL."""
    app = create_app(Settings(store=temporary_store(tmp_path_factory)))
    srv, url, stop = serve_in_thread(app)
    path = tmp_path_factory.mktemp("fake") / "fake.onnx"
    path.write_bytes(b"")
    info = {"backend": "fake", "precision": "float32"}
    app.state.recognizer = Recognizer(Backend(run=ones_or_no_digit, fixed_batch=None, metadata={}, info=info), path)
    yield url
    stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,800",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


PROFILE_KEY = "digitrec.profile"  # where the page keeps its profile's identifier (localStorage)


def open_page(browser, url: str):
    """Load the page at `url` without a profile from an earlier test; wait until it talked to the server."""
    browser.get(url)
    if browser.execute_script("const had = localStorage.length > 0; localStorage.clear(); return had"):
        browser.refresh()
    # The footer names the model once the page has talked to the server.
    WebDriverWait(browser, WAIT_S).until(lambda d: "loading" not in d.find_element(By.ID, "model").text)
    assert "cannot be reached" not in browser.find_element(By.ID, "model").text
    return browser


@pytest.fixture
def page(server, browser):
    return open_page(browser, server[1])


def draw(driver, strokes: list[Stroke], kind: str = interaction.POINTER_MOUSE) -> None:
    """Draw strokes (canvas pixels) on the pad with real pointer events of `kind`."""
    canvas = driver.find_element(By.ID, "ink")
    r = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();return [r.left, r.top, r.width / arguments[0].width];", canvas
    )
    left, top, scale = r
    actions = ActionBuilder(driver, mouse=PointerInput(kind, kind), duration=0)
    for stroke in strokes:
        points = [(round(left + x * scale), round(top + y * scale)) for x, y in densify(stroke)]
        actions.pointer_action.move_to_location(*points[0]).pointer_down()
        for p in points[1:]:
            actions.pointer_action.move_to_location(*p)
        actions.pointer_action.pointer_up()
    actions.perform()


def reading(driver, expected: str) -> str:
    """Wait until the page shows `expected` as the number read; return the status line."""
    text = driver.find_element(By.ID, "text")
    try:
        WebDriverWait(driver, WAIT_S).until(lambda d: text.text == expected)
    except Exception:
        pytest.fail(
            f"the page shows {text.text!r}, status {driver.find_element(By.ID, 'status').text!r}; expected {expected!r}"
        )
    return driver.find_element(By.ID, "status").text


def keys(driver, *combo: str) -> None:
    driver.find_element(By.ID, "ink").send_keys(*combo)


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def stored_profile(driver) -> str | None:
    return driver.execute_script("return localStorage.getItem(arguments[0])", PROFILE_KEY)


def profile_on_server(url: str, profile: str) -> dict | None:
    """GET /api/v1/profiles/{profile}: its JSON, or None for a 404."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}api/v1/profiles/{profile}", timeout=WAIT_S) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def recognitions_sent(driver) -> list[str]:
    """The URLs of the recognition requests the page made since it was loaded."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => n.includes('/api/v1/recognize'))"
    )


def correct(driver, digit: int, samples: int) -> str:
    """Press "Wrong? It was: `digit`"; wait until the page read the drawing again with a profile of
    `samples` samples; return the status line."""
    status = driver.find_element(By.ID, "status")
    driver.find_element(By.ID, f"correct-{digit}").click()
    said = f"Your profile has {samples} sample{'' if samples == 1 else 's'}."
    try:
        WebDriverWait(driver, WAIT_S).until(lambda d: said in status.text)
    except Exception:
        pytest.fail(f"the status says {status.text!r}; expected {said!r} in it")
    return status.text


def teach_prompt(driver, expected: str) -> None:
    prompt = driver.find_element(By.ID, "teach-prompt")
    try:
        WebDriverWait(driver, WAIT_S).until(lambda d: prompt.text == expected)
    except Exception:
        pytest.fail(f"the teaching prompt says {prompt.text!r}; expected {expected!r}")


def test_draw_a_digit_and_see_it_read(page, tmp_path):
    draw(page, ONE)
    assert reading(page, "1") == "Read 1."
    bars = page.find_elements(By.CSS_SELECTOR, "#bars li")
    assert len(bars) == 10 and "best" in bars[1].get_attribute("class")
    seen = page.find_elements(By.CSS_SELECTOR, "#seen img")
    assert len(seen) == 1 and seen[0].get_attribute("src").startswith("data:image/png")
    keys(page, Keys.ESCAPE)
    assert reading(page, "–") and page.find_element(By.ID, "status").text == "Draw a digit in the pad."
    draw(page, ZERO, interaction.POINTER_PEN)
    reading(page, "0")
    page.find_element(By.ID, "clear").click()
    draw(page, SEVEN, interaction.POINTER_TOUCH)
    reading(page, "7")
    page.save_screenshot(str(tmp_path / "seven.png"))
    assert console_errors(page) == []


def test_draw_a_number_boxes_undo_and_clear(page, tmp_path):
    draw(page, ONE + ZERO + SEVEN)
    assert reading(page, "107") == "Read 107."
    assert len(page.find_elements(By.CSS_SELECTOR, "#seen img")) == 3
    # The overlay has the boxes drawn: some of its pixels are no longer transparent.
    painted = page.execute_script(
        "const c = document.getElementById('overlay');"
        "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 == 3 && v);"
    )
    assert painted
    shot = tmp_path / "number.png"
    page.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("DIGITREC_SCREENSHOT"):  # for the docs: docs/service.png
        shutil.copy(shot, os.environ["DIGITREC_SCREENSHOT"])
    keys(page, Keys.CONTROL, "z")  # undo the 7
    reading(page, "10")
    page.find_element(By.ID, "undo").click()  # and the 0
    reading(page, "1")
    keys(page, Keys.DELETE)
    reading(page, "–")
    assert console_errors(page) == []


def test_a_dot_is_no_digit(page):
    draw(page, [[(280, 140)]])
    reading(page, "–")  # also the blank page's reading: wait for the server's answer itself
    status = page.find_element(By.ID, "status")
    WebDriverWait(page, WAIT_S).until(lambda d: status.text == "No digit found — draw a digit.")


def test_phone_sized_screen(page, tmp_path):
    page.set_window_size(390, 844)
    try:
        assert page.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        draw(page, ONE)
        reading(page, "1")
        page.save_screenshot(str(tmp_path / "phone.png"))
    finally:
        page.set_window_size(1100, 800)


def test_ink_that_is_no_digit_is_called_so_and_a_number_shows_it_as_a_question_mark(odd_server, browser):
    browser.get(odd_server)
    WebDriverWait(browser, WAIT_S).until(lambda d: "loading" not in d.find_element(By.ID, "model").text)
    status = browser.find_element(By.ID, "status")
    draw(browser, SEVEN)  # the fake model calls it no digit
    reading(browser, "✗")
    WebDriverWait(browser, WAIT_S).until(lambda d: status.text == "That doesn't look like a digit.")
    assert "odd" in status.get_attribute("class")
    assert "not a digit" in browser.find_element(By.CSS_SELECTOR, "#seen span").text
    draw(browser, ONE)  # now "1" beside the ink that is no digit
    assert reading(browser, "1?") == "Read 1? — ? marks ink that doesn't look like a digit."
    marks = browser.find_elements(By.CSS_SELECTOR, "#text span.odd")
    assert [m.text for m in marks] == ["?"]
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#seen span")]
    assert captions[0].startswith("1 ·") and captions[1] == "? · not a digit"
    keys(browser, Keys.ESCAPE)
    reading(browser, "–")
    assert console_errors(browser) == []


def test_what_the_number_must_be_chooses_the_reading_or_says_none_fits(page):
    page.find_element(By.CSS_SELECTOR, "#constraints summary").click()
    checksums = [o.text for o in page.find_elements(By.CSS_SELECTOR, "#c-checksum option")]
    assert checksums == ["none", "luhn", "verhoeff", "gtin"]
    draw(page, ONE + ZERO + SEVEN)
    reading(page, "107")
    pattern = page.find_element(By.ID, "c-pattern")
    pattern.send_keys(r"9\d\d", Keys.TAB)  # "change" fires when the field loses focus
    status = page.find_element(By.ID, "status")
    WebDriverWait(page, WAIT_S).until(lambda d: "No reading fits" in status.text)
    assert "reads 107 without that" in status.text and page.find_element(By.ID, "text").text == "?"
    pattern.clear()
    pattern.send_keys(r"1\d7", Keys.TAB)
    assert reading(page, "107") == "Read 107."
    valid = page.find_element(By.ID, "c-valid")
    WebDriverWait(page, WAIT_S).until(lambda d: valid.text.startswith("Readings that fit: 107 ("))
    assert console_errors(page) == []


def test_the_api_docs_render_from_the_servers_own_files(server, browser):
    browser.get(server[1] + "docs")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/api/v1/recognize" in paths
    assert console_errors(browser) == []


def test_a_correction_makes_a_profile_and_the_next_reading_uses_it(server, page):
    assert not page.find_element(By.ID, "correct").is_displayed()  # nothing read yet
    draw(page, SEVEN)
    reading(page, "7")
    assert page.find_element(By.ID, "correct-label").text == "Wrong? It was:"
    assert not page.find_element(By.ID, "profile").is_displayed() and stored_profile(page) is None
    said = correct(page, 1, samples=1)
    assert said.startswith("Learnt: this is a 1. Your profile has 1 sample. ")
    profile = stored_profile(page)
    assert profile and page.find_element(By.ID, "profile-info").text == "Reading with your profile: 1 sample"
    assert profile_on_server(server[1], profile)["per_digit"]["1"] == 1
    assert recognitions_sent(page)[-1].endswith(f"&profile={profile}")  # the reading after it used it
    correct(page, 1, samples=2)
    assert reading(page, "1").endswith("Read 1.")
    # The profile stays with the browser: after a reload the page reads with it again.
    page.refresh()
    WebDriverWait(page, WAIT_S).until(lambda d: d.find_element(By.ID, "profile-info").text.endswith("2 samples"))
    draw(page, SEVEN)
    reading(page, "1")
    assert recognitions_sent(page)[-1].endswith(f"&profile={profile}")
    assert console_errors(page) == []


def test_teach_mode_asks_for_each_digit_in_turn_and_leaves_a_profile_of_them(server, browser):
    page = open_page(browser, server[1] + "?teach_digits=01&teach_rounds=2")
    page.find_element(By.ID, "teach").click()
    teach_prompt(page, "Draw a 0 (1 of 2)")
    assert page.switch_to.active_element.get_attribute("id") == "teach-next"
    page.find_element(By.ID, "teach-next").click()  # nothing drawn yet: asks again
    teach_prompt(page, "The pad is empty. Draw a 0 (1 of 2)")
    draw(page, ZERO)
    page.find_element(By.ID, "teach-next").click()
    teach_prompt(page, "Draw a 0 (2 of 2)")
    assert page.find_element(By.ID, "text").text == "–"  # teaching reads nothing; the pad was cleared
    draw(page, ZERO)
    keys(page, Keys.ENTER)  # the keyboard's Next
    teach_prompt(page, "Draw a 1 (1 of 2)")
    for then in ("Draw a 1 (2 of 2)", None):
        draw(page, ONE)
        page.find_element(By.ID, "teach-next").click()
        if then:
            teach_prompt(page, then)
    status = page.find_element(By.ID, "status")
    WebDriverWait(page, WAIT_S).until(lambda d: status.text.startswith("Your profile is ready: 4 samples."))
    assert not page.find_element(By.ID, "teach-panel").is_displayed()
    assert page.find_element(By.ID, "profile-info").text == "Reading with your profile: 4 samples"
    info = profile_on_server(server[1], stored_profile(page))
    assert info["samples"] == 4 and info["per_digit"] == {str(d): 2 if d < 2 else 0 for d in range(10)}
    # Stopping early keeps what was taught so far.
    page.find_element(By.ID, "teach").click()
    teach_prompt(page, "Draw a 0 (1 of 2)")
    draw(page, ZERO)
    page.find_element(By.ID, "teach-next").click()
    teach_prompt(page, "Draw a 0 (2 of 2)")
    page.find_element(By.ID, "teach-stop").click()
    WebDriverWait(page, WAIT_S).until(lambda d: status.text.startswith("Stopped teaching. Your profile has 5 samples."))
    assert profile_on_server(server[1], stored_profile(page))["per_digit"]["0"] == 3
    assert console_errors(page) == []


def test_deleting_the_profile_hides_it_and_the_server_forgets_it(server, page):
    draw(page, ONE + ZERO + SEVEN)
    reading(page, "107")
    page.find_elements(By.CSS_SELECTOR, "#seen button")[2].click()  # a correction of the 7 alone
    assert page.find_element(By.ID, "correct-label").text == "Wrong? Digit 3 of 3 was:"
    assert correct(page, 7, samples=1).startswith("Learnt: digit 3 is a 7.")
    profile = stored_profile(page)
    assert profile_on_server(server[1], profile)["per_digit"]["7"] == 1
    selected = page.find_elements(By.CSS_SELECTOR, "#seen button")[2]
    assert selected.get_attribute("aria-pressed") == "true"  # still the digit corrected
    page.find_element(By.ID, "profile-delete").click()
    status = page.find_element(By.ID, "status")
    WebDriverWait(page, WAIT_S).until(lambda d: status.text == "Your profile is deleted. Read 107.")
    assert not page.find_element(By.ID, "profile").is_displayed() and stored_profile(page) is None
    assert profile_on_server(server[1], profile) is None
    assert "profile=" not in recognitions_sent(page)[-1]
    # An identifier the server no longer knows is forgotten silently, and the page reads without it.
    page.execute_script("localStorage.setItem(arguments[0], arguments[1])", PROFILE_KEY, profile)
    page.refresh()
    WebDriverWait(page, WAIT_S).until(lambda d: stored_profile(d) is None)
    assert not page.find_element(By.ID, "profile").is_displayed()
    draw(page, ONE)
    assert reading(page, "1") == "Read 1."
    assert [e for e in console_errors(page) if "404" not in e] == []  # the browser logs the 404 itself


def explanations_asked(driver) -> list[str]:
    """The URLs of the /api/v1/explain requests the page made (and got answers to) since it was loaded."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => n.includes('/api/v1/explain'))"
    )


def open_why(driver) -> None:
    """Open "Why this digit?" (a <details>) unless it is open."""
    if not driver.find_element(By.ID, "why").get_attribute("open"):
        driver.find_element(By.ID, "why-toggle").click()


def explained(driver, caption: str) -> None:
    """Wait until the why view shows its picture and 8 feature maps, captioned `caption`."""

    def shown(d) -> bool:
        maps = d.find_elements(By.CSS_SELECTOR, "#why-maps canvas")
        return (
            d.find_element(By.ID, "why-overlay").is_displayed()
            and len(maps) == 8
            and all(m.is_displayed() for m in maps)
            and d.find_element(By.ID, "why-body").get_attribute("aria-busy") == "false"
            and d.find_element(By.ID, "why-caption").text.startswith(caption)
        )

    try:
        WebDriverWait(driver, WAIT_S).until(shown)
    except Exception:
        said = driver.find_element(By.ID, "why-status").text
        got = driver.find_element(By.ID, "why-caption").text
        pytest.fail(f"the why view says {said!r}, captioned {got!r}; expected {caption!r} and 8 feature maps")


# Of the 28x28 overlay and the 28x28 input shown in "What the network saw" (the `i`th): how many
# pixels are ink (bright in the input), and how many of those the overlay paints red-ish.
RED_ON_INK = """
const [i, done] = [arguments[0], arguments[arguments.length - 1]];
const overlay = document.getElementById('why-overlay');
const shown = overlay.getContext('2d').getImageData(0, 0, 28, 28).data;
const img = document.querySelectorAll('#seen img')[i];
img.decode().then(() => {
  const c = document.createElement('canvas');
  c.width = c.height = 28;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0, 28, 28);
  const input = g.getImageData(0, 0, 28, 28).data;
  let ink = 0, red = 0, white = 0;
  for (let p = 0; p < input.length; p += 4) {
    if (shown[p] > 250 && shown[p + 1] > 250 && shown[p + 2] > 250) white++;
    if (input[p] < 128) continue;
    ink++;
    if (shown[p] > shown[p + 1] + 40 && shown[p] > shown[p + 2] + 40) red++;
  }
  done([overlay.width, overlay.height, ink, red, white]);
});
"""


def test_why_this_digit_shows_which_pixels_raised_its_score_and_the_first_feature_maps(page):
    assert not page.find_element(By.ID, "why-body").is_displayed()  # closed at first
    draw(page, ONE)
    reading(page, "1")
    time.sleep(0.5)  # time enough for an explanation (~0.1 s) the closed view must not ask for
    assert explanations_asked(page) == []
    open_why(page)
    explained(page, "It reads 1")
    asked = explanations_asked(page)  # one, asked on opening
    assert len(asked) == 1 and "/api/v1/explain" in asked[0] and "images=" not in asked[0]
    legend = page.find_element(By.ID, "why-legend").text
    assert legend.startswith("occlusion: ") and "raised the score of 1" in legend
    said = page.find_element(By.ID, "why-status").get_attribute("textContent")  # for screen readers
    assert said == "It reads 1: explained by occlusion."
    width, height, ink, red, white = page.execute_async_script(RED_ON_INK, 0)
    assert (width, height) == (28, 28) and ink > 20
    assert red > ink / 2, f"{red} of the {ink} ink pixels are red"  # the stroke raised the 1's score
    assert white == 0  # the attribution is painted over a grey input, not on a white page
    overlay = page.find_element(By.ID, "why-overlay")
    assert overlay.get_attribute("role") == "img" and "score of 1" in overlay.get_attribute("aria-label")
    assert overlay.size["width"] >= 5 * 28 and overlay.value_of_css_property("image-rendering") == "pixelated"
    captions = [c.text for c in page.find_elements(By.CSS_SELECTOR, "#why-maps li span")]
    assert len(captions) == 8 and all(c.startswith("ch ") and c[3:].isdigit() for c in captions)
    labels = [c.get_attribute("aria-label") for c in page.find_elements(By.CSS_SELECTOR, "#why-maps canvas")]
    assert all(f"conv_1 channel {c[3:]}" in label for c, label in zip(captions, labels))
    assert page.find_element(By.ID, "why-maps-title").text.startswith("Its first convolution (conv_1)")
    # A correction reads again with the new profile: the explanation of that reading uses it too.
    correct(page, 1, samples=1)
    WebDriverWait(page, WAIT_S).until(lambda d: len(explanations_asked(d)) == 2)
    assert explanations_asked(page)[-1].endswith(f"profile={stored_profile(page)}")
    explained(page, "It reads 1")
    assert console_errors(page) == []


def test_choosing_another_digit_of_a_number_explains_that_one_and_a_closed_view_asks_nothing(page):
    open_why(page)
    status = page.find_element(By.ID, "why-status")
    assert status.text.startswith("Draw a digit")
    draw(page, ONE + ZERO + SEVEN)
    reading(page, "107")
    explained(page, "Digit 1 of 3 reads 1")
    page.find_elements(By.CSS_SELECTOR, "#seen button")[1].click()
    explained(page, "Digit 2 of 3 reads 0")
    assert status.get_attribute("textContent") == "Digit 2 of 3 reads 0: explained by occlusion."
    assert "raised the score of 0" in page.find_element(By.ID, "why-legend").text
    assert "digit 2" in page.find_element(By.ID, "why-overlay").get_attribute("aria-label")
    width, height, ink, red, _ = page.execute_async_script(RED_ON_INK, 1)
    assert (width, height) == (28, 28) and red > 0
    assert len(explanations_asked(page)) == 1  # the choice reuses the answer for the number
    # Closed, the view asks nothing, however the drawing changes.
    page.find_element(By.ID, "why-toggle").click()
    keys(page, Keys.CONTROL, "z")  # undo the 7
    reading(page, "10")
    draw(page, SEVEN)
    reading(page, "107")
    open_why(page)  # opening explains the reading now on show
    explained(page, "Digit 1 of 3 reads 1")
    assert len(explanations_asked(page)) == 2
    keys(page, Keys.ESCAPE)  # nothing to explain: the picture goes
    reading(page, "–")
    WebDriverWait(page, WAIT_S).until(lambda d: not d.find_element(By.ID, "why-overlay").is_displayed())
    assert status.text.startswith("Draw a digit")
    assert console_errors(page) == []


FAILING_EXPLAIN = """
const fetched = window.fetch;
window.fetch = (url, options) => String(url).includes('/api/v1/explain')
  ? Promise.resolve(new Response(JSON.stringify({detail: 'the explainer is out to lunch'}), {status: 503}))
  : fetched(url, options);
"""


def test_the_why_view_says_when_the_explanation_fails(page):
    page.execute_script(FAILING_EXPLAIN)
    open_why(page)
    draw(page, SEVEN)
    reading(page, "7")
    status = page.find_element(By.ID, "why-status")
    WebDriverWait(page, WAIT_S).until(lambda d: "out to lunch" in status.text)
    assert status.text == "Cannot explain this reading: the explainer is out to lunch"
    assert "error" in status.get_attribute("class") and not page.find_element(By.ID, "why-overlay").is_displayed()
    assert page.find_element(By.ID, "status").text == "Read 7."  # the reading itself is unharmed
    assert console_errors(page) == []


def test_says_when_the_server_cannot_be_reached(server, page):
    srv, _ = server
    srv.should_exit = True  # last test in the module: stop the server under the page
    WebDriverWait(page, WAIT_S).until(lambda d: not _answers(server[1]))
    draw(page, ONE)
    WebDriverWait(page, WAIT_S).until(lambda d: "Cannot reach the server" in d.find_element(By.ID, "status").text)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(url + "healthz", timeout=1)
        return True
    except OSError:
        return False
