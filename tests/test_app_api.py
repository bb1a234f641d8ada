"""The app's HTTP API as a program uses it: `python app.py` on a loopback port, called with gradio_client.

Each answer is checked against the same model run in this process on the same file: the tiny random model's
labels mean nothing, but the server must answer what the model says.
"""

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ser_model.serving.analysis import SEGMENT_COLUMNS, sentiment
from ser_model.serving.inference import EmotionRecognizer
from ser_model.serving.wording import percent

from .app_server import running_app
from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
from .conftest import REPO, data_dir_or_skip, speechlike, tiny_config

pytestmark = pytest.mark.needs_server

LABELS = set(tiny_config().id2label.values())


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("app")


@pytest.fixture(scope="module")
def app_url(app_dir):
    with running_app(app_dir) as url:
        yield url


@pytest.fixture(scope="module")
def recognizer(app_url, app_dir):
    """The model the server serves (`running_app` saves it in the app's folder), loaded in this process."""
    return EmotionRecognizer.from_pretrained(app_dir / "model")


def assert_answers_as_the_model(recognizer, path, emotions, sentiment_output, prediction):
    """The server's answer for `path` is the model's: the same probabilities, label, sentiment and windows."""
    expected = recognizer.predict_file(path)
    assert emotions["label"] == prediction["label"] == expected.label
    assert prediction["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    assert check_confidences(sentiment_output, {"positive", "neutral", "negative"}) == pytest.approx(
        sentiment(expected.probabilities), abs=1e-5)
    assert [(w["start"], w["end"]) for w in prediction["windows"]] == [
        (pytest.approx(w.start, abs=1e-3), pytest.approx(w.end, abs=1e-3)) for w in expected.windows]


@pytest.fixture(scope="module")
def client(app_url):
    # No telemetry and no proxy: the only traffic is to the server on 127.0.0.1.
    client = Client(app_url, verbose=False, analytics_enabled=False, download_files=False,
                    httpx_kwargs={"trust_env": False})
    yield client
    client.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    sf.write(folder / "short.wav", speechlike(0.8), 16_000, subtype="PCM_16")
    sf.write(folder / "long.wav", speechlike(3.0, seed=1), 16_000, subtype="PCM_16")
    sf.write(folder / "silence.wav", np.zeros(32_000, np.int16), 16_000, subtype="PCM_16")
    write_truncated_wav(folder / "cut.wav")
    (folder / "noise.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return folder


def check_confidences(label_output, classes):
    """A gr.Label value as the API returns it: the top class and one confidence per class, summing to 1."""
    assert set(label_output) == {"label", "confidences"}
    confidences = {item["label"]: item["confidence"] for item in label_output["confidences"]}
    assert set(confidences) == classes
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-4)
    assert label_output["label"] == max(confidences, key=confidences.get)
    return confidences


def predict(client, path):
    return client.predict(handle_file(str(path)), api_name="/predict")


def test_short_clip_gives_emotions_and_sentiment_without_segments(client, recognizer, clips):
    result = predict(client, clips / "short.wav")
    # The numbers only: the pictures are the page's second step, which API clients do not wait for.
    assert isinstance(result, tuple) and len(result) == 4
    emotions, sentiment_output, segments, prediction = result
    confidences = check_confidences(emotions, LABELS)
    assert_answers_as_the_model(recognizer, clips / "short.wav", emotions, sentiment_output, prediction)
    # Plain data, never a Gradio update wrapper: a table with no rows for audio of one window.
    assert segments == {"headers": SEGMENT_COLUMNS, "data": [], "metadata": None}
    assert prediction["label"] == emotions["label"]
    assert prediction["probabilities"] == pytest.approx(confidences, abs=1e-6)
    assert len(prediction["windows"]) == 1 and prediction["duration"] == pytest.approx(0.8)


def test_long_file_gives_merged_segments_that_tile_the_audio(client, clips):
    *_, segments, prediction = predict(client, clips / "long.wav")
    assert set(segments) == {"headers", "data", "metadata"} and segments["headers"] == SEGMENT_COLUMNS
    # 3 s in 1 s windows every 0.5 s: starts 0, 0.5, ..., 2.0; the segments cover 0-3 s without overlap.
    assert [window["start"] for window in prediction["windows"]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    rows = segments["data"]
    assert rows[0][0] == 0.0 and rows[-1][1] == 3.0
    assert all(a[1] == b[0] and a[2] != b[2] for a, b in zip(rows, rows[1:]))
    assert all(row[2] in LABELS for row in rows)
    # Percent, as on the page (never "100%"); the JSON keeps the fractions.
    assert [row[3] for row in rows] == [percent(segment["confidence"]) for segment in prediction["segments"]]


def test_a_truncated_wav_is_classified_and_the_prediction_carries_the_warning(client, clips):
    emotions, _, _, prediction = predict(client, clips / "cut.wav")
    check_confidences(emotions, LABELS)
    assert prediction["duration"] == pytest.approx(1.5)
    assert prediction["warnings"] == [TRUNCATED_SENTENCE]
    *_, whole = predict(client, clips / "short.wav")
    assert whole["warnings"] == []


def test_the_api_lists_predict_with_named_outputs(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/predict"]
    (parameter,) = endpoints["/predict"]["parameters"]
    assert parameter["component"] == "Audio"
    returns = endpoints["/predict"]["returns"]
    assert [(r["label"], r["component"]) for r in returns] == [
        ("Emotion", "Label"), ("Sentiment (positive / neutral / negative)", "Label"), ("Segments", "Dataframe"),
        ("prediction", "Json")]


@pytest.mark.needs_corpora
def test_real_clip(client, recognizer):
    clips = sorted(data_dir_or_skip("ravdess").glob("Actor_*/*.flac"))
    if not clips:
        pytest.skip("no RAVDESS clips (Actor_*/*.flac) in the corpus folder")
    emotions, sentiment_output, _, prediction = predict(client, clips[0])
    check_confidences(emotions, LABELS)
    assert_answers_as_the_model(recognizer, clips[0], emotions, sentiment_output, prediction)


def test_an_example_clip(client, recognizer):
    clip = REPO / "examples" / "ravdess_actor07_angry.flac"
    emotions, sentiment_output, _, prediction = predict(client, clip)
    assert_answers_as_the_model(recognizer, clip, emotions, sentiment_output, prediction)


@pytest.mark.parametrize("name, sentence", [
    ("noise.wav", "Cannot read 'noise.wav': it is not a supported audio file or it is corrupt."),
    ("silence.wav", "is silent"),
])
def test_bad_file_gives_the_sentence_and_the_server_goes_on(client, clips, app_dir, name, sentence):
    with pytest.raises(AppError) as raised:
        predict(client, clips / name)
    assert sentence in str(raised.value)
    assert "Traceback" not in str(raised.value)
    # The server's log: one line naming the file and the reason, and no traceback (a refusal is no fault).
    log = (app_dir / "app.log").read_text()
    assert [line for line in log.splitlines() if f"refused {name}:" in line and sentence in line]
    assert "Traceback" not in log
    emotions, *_ = predict(client, clips / "short.wav")
    check_confidences(emotions, LABELS)


def test_the_start_up_line_says_the_apps_own_way_to_share(app_url, app_dir):
    log = (app_dir / "app.log").read_text()
    assert f"Running on {app_url}; run `python app.py --share` for a public link" in log
    assert "share=True" not in log
