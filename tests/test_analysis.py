"""What the app shows for one recording, checked without Gradio: `ser_model.serving.analysis` on the tiny model."""

import csv
import json
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from ser_model.serving.analysis import (SEGMENT_COLUMNS, SENTIMENT_OF_EMOTION, analyze_file,
                                        draw_pictures, probabilities_alt, segment_band_html, segment_rows, sentiment,
                                        sentiment_rule, timeline_alt, write_downloads)
from ser_model.audio_io import AudioError
from ser_model.serving.inference import EmotionRecognizer
from ser_model.serving.plots import probability_figure, timeline_figure
from ser_model.serving.prediction import CSV_COLUMNS, WindowPrediction, merge_segments, window_spans
from ser_model.serving.wording import (CLOSE_RATIO, CONFIDENT_FROM, HIGHEST_PLAIN, LOWEST_PLAIN, describe,
                                       describe_rule, describe_voice, label_value, percent)

from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
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
    pictures = draw_pictures(analysis.prediction, recognizer.labels)
    assert isinstance(pictures.probabilities, Figure) and isinstance(pictures.signal, Figure)
    assert pictures.timeline is None


def test_file_longer_than_a_window_gets_a_timeline_and_merged_segments(recognizer, tmp_path, close_figures):
    config = recognizer.config
    seconds = 3.0
    calls = []
    analysis = analyze_file(recognizer, write_wav(tmp_path / "long.wav", seconds), max_seconds=60,
                            progress=lambda done, total: calls.append((done, total)))
    # Windows start every hop and the last one ends at the end: (3 - 1) / 0.5 + 1 = 5 windows.
    expected_windows = round((seconds - config.window_seconds) / config.window_hop_seconds) + 1
    assert analysis.is_long and len(analysis.prediction.windows) == expected_windows
    pictures = draw_pictures(analysis.prediction, recognizer.labels)
    assert isinstance(pictures.timeline, Figure)
    assert analysis.segments == segment_rows(analysis.prediction.windows)
    assert analysis.segments[0][0] == 0.0 and analysis.segments[-1][1] == seconds
    for row, segment in zip(analysis.segments, merge_segments(analysis.prediction.windows)):
        assert len(row) == len(SEGMENT_COLUMNS) and row[2] in LABELS and row[3] == percent(segment.confidence)
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


def test_the_pictures_come_from_the_prediction_without_decoding_the_file_again(recognizer, tmp_path, monkeypatch,
                                                                              close_figures):
    path = write_wav(tmp_path / "long.wav", 3.0)
    prediction = analyze_file(recognizer, str(path)).prediction
    view = prediction.view
    decoded = sf.read(path, dtype="float32")[0]
    window = recognizer.feature_extractor(decoded[:recognizer.window], sampling_rate=16_000)
    # The features drawn are the model's input for the first window, and they cover that window only.
    np.testing.assert_allclose(view.log_mel, window["input_values"][0], atol=1e-3)
    np.testing.assert_allclose(view.mfcc, window["input_mfcc"][0], atol=1e-3)
    assert view.feature_seconds == pytest.approx(recognizer.config.window_seconds, abs=0.02)
    # The envelope spans the whole file and holds every sample between its bounds.
    assert view.envelope_seconds[0] == 0 and view.envelope_seconds[-1] < 3.0 <= view.envelope_seconds[-1] + 0.01
    assert view.envelope_low.min() == pytest.approx(decoded.min(), abs=1e-4)
    assert view.envelope_high.max() == pytest.approx(decoded.max(), abs=1e-4)
    monkeypatch.setattr("ser_model.audio_io.open_audio", lambda *args, **kwargs: pytest.fail("decoded again"))
    monkeypatch.setattr("ser_model.serving.inference.open_audio", lambda *a, **k: pytest.fail("decoded again"))
    assert isinstance(draw_pictures(prediction, recognizer.labels).signal, Figure)


def test_a_prediction_without_its_view_cannot_be_drawn(recognizer, tmp_path):
    prediction = recognizer.predict_file(write_wav(tmp_path / "clip.wav", 0.8))
    assert prediction.view is None
    with pytest.raises(ValueError, match="keep_view=True"):
        draw_pictures(prediction, recognizer.labels)


