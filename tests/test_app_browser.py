"""The real page in headless Chromium: upload, every example, record from a fake microphone, the
live mode, a bad file, and the page at phone width.

Uses the system Chromium (Debian: `apt-get install chromium`) through Playwright's Python package;
Playwright's own browser download is not needed. Screenshots go to $SER_ARTIFACTS_DIR, default
test-artifacts/ in the repository.
"""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from .app_server import running_app
from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
from .conftest import DATA_DIR, REPO, speechlike, tiny_config

CHROMIUM = os.environ.get("SER_CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# Every wait on the page is bounded: loading the page, uploading and classifying take a few seconds.
TIMEOUT_MS = 60_000
LABELS = list(tiny_config().id2label.values())


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("SER_ARTIFACTS_DIR", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """About 20 s of real speech (six RAVDESS clips in a row) as 16-bit WAV, for the fake microphone;
    20 s of synthetic voiced audio when the corpus is absent."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    clips = sorted((DATA_DIR / "ravdess").glob("Actor_07/*.flac"))[:6]
    if clips:
        parts = [sf.read(clip, dtype="int16")[0] for clip in clips]
        sf.write(path, np.concatenate(parts), sf.info(clips[0]).samplerate, subtype="PCM_16")
    else:
        sf.write(path, speechlike(20.0), 16_000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def speech_clip(tmp_path_factory) -> Path:
    """A real RAVDESS clip when the corpus is here, else 3 s of synthetic voiced audio."""
    clips = sorted((DATA_DIR / "ravdess").glob("Actor_*/*.flac"))
    if clips:
        return clips[0]
    path = tmp_path_factory.mktemp("clip") / "speechlike.wav"
    sf.write(path, speechlike(3.0), 16_000, subtype="PCM_16")
    return path


def keep_on_loopback(route):
    """Lets requests to the app through and refuses the rest (web fonts, analytics): the page must work offline."""
    if urlsplit(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


def open_page(browser, url, errors, width=1280, height=1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.route("**/*", keep_on_loopback)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.get_by_role("button", name="Recognise emotion").wait_for()
    return page


def launch(playwright, *extra_args):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], headless=True,
                                      timeout=TIMEOUT_MS)


def wait_for_result(page):
    """Until the Emotion label names a class and the probability and signal plots are drawn."""
    emotion = page.get_by_test_id("label-output-value").first  # the first gr.Label is "Emotion"
    emotion.wait_for()
    page.wait_for_function(
        """() => {
            const images = [...document.querySelectorAll('[data-testid="matplotlib"] img')];
            return images.length >= 2 && images.every(img => img.complete && img.naturalWidth > 0);
        }""",
        timeout=TIMEOUT_MS,
    )
    return emotion.inner_text().strip()


def test_upload_shows_the_emotion_and_the_plots(playwright, app_url, speech_clip, artifacts):
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, app_url, errors)
        page.get_by_label("Upload file").click()
        page.locator("input[type=file]").set_input_files(str(speech_clip))
        # Uploading already classifies; the button must work too, once the file is on the server.
        page.locator(f'[data-testid="download-link"][href$="/{speech_clip.name}"]').wait_for(state="attached")
        page.get_by_role("button", name="Recognise emotion").click()
        assert wait_for_result(page) in LABELS
        assert page.get_by_test_id("label-output-value").nth(1).inner_text().strip() in {
            "positive", "neutral", "negative"}
        assert page.get_by_test_id("toast-body").count() == 0
        page.screenshot(path=artifacts / "browser-upload.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def test_microphone_recording_is_classified(playwright, app_url, speech_clip, artifacts, tmp_path):
    # Chromium's fake capture device plays a 16-bit PCM WAV file.
    samples, rate = sf.read(speech_clip, dtype="int16")
    fake_microphone = tmp_path / "microphone.wav"
    sf.write(fake_microphone, samples, rate, subtype="PCM_16")
    browser = launch(playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={fake_microphone}")
    errors = []
    try:
        page = open_page(browser, app_url, errors)
        page.get_by_label("Record audio").click()
        devices = page.get_by_label("Select input device")
        sync_api.expect(devices).to_be_enabled()  # the fake device was found and permission granted
        page.get_by_role("button", name="Record", exact=True).click()
        page.get_by_role("button", name="Stop", exact=True).first.wait_for()
        page.wait_for_timeout(3_000)
        page.get_by_role("button", name="Stop", exact=True).first.click()
        # Stopping the recording classifies it: about 3 s, so the timeline and segments show too.
        assert wait_for_result(page) in LABELS
        sync_api.expect(page.locator("#timeline img")).to_be_visible()
        sync_api.expect(page.locator("#segments").get_by_text("start (s)")).to_be_visible()
        assert page.get_by_test_id("toast-body").count() == 0
        page.screenshot(path=artifacts / "browser-microphone.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def error_badges(page):
    """Gradio's red "Error" status on an output, and error toasts."""
    return page.locator(".error").filter(has_text="Error").count() + page.get_by_test_id("toast-body").count()


def test_every_example_shows_a_result_and_no_error(playwright, app_url, artifacts):
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, app_url, errors)
        examples = page.locator(".gallery-item")
        examples.first.wait_for()  # count() does not wait for the gallery to render
        assert examples.count() == len(list((REPO / "examples").glob("*.flac")))
        previous = None
        for index in range(examples.count()):
            examples.nth(index).click()
            # Done when the probability chart is a new picture (each clip draws different wedges).
            page.wait_for_function(
                """previous => {
                    const img = document.querySelector('#probabilities img');
                    return img && img.complete && img.naturalWidth > 0 && img.src !== previous;
                }""", arg=previous, timeout=TIMEOUT_MS)
            previous = page.locator("#probabilities img").get_attribute("src")
            assert page.get_by_test_id("label-output-value").first.inner_text().strip() in LABELS
            assert error_badges(page) == 0, f"example {index} shows an error"
        page.screenshot(path=artifacts / "browser-examples.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def test_live_session_updates_the_emotion_and_ends_with_a_timeline(playwright, app_url, long_clip, artifacts):
    browser = launch(playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={long_clip}")
    errors = []
    try:
        page = open_page(browser, app_url, errors)
        page.get_by_role("tab", name="Live").click()
        page.get_by_role("button", name="Record", exact=True).last.click()
        # Each update redraws the band, naming the chunk it answers; Gradio's timer may sit beside the text.
        updates = set()
        for _ in range(90):
            page.wait_for_timeout(1_000)
            band = page.locator("#live-band .segment-band")
            if band.count():
                updates.add(band.first.get_attribute("data-chunk"))
            if len(updates) >= 4:
                break
        assert len(updates) >= 3, (updates, page.locator("#live-now").inner_text(),
                                   page.get_by_test_id("toast-body").all_inner_texts())
        sync_api.expect(page.locator("#live-now")).to_contain_text(
            re.compile(r"\d+\.\d s: (not sure: \w+ \(\d+%\) or \w+ \(\d+%\)|\w+ \(\d+%\))"))
        assert page.locator("#live-band .segment").count() >= 1
        page.screenshot(path=artifacts / "browser-live-running.png", full_page=True)
        page.get_by_role("button", name="Stop", exact=True).last.click()
        sync_api.expect(page.locator("#live-timeline img")).to_be_visible()
        sync_api.expect(page.locator("#live-summary")).to_contain_text("Whole recording")
        assert error_badges(page) == 0, page.get_by_test_id("toast-body").all_inner_texts()
        page.screenshot(path=artifacts / "browser-live-stopped.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def overlaps(a, b) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


@pytest.mark.parametrize("width", [390, 1280])
def test_no_picture_is_hidden_under_a_label(playwright, app_url, long_clip, artifacts, width):
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, app_url, errors, width=width, height=844)
        page.get_by_label("Upload file").click()
        page.locator("input[type=file]").set_input_files(str(long_clip))
        wait_for_result(page)
        sync_api.expect(page.locator("#timeline img")).to_be_visible()
        pictures = [page.locator(f"#{name} img").bounding_box() for name in ("probabilities", "signal", "timeline")]
        labels = [box for box in (label.bounding_box() for label in page.get_by_test_id("block-label").all()) if box]
        for picture in pictures:
            assert picture["width"] <= width and all(not overlaps(label, picture) for label in labels)
        # Nothing sticks out sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=artifacts / f"browser-{width}px.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def test_a_truncated_wav_is_classified_and_the_page_says_so(playwright, app_url, artifacts, tmp_path):
    browser = launch(playwright)
    try:
        page = open_page(browser, app_url, [])
        page.get_by_label("Upload file").click()
        page.locator("input[type=file]").set_input_files(str(write_truncated_wav(tmp_path / "cut.wav")))
        assert wait_for_result(page) in LABELS
        sync_api.expect(page.get_by_test_id("toast-body").first).to_contain_text(TRUNCATED_SENTENCE)
        page.screenshot(path=artifacts / "browser-truncated.png", full_page=True)
    finally:
        browser.close()


def test_bad_file_shows_the_sentence(playwright, app_url, artifacts, tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    browser = launch(playwright)
    try:
        page = open_page(browser, app_url, [])
        page.get_by_label("Upload file").click()
        page.locator("input[type=file]").set_input_files(str(bad))
        toast = page.get_by_test_id("toast-body").first
        toast.wait_for()
        sync_api.expect(toast).to_contain_text(
            re.compile(re.escape("Cannot read 'noise.wav': it is not a supported audio file or it is corrupt.")))
        page.screenshot(path=artifacts / "browser-error.png", full_page=True)
    finally:
        browser.close()

