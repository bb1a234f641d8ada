"""The app's two steps in this process: `predict` gives the numbers and keeps the prediction, `draw`
draws its pictures from it without decoding the file again (and predicts again only when it is gone)."""

import importlib
import dataclasses
import logging
import sys
from pathlib import Path

import gradio as gr
import pytest
import soundfile as sf

from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
from .test_analysis import label_text
from .conftest import save_tiny_model, speechlike

pytestmark = pytest.mark.slow  # imports gradio


def no_progress(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    model = save_tiny_model(tmp_path_factory.mktemp("app") / "model")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SER_MODEL", str(model))
        patch.delenv("SER_MODEL_REVISION", raising=False)
        sys.modules.pop("app", None)
        yield importlib.import_module("app")
    sys.modules.pop("app", None)


def skipped(outputs) -> bool:
    """Every output left as it was (`gr.skip()`)."""
    return all(output == gr.skip() for output in outputs)


def write_clip(path: Path, seconds: float) -> str:
    sf.write(path, speechlike(seconds), 16_000, subtype="PCM_16")
    return str(path)


def test_the_pictures_are_drawn_from_the_kept_prediction(app, tmp_path, monkeypatch):
    path = write_clip(tmp_path / "long.wav", 3.0)
    request = app.PageRequest()
    app.begin(path, request)
    probabilities, _, segments = app.classify(path, request, progress=no_progress)
    # The page's numbers are the API's, as its labels show them.
    assert app.label_value(app.predict(path, progress=no_progress)[0]) == probabilities and segments
    column, status, verdict, json_button, csv_button = app.show_result(request)
    assert column.visible and status == "" and "'long.wav', 3.0 s" in verdict
    assert Path(json_button.value["path"]).name == "long.emotion.json"
    monkeypatch.setattr("ser_model.serving.inference.open_audio", lambda *a, **k: pytest.fail("classified again"))
    chart, signal, timeline, table, heard = app.draw(request, "light", progress=no_progress)
    assert all(Path(picture.value["path"]).suffix == ".png" for picture in (chart, signal, timeline))
    assert chart.alt_text.startswith("Chart of the emotion probabilities: ") and timeline.visible and table.visible
    # The player plays what the model heard: the whole clip, 16 kHz mono.
    info = sf.info(heard.value["path"])
    assert heard.visible and (info.samplerate, info.channels, info.frames) == (16_000, 1, 48_000)
    # The pictures are drawn once, whichever of the page's chains asks first.
    assert skipped(app.draw(request, "light", progress=no_progress))


def test_an_answer_for_a_replaced_input_is_never_shown(app, tmp_path):
    first, second = write_clip(tmp_path / "first.wav", 3.0), write_clip(tmp_path / "second.wav", 0.8)
    request = app.PageRequest()
    app.begin(first, request)
    app.begin(second, request)  # an example clicked while the first file waits for its turn
    assert skipped(app.classify(first, request, progress=no_progress))
    assert skipped(app.show_result(request)) and skipped(app.draw(request, "light", progress=no_progress))
    app.classify(second, request, progress=no_progress)
    # The older chain's steps, running after the newer one's answer, show nothing of the first file.
    _, _, verdict, json_button, _ = app.show_result(request)
    assert "'second.wav', 0.8 s" in verdict and Path(json_button.value["path"]).name == "second.emotion.json"


def test_a_file_replaced_while_it_is_classified_stops_and_leaves_one_log_line(app, tmp_path, caplog):
    first, second = write_clip(tmp_path / "first.wav", 12.0), write_clip(tmp_path / "second.wav", 0.8)
    request = app.PageRequest()
    app.begin(first, request)
    calls = []

    def progress(*args, **kwargs):
        calls.append(args)
        app.begin(None, request)  # the visitor clears the upload while the first file is classified

    app.LOG.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=app.LOG.name):
            assert skipped(app.classify(first, request, progress=progress))
    finally:
        app.LOG.removeHandler(caplog.handler)
    # 12 s in 1 s windows every 0.5 s is 23 windows, two batches of 16: it stops before the second.
    assert len(calls) == 1
    assert [record.getMessage() for record in caplog.records] == ["dropped first.wav: a newer input replaced it"]
    # Nothing of it is shown, and no step trips over the cleared input.
    assert skipped(app.show_result(request)) and skipped(app.draw(request, "light", progress=no_progress))
    assert app.show_refusal(request) == gr.skip()
    app.begin(second, request)
    assert not skipped(app.classify(second, request, progress=no_progress))


def test_a_truncated_file_carries_its_warning_in_the_answer(app, tmp_path):
    path = str(write_truncated_wav(tmp_path / "cut.wav"))
    *_, prediction = app.predict(path, progress=no_progress)
    assert prediction["warnings"] == [TRUNCATED_SENTENCE]
    request = app.PageRequest()
    app.begin(path, request)
    app.classify(path, request, progress=no_progress)
    assert TRUNCATED_SENTENCE in app.show_result(request)[2]


def test_a_refused_file_is_one_log_line_and_a_toast_without_traceback(app, tmp_path, caplog):
    path = tmp_path / "silence.wav"
    sf.write(path, speechlike(1.0) * 0, 16_000, subtype="PCM_16")
    app.LOG.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=app.LOG.name), pytest.raises(app.gr.Error) as raised:
            app.predict(str(path), progress=no_progress)
    finally:
        app.LOG.removeHandler(caplog.handler)
    # Gradio prints a traceback for an error unless told not to: a refused input is no fault.
    assert raised.value.print_exception is False and raised.value.duration == app.TOAST_SECONDS
    assert [record.getMessage() for record in caplog.records] == [f"refused silence.wav: {raised.value.message}"]
    # On the page, the same sentence stays beside the input once the toast has gone.
    request = app.PageRequest()
    app.begin(str(path), request)
    with pytest.raises(app.gr.Error):
        app.classify(str(path), request, progress=no_progress)
    assert app.show_refusal(request) == f"**Could not classify this file.** {raised.value.message}"


