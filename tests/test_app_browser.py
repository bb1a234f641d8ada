"""The real page in headless Chromium: upload (audio and video), every example, record from a fake
microphone, the live mode with and without a microphone, bad files after good ones, the pictures'
alternative text, the page at phone width, the dark theme and the downloads; and, with the bundled model,
a long upload replaced by an example or cleared while it is classified.

Each answer on the page is checked against the answer /predict gives API clients for the same file on the
same server: the tiny random model's labels mean nothing, but the page must show the one it was given.

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
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from gradio_client import Client, handle_file

from ser_model.audio_io import format_duration
from ser_model.serving.analysis import SEGMENT_COLUMNS, probabilities_alt, sentiment
from ser_model.serving.prediction import CSV_COLUMNS
from ser_model.serving.wording import describe, percent

from .app_server import running_app
from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
from .conftest import DATA_DIR, REPO, speechlike, tiny_config

CHROMIUM = os.environ.get("SER_CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.needs_server,
    pytest.mark.needs_browser,
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
def client(app_url):
    client = Client(app_url, verbose=False, analytics_enabled=False, download_files=False,
                    httpx_kwargs={"trust_env": False})
    yield client
    client.close()


def api_answer(client, path) -> dict:
    """What /predict answers for `path`: the prediction as JSON (label, probabilities, duration, windows)."""
    return client.predict(handle_file(str(path)), api_name="/predict")[-1]


def assert_headline_is(headline: str, answer: dict):
    """The page's headline is the API's answer for the same file, worded by the shared rule."""
    assert headline == describe(answer["probabilities"]), (headline, answer["probabilities"])


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


def test_upload_shows_the_emotion_and_the_plots(playwright, app_url, client, speech_clip, artifacts):
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, app_url, errors)
        # Nothing of a result shows before there is one: no empty boxes on the landing page.
        assert not page.locator("#results").is_visible()
        page.screenshot(path=artifacts / "browser-landing.png", full_page=True)
        upload(page, speech_clip)
        answer = api_answer(client, speech_clip)
        assert_headline_is(wait_for_result(page), answer)
        # The emotion's own label has no heading (the headline says it): the one heading is the sentiment's.
        expected_sentiment = max(sentiment(answer["probabilities"]).items(), key=lambda item: item[1])[0]
        assert page.get_by_test_id("label-output-value").first.inner_text().strip() == expected_sentiment
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
        # Stopping the recording classifies it: about 3 s, so the timeline and segments show too. The
        # headline words the prediction that the JSON download holds.
        headline = wait_for_result(page)
        with page.expect_download() as download:
            page.locator("#download-json").click()
        (saved,) = json.loads(Path(download.value.path()).read_text())  # the CLI's layout: a record per file
        assert_headline_is(headline, saved)
        assert 2.0 < saved["duration"] < 5.0
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


def example_files() -> list[Path]:
    """The examples in the order the page lists them (examples/examples.csv)."""
    with (REPO / "examples" / "examples.csv").open(newline="") as rows:
        return [REPO / "examples" / row["file"] for row in csv.DictReader(rows)]


def test_every_example_shows_its_own_result_and_no_error(playwright, app_url, client, artifacts):
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
            file = example_files()[index]
            assert_headline_is(page.locator("#verdict h2").inner_text().strip(), api_answer(client, file))
            sync_api.expect(page.locator("#verdict")).to_contain_text(f"'{file.name}'")
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


def app_figures() -> dict:
    """The pictures of a long result as the app draws them (of made-up numbers: the text is the same)."""
    from ser_model.serving.prediction import WindowPrediction
    from ser_model.serving.signal_view import SignalView
    from ser_model.serving.plots import probability_figure, signal_figure, timeline_figure

    windows = [WindowPrediction(start, start + 1.0, {label: 1 / len(LABELS) for label in LABELS})
               for start in (0.0, 0.5, 1.0)]
    seconds = np.linspace(0.0, 2.0, 100)
    view = SignalView(seconds, -np.ones(100), np.ones(100), np.zeros((16, 50)), np.zeros((8, 50)), 1.0)
    return {"probabilities": probability_figure(windows[0].probabilities), "signal": signal_figure(view, 2.0),
            "timeline": timeline_figure(windows, LABELS)}


def smallest_text_pixels(figure, shown_width: float, natural_width: float) -> float:
    """The smallest text of a picture, in CSS pixels as shown: its size in points at the figure's dpi
    (the PNG is saved at it), scaled by how wide the page shows the picture."""
    from matplotlib.text import Text

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
        # No text under 10 px in any picture, and every header of the segments table whole.
        for name, figure in app_figures().items():
            shown, natural = page.locator(f"#{name} img").evaluate("img => [img.getBoundingClientRect().width, "
                                                                   "img.naturalWidth]")
            assert smallest_text_pixels(figure, shown, natural) >= 10, name
        headers = page.locator("#segments th")
        assert [text.strip() for text in headers.all_inner_texts()] == SEGMENT_COLUMNS
        for header in headers.all():
            assert header.evaluate("th => [...th.querySelectorAll('*')].every(e => e.scrollWidth <= e.clientWidth "
                                   "+ 1)"), header.inner_text()
        # The microphone list's sentence is whole, and bold words are in a face the page has loaded (the
        # browser's stand-in for a missing weight was a larger font than the text around it).
        assert page.locator("#record .mic-select").evaluate(TEXT_FITS_JS), "the microphone list is cut"
        page.get_by_text("What the percentages mean").click()
        assert page.locator("#about strong").first.evaluate(BOLD_IN_PAGE_FONT_JS), "bold words in another font"
        page.screenshot(path=artifacts / f"browser-{width}px.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


# Whether a bold word is drawn in the page's font: measured in that font with monospace behind it, it is
# as wide as in monospace alone when the font lacks its letters (Gradio 6.31's semibold file does).
BOLD_IN_PAGE_FONT_JS = """async strong => {
    const style = getComputedStyle(strong);
    const family = style.fontFamily.split(',')[0];
    const font = stack => `${style.fontWeight} ${style.fontSize} ${stack}`;
    await document.fonts.load(font(family), strong.textContent);
    const context = document.createElement('canvas').getContext('2d');
    const width = stack => { context.font = font(stack); return context.measureText(strong.textContent).width; };
    return width(`${family}, monospace`) !== width('monospace');
}"""
# Whether a <select>'s chosen option fits its box: the text's width in the select's font (canvas) against
# the room inside its padding.
TEXT_FITS_JS = """select => {
    const style = getComputedStyle(select);
    const context = document.createElement('canvas').getContext('2d');
    context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const text = context.measureText(select.options[select.selectedIndex].text).width;
    return text <= select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
}"""


def test_a_truncated_wav_is_classified_and_the_page_says_so(playwright, app_url, client, artifacts, tmp_path):
    browser = launch(playwright)
    try:
        page = open_page(browser, app_url, [])
        cut = write_truncated_wav(tmp_path / "cut.wav")
        upload(page, cut)
        assert_headline_is(wait_for_result(page), api_answer(client, cut))
        sync_api.expect(page.get_by_test_id("toast-body").first).to_contain_text(TRUNCATED_SENTENCE)
        sync_api.expect(page.locator("#verdict")).to_contain_text(TRUNCATED_SENTENCE)
        page.screenshot(path=artifacts / "browser-truncated.png", full_page=True)
    finally:
        browser.close()


# An error toast goes by itself after app.TOAST_SECONDS (5 s): this leaves room for a loaded machine.
TOAST_GONE_MS = 15_000
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
        sync_api.expect(toast).to_be_hidden(timeout=TOAST_GONE_MS)
        sync_api.expect(page.locator("#status")).to_contain_text(NOISE_SENTENCE)
    finally:
        browser.close()


def test_on_a_phone_a_toast_covers_neither_the_inputs_nor_the_examples_and_stays_on_its_tab(playwright, app_url,
                                                                                              artifacts, tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    browser = launch(playwright)
    try:
        page = open_page(browser, app_url, [], width=390, height=844)
        upload(page, bad)
        toast = page.get_by_test_id("toast-body").first
        sync_api.expect(toast).to_contain_text(NOISE_SENTENCE)
        sync_api.expect(page.locator("#status")).to_contain_text(NOISE_SENTENCE)
        page.wait_for_timeout(500)  # the toast slides in
        covered = [page.locator(selector).bounding_box() for selector in ("#upload", "#record", "#status")]
        covered += [example.bounding_box() for example in page.locator(".gallery-item").all()]
        box = toast.bounding_box()
        assert not any(overlaps(box, other) for other in covered if other), box
        page.screenshot(path=artifacts / "browser-error-390px.png")
        # It is about the file tab: turning to the Live tab closes it.
        page.get_by_role("tab", name="Live").click()
        sync_api.expect(page.get_by_test_id("toast-body")).to_have_count(0, timeout=2_000)
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


def test_a_video_upload_classifies_its_sound_track(playwright, app_url, client, video_clip):
    errors = []
    with page_with_result(playwright, app_url, video_clip, errors) as (page, headline):
        assert_headline_is(headline, api_answer(client, video_clip))
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


# With the bundled model: its windows (4 s every 2 s, through Whisper's encoder) take long enough on a
# long file for a visitor to change input while it is classified, as people do.


@pytest.fixture(scope="module")
def model_app(tmp_path_factory):
    """The app serving the bundled model; yields its URL and the server's log."""
    if not (REPO / "model" / "model.safetensors").is_file():
        pytest.skip("no bundled model in model/")
    workdir = tmp_path_factory.mktemp("model-app")
    with running_app(workdir, model=str(REPO / "model")) as url:
        yield url, workdir / "app.log"