def test_a_truncated_wav_is_classified_with_its_notice_for_the_app(recognizer, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the notice travels in the result, not as a Python warning
        analysis = analyze_file(recognizer, str(write_truncated_wav(tmp_path / "cut.wav")), max_seconds=60)
    assert analysis.notices == [TRUNCATED_SENTENCE] == analysis.prediction.to_dict()["warnings"]
    assert analysis.prediction.duration == pytest.approx(1.5)
    assert analyze_file(recognizer, write_wav(tmp_path / "whole.wav", 1.5)).notices == []


def window(start, end, label=None, top=0.7):
    """A window whose top emotion is `label` with probability `top` (the rest spread evenly); silent when None."""
    if label is None:
        return WindowPrediction(start, end, None)
    rest = (1 - top) / (len(LABELS) - 1)
    return WindowPrediction(start, end, {name: top if name == label else rest for name in LABELS})


def test_a_4_1_s_file_is_one_segment_when_both_windows_agree():
    # The two windows of a 4.1 s file (4 s windows, the last aligned to the end) used to be two
    # overlapping rows, 0-4 and 0.1-4.1.
    windows = [window(0.0, 4.0, "happy", 0.8), window(0.1, 4.1, "happy", 0.6)]
    assert segment_rows(windows) == [[0.0, 4.1, "happy", "70%"]]  # percent, as everywhere on the page


def test_a_4_1_s_file_splits_halfway_between_the_window_centres():
    windows = [window(0.0, 4.0, "happy", 0.8), window(0.1, 4.1, "sad", 0.6)]
    segments = merge_segments(windows)
    assert [(s.start, s.end, s.label) for s in segments] == [(0.0, 2.05, "happy"), (2.05, 4.1, "sad")]
    assert [s.confidence for s in segments] == pytest.approx([0.8, 0.6])


def test_consecutive_windows_with_the_same_emotion_merge_and_silence_is_its_own_segment():
    # 4 s windows every 2 s over 12 s: centres 2, 4, 6, 8, 10, so boundaries at 3, 5, 7, 9.
    windows = [window(0, 4, "angry", 0.9), window(2, 6, "angry", 0.5), window(4, 8, None),
               window(6, 10, "sad", 0.6), window(8, 12, "sad", 0.8)]
    assert segment_rows(windows) == [[0.0, 5.0, "angry", "70%"], [5.0, 7.0, "(silent)", None],
                                     [7.0, 12.0, "sad", "70%"]]
    assert [span for span in window_spans(windows)] == [(0, 3), (3, 5), (5, 7), (7, 9), (9, 12)]


def test_a_two_minute_file_gives_a_few_segments_not_sixty_rows():
    labels = ["neutral"] * 20 + ["angry"] * 15 + ["neutral"] * 24
    windows = [window(2 * i, 2 * i + 4, label) for i, label in enumerate(labels)]
    rows = segment_rows(windows)
    assert [(row[0], row[1], row[2]) for row in rows] == [(0.0, 41.0, "neutral"), (41.0, 71.0, "angry"),
                                                          (71.0, 120.0, "neutral")]


def test_no_windows_no_segments():
    assert merge_segments([]) == [] and segment_band_html([]) == ""


def test_the_band_has_one_block_per_segment_in_proportion():
    windows = [window(0, 4, "angry"), window(2, 6, "angry"), window(4, 8, "sad")]
    band = segment_band_html(windows)
    assert band.count('class="segment"') == 2
    assert "flex:62.500" in band and "flex:37.500" in band  # 0-5 s and 5-8 s of 8 s


@pytest.mark.parametrize("probabilities, expected", [
    ({"happy": 0.72, "sad": 0.2, "angry": 0.08}, "happy (72%)"),
    ({"happy": 0.5, "sad": 0.3, "angry": 0.2}, "happy (50%)"),
    # The cases: a near-tie is "not sure" even near one half; a clear lead below it is "probably".
    ({"fear": 0.46, "sad": 0.45, "angry": 0.09}, "not sure: fear (46%) or sad (45%)"),
    ({"neutral": 0.48, "sad": 0.14, "angry": 0.38 / 5, "fear": 0.38 / 5, "happy": 0.38 / 5, "disgust": 0.38 / 5,
      "surprise": 0.38 / 5}, "probably neutral (48%)"),
    ({"happy": 0.38, "sad": 0.31, "angry": 0.31}, "not sure: happy (38%) or sad (31%)"),
    ({"angry": 0.2, "sad": 0.45, "happy": 0.35}, "not sure: sad (45%) or happy (35%)"),
    ({"angry": 0.15, "sad": 0.45, "happy": 0.29, "fear": 0.11}, "probably sad (45%)"),  # 1.55 times the second
    ({"happy": 0.55, "sad": 0.4, "angry": 0.05}, "not sure: happy (55%) or sad (40%)"),
    # Never certain: a probability that rounds to 100% or 0% reads ">99%" or "<1%".
    ({"happy": 0.998, "sad": 0.002}, "happy (>99%)"),
    ({"happy": 1.0, "sad": 0.0}, "happy (>99%)"),
    # The near-tie, which the CLI's table used to call plainly "fear".
    ({"fear": 0.274, "disgust": 0.268, "sad": 0.2, "angry": 0.258}, "not sure: fear (27%) or disgust (27%)"),
])
def test_the_wording_is_firm_probable_or_unsure_by_one_rule(probabilities, expected):
    assert describe(probabilities) == expected


def test_the_rule_and_the_sentiment_are_explained_from_their_own_constants():
    assert f"{CONFIDENT_FROM:.0%}" in describe_rule() and f"{CLOSE_RATIO:g}" in describe_rule()
    explained = sentiment_rule()
    for emotion, side in SENTIMENT_OF_EMOTION.items():
        if side != "neutral":
            assert emotion in explained.split(f"{side} = ")[1].split(";")[0]


def test_the_alternative_texts_say_what_each_picture_shows():
    probabilities = {"sad": 0.46, "fear": 0.45, "angry": 0.05, "happy": 0.02, "neutral": 0.01, "surprise": 0.005,
                     "disgust": 0.005}
    assert probabilities_alt(probabilities) == ("Chart of the emotion probabilities: sad 46%, fear 45%, angry 5%; "
                                                "the other 4 at 2% or less.")
    windows = [window(0, 4, "angry", 0.9), window(2, 6, "angry", 0.5), window(4, 8, None), window(6, 10, "sad")]
    assert timeline_alt(windows) == ("Emotion over 10.0 s, in 3 segments: 0.0-5.0 s angry, 5.0-7.0 s (silent), "
                                     "7.0-10.0 s sad.")
    assert timeline_alt([]) == ""


def test_the_downloads_hold_the_whole_prediction_windows_and_segments(recognizer, tmp_path):
    prediction = analyze_file(recognizer, write_wav(tmp_path / "long.wav", 3.0)).prediction
    json_path, csv_path = write_downloads(prediction, LABELS, tmp_path / "out", "long")
    (saved,) = json.loads(json_path.read_text())  # the CLI's layout: one record per file
    assert saved["path"] == "long" and saved["probabilities"] == pytest.approx(prediction.probabilities)
    assert len(saved["windows"]) == len(prediction.windows) == 5
    assert [s["label"] for s in saved["segments"]] == [s.label for s in merge_segments(prediction.windows)]
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == [*CSV_COLUMNS, *LABELS, "error"]  # the tiny model has no voice head: no voice columns
    whole = rows[1]
    assert whole[:2] == ["long", "recording"] and whole[4] == prediction.label
    assert float(whole[5]) == pytest.approx(prediction.probabilities[prediction.label], abs=1e-4)
    assert sum(float(value) for value in whole[6:-1]) == pytest.approx(1, abs=1e-3)  # fractions, as in the JSON
    assert [row[1] for row in rows[1:]].count("window") == 5
    assert [row[1] for row in rows[1:]].count("segment") == len(saved["segments"])


def test_the_timeline_stacks_probabilities_over_the_whole_audio_and_draws_the_band(close_figures):
    windows = [window(0.0, 4.0, "happy", 0.8), window(0.1, 4.1, "sad", 0.6)]
    figure = timeline_figure(windows, LABELS)
    top, band = figure.axes
    assert top.get_xlim() == pytest.approx((0.0, 4.1))  # not two points at 2.0 and 2.05
    assert len(band.patches) == 2  # one coloured span per segment
    assert [p.get_x() for p in band.patches] == pytest.approx([0.0, 2.05])


def test_the_probability_chart_keeps_a_fixed_scale_and_a_wedge_per_emotion(close_figures):
    for top in (0.99, 0.4):
        figure = probability_figure({name: top if name == "sad" else (1 - top) / 6 for name in LABELS})
        (ax,) = figure.axes
        assert ax.get_ylim() == (0.0, 1.0)
        assert len(ax.patches) == len(LABELS)


def test_the_voice_is_worded_as_how_it_sounds_with_its_measured_accuracy():
    assert describe_voice({"female": 0.998, "male": 0.002}) == "voice sounds female (>99%)"
    assert describe_voice({"female": 0.93, "male": 0.07}) == "voice sounds female (93%)"
    assert describe_voice({"female": 0.2, "male": 0.8}, 0.951) == \
        "voice sounds male (80%); right 95% of the time on test speakers the model never heard"


@pytest.mark.parametrize("probability, decimals, expected", [
    (0.72, 0, "72%"), (0.995, 0, ">99%"), (0.9949, 0, "99%"), (1.0, 0, ">99%"), (0.0, 0, "<1%"), (0.004, 0, "<1%"),
    (0.006, 0, "1%"), (0.9996, 1, ">99.9%"), (0.0004, 1, "<0.1%"), (0.5, 1, "50.0%"),
])
def test_a_probability_never_reads_as_certain(probability, decimals, expected):
    assert percent(probability, decimals) == expected


def label_text(confidence: float) -> int:
    """The whole percentage Gradio 6's Label writes beside a bar: `Math.round(confidence * 100)`, half up."""
    shown = confidence * 100
    return math.floor(shown) + (shown - math.floor(shown) >= 0.5)


def test_the_plain_range_ends_where_percent_starts_to_say_less_or_more():
    assert (percent(LOWEST_PLAIN), percent(HIGHEST_PLAIN)) == ("1%", "99%")
    assert (percent(math.nextafter(LOWEST_PLAIN, 0)), percent(math.nextafter(HIGHEST_PLAIN, 1))) == ("<1%", ">99%")
    assert (label_text(LOWEST_PLAIN), label_text(HIGHEST_PLAIN)) == (1, 99)


EDGES = [0.0, 1e-9, 0.0049, 0.005, LOWEST_PLAIN, 0.0051, 0.015, 0.5, 0.985, HIGHEST_PLAIN, 0.995, 0.9999, 1.0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(EDGES), st.floats(0, 1)), min_size=2, max_size=7))
def test_a_label_on_the_page_never_shows_100_or_0_percent_and_its_bars_stay_within_half_a_point(values):
    probabilities = dict(zip(LABELS, values))
    shown = label_value(probabilities)
    for name, probability in probabilities.items():
        assert 1 <= label_text(shown[name]) <= 99
        assert abs(shown[name] - probability) <= 0.005 + 1e-12
        # Moved exactly where the text says "<1%" or ">99%", by the same rule (`percent`).
        assert (shown[name] != probability) == percent(probability).startswith(("<", ">"))
    # In the order of the true probabilities (Gradio sorts by the value given, stably): classes that share
    # the lowest bar keep theirs, and the first is the most probable.
    assert list(shown) == sorted(probabilities, key=probabilities.get, reverse=True)


def test_a_certain_looking_answer_keeps_its_order_on_the_label():
    probabilities = {"angry": 0.99912, "fear": 0.0004, "happy": 0.0003, "sad": 0.00011, "neutral": 0.00007,
                     "disgust": 0.00006, "surprise": 0.00004}
    shown = label_value(probabilities)
    assert list(shown) == ["angry", "fear", "happy", "sad", "neutral", "disgust", "surprise"]
    assert [label_text(value) for value in shown.values()] == [99, 1, 1, 1, 1, 1, 1]
    assert label_value({"positive": 0.2, "neutral": 0.7, "negative": 0.1}) == {"neutral": 0.7, "positive": 0.2,
                                                                                "negative": 0.1}


def test_the_probability_chart_never_labels_an_emotion_100_or_0_percent(close_figures):
    probabilities = {name: 0.998 if name == "angry" else 0.002 / 6 for name in LABELS}
    (ax,) = probability_figure(probabilities).axes
    ticks = [tick.get_text() for tick in ax.get_xticklabels()]
    assert "angry\n>99%" in ticks and all(not text.endswith(("\n100%", "\n0%")) for text in ticks)
