"""The app's two steps in this process: `predict` gives the numbers and keeps the prediction, `draw`
draws its pictures from it without decoding the file again (and predicts again only when it is gone)."""

import importlib
import sys

import pytest
import soundfile as sf
from matplotlib.figure import Figure

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
    monkeypatch.setattr("ser_model.serving.inference.stream_audio", lambda *a, **k: pytest.fail("decoded again"))
    chart, signal, timeline, _ = app.draw(str(path), progress=no_progress)
    assert isinstance(chart, Figure) and isinstance(signal, Figure) and timeline["visible"]
    assert len(app.RECENT) == 0  # taken: the store holds only predictions still waiting for their pictures


def test_a_prediction_no_longer_kept_is_made_again(app, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, speechlike(0.8), 16_000, subtype="PCM_16")
    chart, signal, timeline, _ = app.draw(str(path), progress=no_progress)
    assert isinstance(signal, Figure) and not timeline["visible"]


def test_a_truncated_file_carries_its_warning_in_the_answer(app, tmp_path):
    *_, prediction = app.predict(str(write_truncated_wav(tmp_path / "cut.wav")), progress=no_progress)
    assert prediction["warnings"] == [TRUNCATED_SENTENCE]