@pytest.fixture(scope="module")
def model_client(model_app):
    client = Client(model_app[0], verbose=False, analytics_enabled=False, download_files=False,
                    httpx_kwargs={"trust_env": False})
    yield client
    client.close()


@pytest.fixture(scope="module")
def two_minutes(tmp_path_factory) -> Path:
    """Two minutes of an example (acted sad) said again and again, as 16-bit WAV: 59 of the model's windows."""
    samples, rate = sf.read(REPO / "examples" / "ravdess_actor14_sad.flac", dtype="int16")
    path = tmp_path_factory.mktemp("two-minutes") / "two-minutes.wav"
    sf.write(path, np.resize(samples, 120 * rate), rate, subtype="PCM_16")
    return path


def label_bars(page, selector: str) -> list[tuple[str, str, float]]:
    """A gr.Label's bars as the page draws them, top to bottom: the class, the text beside its bar, and the
    bar's width in percent."""
    return page.locator(f"{selector} [data-testid$='-confidence-set']").evaluate_all(
        """sets => sets.map(set => [set.querySelector('dt').innerText.trim(),
                                    set.querySelector('dd').innerText.trim(),
                                    parseFloat(set.querySelector('meter').style.width)])""")


@pytest.mark.needs_model
def test_a_sure_answer_shows_no_100_or_0_percent_and_truthful_bars(playwright, model_app, model_client, artifacts):
    url, _ = model_app
    clip = REPO / "examples" / "ravdess_actor07_angry.flac"
    probabilities = api_answer(model_client, clip)["probabilities"]
    # The bundled model is sure of this acted clip: several emotions and the neutral sentiment are under
    # 0.5%, which Gradio's label rounds to "0%" when handed them as they are.
    assert sum(p < 0.005 for p in probabilities.values()) >= 2
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, url, errors)
        page.locator(".gallery-item").filter(has_text="RAVDESS, acted angry").click()
        wait_for_result(page)
        for selector, truth in (("#emotions", probabilities), ("#sentiment", sentiment(probabilities))):
            bars = label_bars(page, selector)
            # In the order of the true probabilities; each text the rounded probability, never 0% or 100%;
            # each bar within half a percentage point of the truth.
            assert [name for name, _, _ in bars] == sorted(truth, key=truth.get, reverse=True)
            assert all(text not in ("0%", "100%") for _, text, _ in bars), bars
            assert [text for _, text, _ in bars] == [percent(truth[name]).strip("<>") for name, _, _ in bars]
            assert all(abs(width - 100 * truth[name]) <= 0.5 + 1e-9 for name, _, width in bars), bars
        # The sentiment's heading is the most probable one.
        heading = page.locator("#sentiment").get_by_test_id("label-output-value").inner_text().strip()
        assert heading == max(sentiment(probabilities).items(), key=lambda item: item[1])[0]
        page.screenshot(path=artifacts / "browser-sure-answer.png", full_page=True)
    finally:
        browser.close()
    assert errors == []


