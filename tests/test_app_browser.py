"""The real page in headless Chromium: upload (audio and video), every example, record from a fake
microphone, the live mode with and without a microphone, bad files after good ones, the pictures'
alternative text, the page at phone width, the dark theme and the downloads.

Uses the system Chromium (Debian: `apt-get install chromium`) through Playwright's Python package;
Playwright's own browser download is not needed. Screenshots go to $SER_ARTIFACTS_DIR, default
test-artifacts/ in the repository.
"""

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from ser_model.serving.analysis import SEGMENT_COLUMNS
from ser_model.serving.prediction import CSV_COLUMNS

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
# Every wait on the page is bounded: loading the page, uploading and classifying take a few seconds
# (a minute or more when other work shares the cores).
TIMEOUT_MS = 120_000
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


def open_page(browser, url, errors, width=1280, height=1000, query=""):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.route("**/*", keep_on_loopback)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + query)
    page.locator("#upload").wait_for()
    return page


def launch(playwright, *extra_args):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], headless=True,
                                      timeout=TIMEOUT_MS)


def upload(page, path):
    """Drops a file on the upload box, removing the one already there (the box holds one file)."""
    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#upload input[type=file]").set_input_files(str(path))


def wait_for_result(page):
    """Until the headline names a class and the probability and signal pictures are drawn; the headline."""
    page.wait_for_function(
        """() => ['probabilities', 'signal'].every(name => {
            const img = document.querySelector(`#${name} img`);
            return img && img.complete && img.naturalWidth > 0 && img.checkVisibility();
        })""",
        timeout=TIMEOUT_MS,
    )
    return page.locator("#verdict h2").inner_text().strip()


@contextlib.contextmanager
def page_with_result(playwright, app_url, clip, errors=None, **page_options):
    """A fresh browser on the page with `clip` uploaded and classified; yields the page and its headline."""
    browser = launch(playwright)
    try:
        page = open_page(browser, app_url, [] if errors is None else errors, **page_options)
        upload(page, clip)
        yield page, wait_for_result(page)
    finally:
        browser.close()


def top_emotion(headline: str) -> str:
    """The first emotion the headline names: 'sad (72%)', 'probably sad (48%)', 'not sure: sad (46%) or ...'."""
    return re.match(r"(?:not sure: |probably )?(\w+) \([<>]?\d+%\)", headline).group(1)


