"""What the app shows for one recording, checked without Gradio: `ser_model.analysis` on the tiny model."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from ser_model.analysis import (SEGMENT_COLUMNS, SENTIMENT_OF_EMOTION, analyze_file, draw_pictures, segment_rows,
                                sentiment)
from ser_model.audio_io import AudioError
from ser_model.inference import EmotionRecognizer

from .conftest import speechlike, tiny_config

LABELS = list(tiny_config().id2label.values())


@pytest.fixture
def recognizer(tiny_model_dir):
    return EmotionRecognizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def close_figures():
    """Every figure a test draws is closed, whether it passes or fails (pyplot keeps them otherwise)."""
    yield
    plt.close("all")


def write_wav(path, seconds, seed=0):
    sf.write(path, speechlike(seconds, seed=seed), 16_000, subtype="PCM_16")
    return path


def test_every_model_label_has_a_sentiment():
    assert set(SENTIMENT_OF_EMOTION) == set(LABELS)
    assert set(SENTIMENT_OF_EMOTION.values()) == {"positive", "neutral", "negative"}


@pytest.mark.parametrize("emotion", LABELS)
def test_all_mass_on_one_emotion_goes_to_its_sentiment(emotion):
    probabilities = {label: float(label == emotion) for label in LABELS}
    expected = {side: float(side == SENTIMENT_OF_EMOTION[emotion]) for side in ("positive", "neutral", "negative")}
    assert sentiment(probabilities) == expected


def test_sad_is_wholly_negative():
    assert sentiment({label: float(label == "sad") for label in LABELS}) == {
        "positive": 0.0, "neutral": 0.0, "negative": 1.0}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=len(LABELS), max_size=len(LABELS))
       .filter(lambda weights: sum(weights) > 1e-3))
def test_sentiment_sums_to_one_and_adds_up_each_side(weights):
    total = sum(weights)
    probabilities = {label: w / total for label, w in zip(LABELS, weights)}
    summary = sentiment(probabilities)
    assert sum(summary.values()) == pytest.approx(1.0)
    for side, value in summary.items():
        assert value == pytest.approx(sum(p for e, p in probabilities.items() if SENTIMENT_OF_EMOTION[e] == side))


def test_short_file_gives_one_decision_and_no_timeline(recognizer, tmp_path, close_figures):
    calls = []
    analysis = analyze_file(recognizer, write_wav(tmp_path / "short.wav", 0.8), max_seconds=60,
                            progress=lambda done, total: calls.append((done, total)))
    assert set(analysis.prediction.probabilities) == set(LABELS)
    assert sum(analysis.prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(analysis.sentiment.values()) == pytest.approx(1.0, abs=1e-5)
    assert not analysis.is_long
    assert analysis.segments == []
    assert calls and calls[-1] == pytest.approx((0.8, 0.8))
    pictures = draw_pictures(recognizer, str(tmp_path / "short.wav"), analysis.prediction)
    assert isinstance(pictures.radar, Figure) and isinstance(pictures.signal, Figure)
    assert pictures.timeline is None


def test_file_longer_than_a_window_gets_a_timeline_and_one_row_per_window(recognizer, tmp_path, close_figures):
    config = recognizer.config
    seconds = 3.0
    calls = []
    analysis = analyze_file(recognizer, write_wav(tmp_path / "long.wav", seconds), max_seconds=60,
                            progress=lambda done, total: calls.append((done, total)))
    # Windows start every hop and the last one ends at the end: (3 - 1) / 0.5 + 1 = 5 windows.
    expected_windows = round((seconds - config.window_seconds) / config.window_hop_seconds) + 1
    assert analysis.is_long
    pictures = draw_pictures(recognizer, str(tmp_path / "long.wav"), analysis.prediction)
    assert isinstance(pictures.timeline, Figure)
    # One line per emotion, one point per window, at the window centres.
    lines = pictures.timeline.axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(recognizer.labels)
    centres = [(w.start + w.end) / 2 for w in analysis.prediction.windows]
    assert list(lines[0].get_xdata()) == pytest.approx(centres)
    assert len(analysis.prediction.windows) == expected_windows
    assert len(analysis.segments) == expected_windows
    assert analysis.segments == segment_rows(analysis.prediction)
    for row, window in zip(analysis.segments, analysis.prediction.windows):
        assert len(row) == len(SEGMENT_COLUMNS)
        start, end, emotion, confidence, side = row
        assert (start, end) == pytest.approx((window.start, window.end), abs=0.05)
        assert emotion in LABELS and 0.0 <= confidence <= 1.0
        assert side == SENTIMENT_OF_EMOTION[emotion]
    assert sum(analysis.prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert calls and calls[-1] == pytest.approx((seconds, seconds))


def write_empty(path):
    path.write_bytes(b"")


def write_digital_silence(path):
    sf.write(path, np.zeros(32_000, np.int16), 16_000, subtype="PCM_16")


def write_50_ms(path):
    sf.write(path, speechlike(0.05), 16_000, subtype="PCM_16")


def write_text(path):
    path.write_text("This is a shopping list, not a recording.\nmilk\neggs\n")


def write_random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_3_s(path):
    sf.write(path, speechlike(3.0), 16_000, subtype="PCM_16")


@pytest.mark.parametrize("name, write, message", [
    ("empty.wav", write_empty, "the file is empty"),
    ("silence.wav", write_digital_silence, "is silent"),
    ("click.wav", write_50_ms, "too short"),
    ("notes.mp3", write_text, "not a supported audio file or it is corrupt"),
    ("noise.wav", write_random_bytes, "not a supported audio file or it is corrupt"),
    ("long.wav", write_3_s, "longer than the limit of 2.0 s"),
])
def test_bad_input_is_one_sentence(recognizer, tmp_path, close_figures, name, write, message):
    write(tmp_path / name)
    with pytest.raises(AudioError) as raised:
        analyze_file(recognizer, str(tmp_path / name), max_seconds=2.0)
    sentence = str(raised.value)
    assert message in sentence
    assert name in sentence  # names the file, by its base name only
    assert str(tmp_path) not in sentence
    assert sentence.endswith(".") and "\n" not in sentence and "Traceback" not in sentence