def wait_for_log(log: Path, text: str, since: int, timeout: float = TIMEOUT_MS / 1000) -> str:
    """The server's log from character `since` on, once `text` is in it."""
    deadline = time.monotonic() + timeout
    while text not in (content := log.read_text(errors="replace")[since:]):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never came in the server's log:\n{content[-3000:]}")
        time.sleep(0.2)
    return content


def assert_every_panel_shows(page, client, path: Path):
    """Every result panel, picture, file name, player and download on the page is the one of `path`, as
    /predict answers for it; a short clip, so no timeline and no segments."""
    answer = api_answer(client, path)
    assert_headline_is(page.locator("#verdict h2").inner_text().strip(), answer)
    sync_api.expect(page.locator("#verdict")).to_contain_text(f"'{path.name}', {format_duration(answer['duration'])}")
    assert page.locator("#probabilities img").get_attribute("alt") == probabilities_alt(answer["probabilities"])
    assert page.locator("#signal img").get_attribute("alt").startswith(
        f"Waveform of the {answer['duration']:.1f} s recording")
    assert len(answer["windows"]) == 1
    sync_api.expect(page.locator("#timeline")).to_be_hidden()
    sync_api.expect(page.locator("#segments")).to_be_hidden()
    # The player plays what the model heard: this clip, at 16 kHz, mono.
    heard = page.request.get(page.locator('#heard [data-testid="download-link"]').get_attribute("href")).body()
    info = sf.info(io.BytesIO(heard))
    assert (info.samplerate, info.channels) == (16_000, 1)
    assert info.duration == pytest.approx(answer["duration"], abs=0.01)
    with page.expect_download() as download:
        page.locator("#download-json").click()
    assert download.value.suggested_filename == f"{path.stem}.emotion.json"
    (saved,) = json.loads(Path(download.value.path()).read_text())  # the CLI's layout: a record per file
    assert saved["label"] == answer["label"] and saved["duration"] == answer["duration"]
    assert saved["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-6)
    with page.expect_download() as download:
        page.locator("#download-csv").click()
    assert download.value.suggested_filename == f"{path.stem}.emotion.csv"
    assert page.get_by_test_id("toast-body").count() == 0


@pytest.mark.needs_model
def test_an_example_clicked_while_a_long_upload_is_classified_is_all_the_page_shows(playwright, model_app,
                                                                                     model_client, two_minutes,
                                                                                     artifacts):
    url, log = model_app
    since = len(log.read_text(errors="replace"))
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, url, errors)
        upload(page, two_minutes)
        # The progress shows at once under the inputs, where the visitor is looking: Gradio's tracker says
        # "processing" until the first batch of windows is classified, and a share of them after it.
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text(f"Classifying '{two_minutes.name}'", timeout=TIMEOUT_MS)
        sync_api.expect(status.get_by_test_id("status-tracker")).to_contain_text("processing", timeout=TIMEOUT_MS)
        assert not page.locator("#results").is_visible()
        page.locator(".gallery-item").filter(has_text="RAVDESS, acted angry").click()
        wait_for_result(page)
        # The long file's classification stops at its next batch of windows; were its answer sent all the
        # same, a moment would let it land on the page.
        wait_for_log(log, f"dropped {two_minutes.name}: a newer input replaced it", since)
        page.wait_for_timeout(2_000)
        assert_every_panel_shows(page, model_client, REPO / "examples" / "ravdess_actor07_angry.flac")
        page.screenshot(path=artifacts / "browser-long-then-example.png", full_page=True)
    finally:
        browser.close()
    assert errors == []
    assert "Traceback" not in log.read_text()