def test_upload_shows_the_emotion_and_the_plots(playwright, app_url, speech_clip, artifacts):
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, app_url, errors)
        # Nothing of a result shows before there is one: no empty boxes on the landing page.
        assert not page.locator("#results").is_visible()
        page.screenshot(path=artifacts / "browser-landing.png", full_page=True)
        upload(page, speech_clip)
        assert top_emotion(wait_for_result(page)) in LABELS
        assert page.get_by_test_id("label-output-value").first.inner_text().strip() in {
            "positive", "neutral", "negative"}  # the emotion's own label has no heading: the headline says it
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
        devices = page.locator("#record").get_by_label("Select input device")
        sync_api.expect(devices).to_be_enabled()  # the fake device was found and permission granted
        page.locator("#record").get_by_role("button", name="Record", exact=True).click()
        page.locator("#record").get_by_role("button", name="Stop", exact=True).wait_for()
        page.wait_for_timeout(3_000)
        page.locator("#record").get_by_role("button", name="Stop", exact=True).click()
        # Stopping the recording classifies it: about 3 s, so the timeline and segments show too.
        assert top_emotion(wait_for_result(page)) in LABELS
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
        # Each example says what it is to the model (from its split; the tiny test model has none).
        assert all(text.startswith(("RAVDESS, acted ", "TESS, acted ")) for text in examples.all_inner_texts())
        previous = None
        for index in range(examples.count()):
            examples.nth(index).click()
            # Done when the probability chart is a new picture (each example is a new result).
            page.wait_for_function(
                """previous => {
                    const img = document.querySelector('#probabilities img');
                    return img && img.complete && img.naturalWidth > 0 && img.src !== previous;
                }""", arg=previous, timeout=TIMEOUT_MS)
            previous = page.locator("#probabilities img").get_attribute("src")
            assert top_emotion(page.locator("#verdict h2").inner_text()) in LABELS
            assert error_badges(page) == 0, f"example {index} shows an error"
        page.screenshot(path=artifacts / "browser-examples.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def test_live_session_updates_the_emotion_and_keeps_the_recording_after_stop(playwright, app_url, long_clip,
                                                                            artifacts):
    browser = launch(playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={long_clip}")
    errors = []
    try:
        page = open_page(browser, app_url, errors)
        page.get_by_role("tab", name="Live").click()
        # Gradio loads the recorder lazily: a click before the microphone is ready never starts the stream.
        sync_api.expect(page.locator("#live-audio").get_by_label("Select input device")).to_be_enabled()
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
            re.compile(r"\d+\.\d s: (not sure: \w+ \(\d+%\) or \w+ \(\d+%\)|(probably )?\w+ \([<>]?\d+%\))"))
        assert page.locator("#live-band .segment").count() >= 1
        page.screenshot(path=artifacts / "browser-live-running.png", full_page=True)
        page.get_by_role("button", name="Stop", exact=True).last.click()
        sync_api.expect(page.locator("#live-timeline img")).to_be_visible()
        alt = page.locator("#live-timeline img").get_attribute("alt")
        assert re.match(r"Emotion over \d+\.\d s, in \d+ segments?: ", alt), alt
        sync_api.expect(page.locator("#live-summary")).to_contain_text("Whole recording")
        # The recording stays, to replay and to download, with the prediction.
        sync_api.expect(page.locator("#live-recording")).to_be_visible()
        recording = page.locator('#live-recording [data-testid="download-link"]')
        assert recording.get_attribute("href").endswith("/recording.wav")
        with page.expect_download() as download:
            page.locator("#live-download-json").click()
        (saved,) = json.loads(Path(download.value.path()).read_text())
        assert saved["path"] == "live-recording" and saved["duration"] > 2 and len(saved["windows"]) >= 2
        assert error_badges(page) == 0, page.get_by_test_id("toast-body").all_inner_texts()
        page.screenshot(path=artifacts / "browser-live-stopped.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def test_the_live_tab_without_a_microphone_says_so_and_never_claims_to_listen(playwright, app_url, artifacts):
    browser = launch(playwright)  # no fake device: this browser has no microphone at all
    try:
        page = open_page(browser, app_url, [])
        page.get_by_role("tab", name="Live").click()
        page.get_by_role("button", name="Record", exact=True).last.click()
        sync_api.expect(page.get_by_test_id("toast-body").first).to_contain_text("Could not start recording")
        page.wait_for_timeout(2_000)  # time enough for a status update, were one to come
        status = page.locator("#live-now").inner_text()
        assert "listening" not in status and "no microphone" in status
        page.screenshot(path=artifacts / "browser-live-no-microphone.png", full_page=True)
    finally:
        browser.close()


def overlaps(a, b) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def smallest_timeline_text_pixels(shown_width: float, natural_width: float) -> float:
    """The smallest text of the timeline picture, in CSS pixels as shown: its size in points at the
    figure's dpi (the PNG is saved at it), scaled by how wide the page shows the picture."""
    from matplotlib.text import Text

    from ser_model.serving.prediction import WindowPrediction
    from ser_model.serving.plots import timeline_figure

    windows = [WindowPrediction(start, start + 1.0, {label: 1 / len(LABELS) for label in LABELS})
               for start in (0.0, 0.5, 1.0)]
    figure = timeline_figure(windows, LABELS)
    figure.canvas.draw()  # lays out the legend and the ticks
    sizes = [text.get_fontsize() for text in figure.findobj(Text) if text.get_visible() and text.get_text().strip()]
    return min(sizes) * figure.dpi / 72 * shown_width / natural_width


@pytest.mark.parametrize("width", [390, 1280])
def test_the_layout_fits_the_screen_and_stays_readable(playwright, app_url, long_clip, artifacts, width):
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, app_url, errors, width=width, height=844)
        upload(page, long_clip)
        wait_for_result(page)
        sync_api.expect(page.locator("#timeline img")).to_be_visible()
        # The results open below the examples: they are brought into view.
        page.wait_for_function("() => Math.abs(document.getElementById('results').getBoundingClientRect().top) "
                               "< window.innerHeight / 2")
        pictures = [page.locator(f"#{name} img").bounding_box() for name in ("probabilities", "signal", "timeline")]
        labels = [box for box in (label.bounding_box() for label in page.get_by_test_id("block-label").all()) if box]
        for picture in pictures:
            assert picture["width"] <= width and all(not overlaps(label, picture) for label in labels)
        # Nothing sticks out sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        # No text under 10 px in the timeline picture, and every header of the segments table whole.
        shown, natural = page.locator("#timeline img").evaluate("img => [img.getBoundingClientRect().width, "
                                                                 "img.naturalWidth]")
        assert smallest_timeline_text_pixels(shown, natural) >= 10
        headers = page.locator("#segments th")
        assert [text.strip() for text in headers.all_inner_texts()] == SEGMENT_COLUMNS
        for header in headers.all():
            assert header.evaluate("th => [...th.querySelectorAll('*')].every(e => e.scrollWidth <= e.clientWidth "
                                   "+ 1)"), header.inner_text()
        page.screenshot(path=artifacts / f"browser-{width}px.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def test_a_truncated_wav_is_classified_and_the_page_says_so(playwright, app_url, artifacts, tmp_path):
    browser = launch(playwright)
    try:
        page = open_page(browser, app_url, [])
        upload(page, write_truncated_wav(tmp_path / "cut.wav"))
        assert top_emotion(wait_for_result(page)) in LABELS
        sync_api.expect(page.get_by_test_id("toast-body").first).to_contain_text(TRUNCATED_SENTENCE)
        sync_api.expect(page.locator("#verdict")).to_contain_text(TRUNCATED_SENTENCE)
        page.screenshot(path=artifacts / "browser-truncated.png", full_page=True)
    finally:
        browser.close()


NOISE_SENTENCE = "Cannot read 'noise.wav': it is not a supported audio file or it is corrupt."


def test_a_bad_file_after_a_good_one_leaves_no_result_of_the_first(playwright, app_url, speech_clip, artifacts,
                                                                     tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    browser = launch(playwright)
    try:
        page = open_page(browser, app_url, [])
        upload(page, speech_clip)
        wait_for_result(page)
        upload(page, bad)
        toast = page.get_by_test_id("toast-body").first
        sync_api.expect(toast).to_contain_text(NOISE_SENTENCE)
        # No chart, label or download of the first file is left, and the sentence stays beside the input.
        sync_api.expect(page.locator("#results")).to_be_hidden()
        for name in ("probabilities", "signal", "timeline", "verdict", "download-json"):
            sync_api.expect(page.locator(f"#{name}")).to_be_hidden()
        sync_api.expect(page.locator("#status")).to_contain_text(NOISE_SENTENCE)
        # The toast sits at the bottom of the screen, off the title, and goes away by itself.
        title = page.get_by_role("heading", name="Speech emotion recognition").bounding_box()
        assert not overlaps(toast.bounding_box(), title)
        page.screenshot(path=artifacts / "browser-error-after-result.png", full_page=True)
        sync_api.expect(toast).to_be_hidden(timeout=TIMEOUT_MS)
        sync_api.expect(page.locator("#status")).to_contain_text(NOISE_SENTENCE)
    finally:
        browser.close()


@pytest.fixture(scope="module")
def video_clip(tmp_path_factory, speech_clip) -> Path:
    """The speech clip as the sound track (AAC) of an H.264 .mp4 video, as a phone records it."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg (apt-get install ffmpeg)")
    path = tmp_path_factory.mktemp("video") / "video.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=160x120:d=3", "-i",
                    str(speech_clip), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
                   check=True, timeout=120)
    return path


def test_a_video_upload_classifies_its_sound_track(playwright, app_url, video_clip):
    errors = []
    with page_with_result(playwright, app_url, video_clip, errors) as (page, headline):
        assert top_emotion(headline) in LABELS
        sync_api.expect(page.locator("#verdict")).to_contain_text("'video.mp4'")
        assert page.get_by_test_id("toast-body").count() == 0
    assert errors == []


def test_every_picture_says_what_it_shows(playwright, app_url, long_clip):
    with page_with_result(playwright, app_url, long_clip) as (page, headline):
        sync_api.expect(page.locator("#timeline img")).to_be_visible()
        alt = {name: page.locator(f"#{name} img").get_attribute("alt") for name in ("probabilities", "signal",
                                                                                    "timeline")}
        assert alt["probabilities"].startswith("Chart of the emotion probabilities: " + top_emotion(headline))
        assert alt["signal"].startswith("Waveform of the ") and "MFCC" in alt["signal"]
        assert re.match(r"Emotion over \d+\.\d s, in \d+ segments?: 0\.0-", alt["timeline"])
        assert not any("undefined" in text or "plot visualising" in text for text in alt.values())


def ink_pixels(png: bytes, colour: str) -> int:
    """Opaque pixels within a few steps of `colour`: the text and axes of a picture drawn in that ink."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(int)
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    near = np.abs(pixels[..., :3] - rgb).max(axis=-1) <= 24
    return int((near & (pixels[..., 3] > 200)).sum())


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_pictures_read_on_the_theme_in_use(playwright, app_url, speech_clip, artifacts, theme):
    from PIL import Image

    from ser_model.serving.plots import INK

    with page_with_result(playwright, app_url, speech_clip, query=f"?__theme={theme}") as (page, _):
        assert page.evaluate("document.body.classList.contains('dark')") == (theme == "dark")
        png = page.request.get(page.locator("#probabilities img").get_attribute("src")).body()
        # A transparent background, and text in the theme's ink rather than the other theme's (whose
        # colour only a few anti-aliased edges of the wedges come near).
        assert Image.open(io.BytesIO(png)).convert("RGBA").getpixel((0, 0))[3] == 0
        dark = theme == "dark"
        assert ink_pixels(png, INK[dark]) > max(500, 4 * ink_pixels(png, INK[not dark]))
        page.screenshot(path=artifacts / f"browser-{theme}.png", full_page=True)


def test_the_prediction_downloads_as_json_and_csv(playwright, app_url, long_clip):
    with page_with_result(playwright, app_url, long_clip) as (page, headline):
        with page.expect_download() as download:
            page.locator("#download-json").click()
        (saved,) = json.loads(Path(download.value.path()).read_text())  # the CLI's layout: a record per file
        assert download.value.suggested_filename == "long.emotion.json" and saved["path"] == "long"
        assert saved["label"] == top_emotion(headline) and len(saved["windows"]) > 1 and saved["segments"]
        with page.expect_download() as download:
            page.locator("#download-csv").click()
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
        assert rows[0][:len(CSV_COLUMNS)] == CSV_COLUMNS  # the CLI's layout, probabilities as fractions
        parts = [row[1] for row in rows[1:]]
        assert parts.count("recording") == 1 and parts.count("window") == len(saved["windows"])
        assert parts.count("segment") == len(saved["segments"])
