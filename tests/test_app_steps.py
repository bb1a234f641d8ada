"""The app's two steps in this process: `predict` gives the numbers and keeps the prediction, `draw`
draws its pictures from it without decoding the file again (and predicts again only when it is gone)."""

import importlib
import logging
import sys
from pathlib import Path

import pytest
import soundfile as sf

from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
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


def test_the_pictures_are_drawn_from_the_kept_prediction(app, tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, speechlike(3.0), 16_000, subtype="PCM_16")
    probabilities, _, segments, prediction = app.predict(str(path), progress=no_progress)
    assert prediction["probabilities"] == probabilities and prediction["warnings"] == [] and segments
    monkeypatch.setattr("ser_model.serving.inference.open_audio", lambda *a, **k: pytest.fail("decoded again"))
    chart, signal, timeline, table = app.draw(str(path), "light", progress=no_progress)
    assert all(Path(picture.value["path"]).suffix == ".png" for picture in (chart, signal, timeline))
    assert chart.alt_text.startswith("Chart of the emotion probabilities: ") and timeline.visible and table.visible
    assert len(app.RECENT) == 0  # taken: the store holds only predictions still waiting for their pictures


def test_a_prediction_no_longer_kept_is_made_again(app, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, speechlike(0.8), 16_000, subtype="PCM_16")
    chart, signal, timeline, table = app.draw(str(path), "dark", progress=no_progress)
    assert signal.alt_text.startswith("Waveform of the 0.8 s recording") and not timeline.visible and not table.visible


def test_a_truncated_file_carries_its_warning_in_the_answer(app, tmp_path):
    *_, prediction = app.predict(str(write_truncated_wav(tmp_path / "cut.wav")), progress=no_progress)
    assert prediction["warnings"] == [TRUNCATED_SENTENCE]


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
    # The page shows the same sentence beside the input once the toast has gone.
    assert raised.value.message in app.show_refusal(str(path))


def test_the_tool_description_is_written_in_sentences(app):
    (predict,) = [fn for fn in app.demo.fns.values() if fn.api_name == "predict"]
    assert predict.api_description == app.PREDICT_DESCRIPTION
    sentences = app.PREDICT_DESCRIPTION.split(". ")
    assert len(sentences) >= 6 and all(sentence[0].isupper() for sentence in sentences)
    assert " /," not in app.PREDICT_DESCRIPTION and ", run of" not in app.PREDICT_DESCRIPTION


def test_an_error_clears_every_result_panel(app):
    # The first step of every input empties what the last one showed, so an error cannot leave it there.
    results, status, verdict, emotions, sentiment, segments, prediction, *pictures, json_button, csv_button = \
        app.clear_results()
    assert not results.visible and status == verdict == "" and emotions is None and sentiment is None
    assert not segments.visible and prediction is None and all(picture.value is None for picture in pictures)
    assert not json_button.visible and not csv_button.visible