@pytest.mark.needs_model
def test_a_long_upload_cleared_while_it_is_classified_leaves_no_trace_and_the_next_file_its_own(
        playwright, model_app, model_client, two_minutes, artifacts, tmp_path):
    url, log = model_app
    short = tmp_path / "six.flac"
    shutil.copy(REPO / "examples" / "tess_mood_disgust.flac", short)
    since = len(log.read_text(errors="replace"))
    browser = launch(playwright)
    errors = []
    try:
        page = open_page(browser, url, errors)
        upload(page, two_minutes)
        sync_api.expect(page.locator("#status").get_by_test_id("status-tracker")).to_contain_text(
            re.compile(r"classifying windows - \d+(\.\d)?%"), timeout=TIMEOUT_MS)
        page.locator("#upload button[aria-label='Clear']").click()
        sync_api.expect(page.locator("#status")).to_have_text("")
        page.locator("#upload input[type=file]").set_input_files(str(short))
        wait_for_result(page)
        wait_for_log(log, f"dropped {two_minutes.name}: a newer input replaced it", since)
        page.wait_for_timeout(2_000)
        assert_every_panel_shows(page, model_client, short)
        page.screenshot(path=artifacts / "browser-long-cleared-then-short.png", full_page=True)
    finally:
        browser.close()
    assert errors == []
    # One line for the cleared file, and no traceback (the chain's later steps found nothing to show).
    logged = log.read_text(errors="replace")[since:]
    assert "Traceback" not in logged and "Error" not in logged, logged
    lines = [line for line in logged.splitlines() if two_minutes.name in line]
    assert len(lines) == 1 and lines[0].endswith(f"dropped {two_minutes.name}: a newer input replaced it"), logged