# An answer as sure as the bundled model is of some acted clips: one emotion over 99.5%, the others under 0.5%.
SURE = {"angry": 0.99912, "fear": 0.0004, "happy": 0.0003, "sad": 0.00011, "neutral": 0.00007, "disgust": 0.00006,
        "surprise": 0.00004}


def assert_label_shows(label: dict, probabilities: dict[str, float]):
    """A gr.Label's value as the page receives it: no bar reads 100% or 0%, the bars and the heading follow
    the true probabilities, and no bar is off by more than half a percentage point."""
    ranked = sorted(probabilities, key=probabilities.get, reverse=True)
    shown = {item["label"]: item["confidence"] for item in label["confidences"]}
    assert [label_text(confidence) for confidence in shown.values()] == [
        min(max(label_text(probabilities[name]), 1), 99) for name in ranked]
    assert list(shown) == ranked and label["label"] == ranked[0]
    assert all(abs(shown[name] - probabilities[name]) <= 0.005 + 1e-12 for name in ranked)


def test_a_sure_answer_never_shows_100_or_0_percent_on_the_page_while_the_api_keeps_its_numbers(app, tmp_path,
                                                                                              monkeypatch):
    analyze = app.analyze_recording

    def sure(*args, **kwargs):
        analysis = analyze(*args, **kwargs)
        prediction = dataclasses.replace(analysis.prediction, label="angry", probabilities=SURE)
        return dataclasses.replace(analysis, prediction=prediction, sentiment=app.sentiment(SURE))

    monkeypatch.setattr(app, "analyze_recording", sure)
    path = write_clip(tmp_path / "sure.wav", 0.8)
    request = app.PageRequest()
    app.begin(path, request)
    emotions, sentiment, _ = app.classify(path, request, progress=no_progress)
    assert_label_shows(app.emotions.postprocess(emotions).model_dump(), SURE)
    assert_label_shows(app.sentiment_label.postprocess(sentiment).model_dump(), app.sentiment(SURE))
    # The headline words the kept prediction by the same rule; the API returns the model's numbers as they are.
    assert "## angry (>99%)" in app.show_result(request)[2]
    api_emotions, api_sentiment, *_ = app.predict(path, progress=no_progress)
    assert api_emotions == SURE and api_sentiment == app.sentiment(SURE)


def test_the_live_tab_never_shows_100_or_0_percent_for_the_whole_recording(app, monkeypatch):
    session = app.new_live_session()
    session.add_chunk(app.RECOGNIZER, (speechlike(1.5) * 32767).astype("int16"), 16_000)
    monkeypatch.setattr(session, "overall", lambda: SURE)
    overall, summary, *_ = app.live_finish(session, "light")
    assert overall.visible and "angry (>99%)" in summary
    assert_label_shows(overall.value, SURE)


def test_the_tool_description_is_written_in_sentences(app):
    (predict,) = [fn for fn in app.demo.fns.values() if fn.api_name == "predict"]
    assert predict.api_description == app.PREDICT_DESCRIPTION
    sentences = app.PREDICT_DESCRIPTION.split(". ")
    assert len(sentences) >= 6 and all(sentence[0].isupper() for sentence in sentences)
    assert " /," not in app.PREDICT_DESCRIPTION and ", run of" not in app.PREDICT_DESCRIPTION


def test_an_error_clears_every_result_panel(app):
    # The first step of every input empties what the last one showed, so an error cannot leave it there.
    results, status, verdict, emotions, sentiment, segments, prediction, *pictures, json_button, csv_button, heard = \
        app.begin("/tmp/next.wav", app.PageRequest())
    assert not results.visible and status == "Classifying 'next.wav'…" and verdict == ""
    assert emotions is None and sentiment is None and not segments.visible and prediction is None
    assert all(picture.value is None for picture in pictures)
    assert not json_button.visible and not csv_button.visible and not heard.visible


def test_how_it_works_says_what_the_loaded_model_is(app):
    from ser_model import SERForAudioClassification

    from .test_whisper_branch import whisper_config

    assert app.describe_architecture(app.RECOGNIZER.model, None) == (
        "Two branches read each window: a DenseNet reads the log-mel spectrogram; a small CNN reads the MFCCs. "
        "Their embeddings, joined, give the emotion.")
    model = SERForAudioClassification(whisper_config(voice_head=True))
    encoder = sum(p.numel() for p in model.ser.whisper_encoder.encoder.parameters())
    total = sum(p.numel() for p in model.parameters())
    training = {"arguments": {"speech_encoder": "../shared/weights/whisper-base", "speech_encoder_trainable_layers": 0}}
    words = app.describe_architecture(model, training)
    assert words.startswith(f"Three branches read each window: the encoder of the pretrained whisper-base model "
                            f"({encoder / 1e6:.1f} M of the {total / 1e6:.1f} M parameters, kept frozen) reads the "
                            "audio, and the mean and standard deviation of every layer's output are pooled; a DenseNet")
    assert words.endswith("give the emotion, and a second head how the voice sounds.")
