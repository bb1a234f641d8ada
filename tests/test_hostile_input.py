"""Hostile input: every case of `tests/hostile_inputs.py` through the Python API, the app's analysis
function, the CLI and the running app, and property-based tests over the feature extractor and the
audio loader. Each input gives a valid prediction or one clear sentence, and nothing crashes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ser_model import SERFeatureExtractor
from ser_model.configuration import has_speech
from ser_model.serving.analysis import analyze_file
from ser_model.audio_io import (MAX_SAMPLE_MAGNITUDE, AudioError, load_audio, to_mono_16k,
                                validate_waveform)
from ser_model.serving.inference import EmotionRecognizer

from .conftest import REPO, save_tiny_model, speechlike, tiny_config
from .hostile_inputs import (CASE_NAMES, ERROR, MAX_SECONDS, NOT_A_SENTENCE, PREDICTION, REFUSED, THREE_HOURS,
                             UPLOADABLE, WARNING, Outcome, check_probabilities, check_sentence, write_corpus)

SR = 16_000
LABELS = list(tiny_config().id2label.values())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def recognizer(model_dir):
    return EmotionRecognizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def corpus(corpus_folder):
    return write_corpus(corpus_folder)


def check_call(call, expected: Outcome, folder: Path) -> None:
    """Runs `call`, which returns a `Prediction`, and checks it gives the `expected` outcome."""
    if expected.kind == PREDICTION:
        result = call()
        check_probabilities(result.probabilities, LABELS)
        assert result.label == max(result.probabilities, key=result.probabilities.get)
        assert result.duration == pytest.approx(expected.seconds, abs=0.01)
        return
    assert expected.kind == ERROR
    with pytest.raises(AudioError) as raised:
        call()
    check_sentence(str(raised.value), expected.pattern, folder)


# --- In-process surfaces -------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_python_api(recognizer, corpus, corpus_folder, name):
    item = corpus[name]
    check_call(lambda: recognizer.predict_file(item.path, max_seconds=MAX_SECONDS), item.case.expected("api"),
               corpus_folder)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_app_analysis_function(recognizer, corpus, corpus_folder, name):
    # What app.predict runs, including the folder and missing path that no client can upload.
    item = corpus[name]
    check_call(lambda: analyze_file(recognizer, str(item.path), max_seconds=MAX_SECONDS).prediction,
               item.case.expected("analysis"), corpus_folder)


@pytest.mark.slow
def test_python_api_without_a_limit_streams_the_three_hour_file(recognizer, corpus):
    # Decision: with no max_seconds the API reads any length, in bounded memory (the windows are
    # classified as they fill); only the first second holds speech, so the windows that start after
    # it (the resampler's ringing reaches just past 1 s) are silent.
    prediction = recognizer.predict_file(corpus["three_hours"].path)
    check_probabilities(prediction.probabilities, LABELS)
    assert prediction.duration == pytest.approx(THREE_HOURS)
    spoken = [w for w in prediction.windows if w.probabilities is not None]
    assert spoken and all(w.start <= 1.0 for w in spoken)
    assert prediction.windows[-1].end == pytest.approx(THREE_HOURS)


# --- The CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(corpus, model_dir):
    """One `python -m ser_model predict` over every path of the corpus but those that refuse the whole
    command: (exit status, records by file name, stderr)."""
    paths = [str(item.path) for item in corpus.values() if item.case.expected("cli").kind != REFUSED]
    done = subprocess.run(
        [sys.executable, "-m", "ser_model", "predict", *paths, "--model", str(model_dir), "--format", "json",
         "--max-seconds", str(MAX_SECONDS)],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
    )
    records = {Path(record["path"]).name: record for record in json.loads(done.stdout or "[]")}
    return done.returncode, records, done.stderr


@pytest.mark.slow
def test_cli_reports_every_failure_without_a_traceback(cli_run):
    returncode, records, stderr = cli_run
    assert returncode == 1, stderr  # some files failed
    failed = sum("error" in record for record in records.values())
    assert f"{failed} of {len(records)} files failed" in stderr
    for line in stderr.splitlines():
        assert not NOT_A_SENTENCE.search(line), f"stderr: {line!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", CASE_NAMES)
def test_cli(cli_run, corpus, corpus_folder, model_dir, capsys, name):
    from ser_model.cli import main

    _, records, stderr = cli_run
    item = corpus[name]
    expected = item.case.expected("cli")
    record = records.get(item.path.name)
    if expected.kind == REFUSED:
        capsys.readouterr()
        assert main(["predict", str(item.path), "--model", str(model_dir)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(expected.pattern, err.strip()), err
    elif expected.kind == WARNING:
        assert record is None
        assert any(re.search(expected.pattern, line) for line in stderr.splitlines()), stderr
    elif expected.kind == PREDICTION:
        assert record is not None and "error" not in record, record
        check_probabilities(record["probabilities"], LABELS)
        assert record["duration"] == pytest.approx(expected.seconds, abs=0.01)
    else:
        assert record is not None and set(record) == {"path", "error"}, record
        check_sentence(record["error"], expected.pattern, corpus_folder)


# --- The running app -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    from .app_server import running_app

    with running_app(tmp_path_factory.mktemp("app")) as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False,
                        httpx_kwargs={"trust_env": False})
        yield client
        client.close()


def app_predict(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/predict")


@pytest.mark.needs_server
@pytest.mark.parametrize("name", UPLOADABLE)
def test_app(client, corpus, corpus_folder, name):
    from gradio_client.exceptions import AppError

    item = corpus[name]
    expected = item.case.expected("app")
    if expected.kind == PREDICTION:
        emotions, *_ = app_predict(client, item.path)
        confidences = {entry["label"]: entry["confidence"] for entry in emotions["confidences"]}
        check_probabilities(confidences, LABELS)
        assert emotions["label"] == max(confidences, key=confidences.get)
        return
    with pytest.raises(AppError) as raised:
        app_predict(client, item.path)
    check_sentence(str(raised.value), expected.pattern, corpus_folder)


@pytest.mark.needs_server
def test_app_keeps_serving_after_the_hostile_inputs(client, tmp_path):
    # Runs after test_app (file order); on its own it still checks that the server answers.
    sf.write(tmp_path / "good.wav", speechlike(0.8), SR, subtype="PCM_16")
    emotions, *_ = app_predict(client, tmp_path / "good.wav")
    check_probabilities({entry["label"]: entry["confidence"] for entry in emotions["confidences"]}, LABELS)


# --- Properties: the feature extractor -----------------------------------------------------------

# The tiny test front end and the shipped one (n_fft 400, 64 mels): overflow showed on the latter only.
EXTRACTORS = {"tiny": SERFeatureExtractor.from_config(tiny_config()), "default": SERFeatureExtractor()}
# Every finite float32, from subnormals to 3.4e38; hypothesis favours the extremes.
FINITE_FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def lengths(longest: int, short: int):
    """0..`longest`, half of the draws above `short`: hypothesis favours small integers, and most
    short inputs only reach the length check."""
    return st.one_of(st.integers(0, short), st.integers(short, longest))


@settings(max_examples=40, deadline=None)
@given(
    front_end=st.sampled_from(sorted(EXTRACTORS)),
    # `fill` draws one background value and a few explicit elements: seconds of audio stay cheap.
    samples=hnp.arrays(np.float32, lengths(3 * SR, short=512), elements=FINITE_FLOAT32, fill=FINITE_FLOAT32),
    truncation=st.booleans(),
)
def test_any_finite_audio_gives_finite_features_or_a_clear_value_error(front_end, samples, truncation):
    extractor = EXTRACTORS[front_end]
    kept = min(samples.size, extractor.window_samples) if truncation else samples.size
    refusal = None
    if kept == 0:
        refusal = r"^Audio is empty \(0 samples\)\.$"
    elif kept / SR < extractor.min_audio_seconds:
        refusal = r"^The audio is too short: "
    elif not has_speech(samples[:kept], SR):
        refusal = r"^The audio is silent or a steady sound"
    if refusal:
        with pytest.raises(ValueError, match=refusal):
            extractor(samples, sampling_rate=SR, truncation=truncation)
        return
    features = extractor(samples, sampling_rate=SR, truncation=truncation)
    frames = extractor.num_frames(kept)
    assert features["input_values"].shape == (1, extractor.n_mels, frames)
    assert features["input_mfcc"].shape == (1, extractor.n_mfcc, frames)
    assert features["attention_mask"].shape == (1, frames) and features["attention_mask"].all()
    assert np.isfinite(features["input_values"]).all() and np.isfinite(features["input_mfcc"]).all()


@settings(max_examples=30, deadline=None)
@given(rate=st.integers(1, 192_000).filter(lambda rate: rate != SR))
def test_a_wrong_sampling_rate_is_a_value_error_naming_both_rates(rate):
    with pytest.raises(ValueError, match=rf"expects audio sampled at {SR} Hz, got {rate} Hz; resample it first"):
        EXTRACTORS["tiny"](speechlike(0.5), sampling_rate=rate)


def test_far_beyond_full_scale_gives_the_features_of_the_clip_at_full_scale():
    # The regression behind the fix: from peaks of about 1e17 the shipped front end gave NaN.
    extractor = EXTRACTORS["default"]
    clip = speechlike(1.0)
    at_full_scale = extractor(clip / np.abs(clip).max(), sampling_rate=SR)
    for peak in (4.0, 1e18, 3e38):
        loud = extractor((clip.astype(np.float64) / np.abs(clip).max() * peak).astype(np.float32), sampling_rate=SR)
        for name in ("input_values", "input_mfcc"):
            np.testing.assert_allclose(loud[name], at_full_scale[name], atol=1e-4)


# --- Properties: the audio loader ----------------------------------------------------------------

# The sentences a valid, finite file or array may still give: each names a real property of it.
LOADER_ERRORS = {
    "empty": r"is empty",
    "short": r"is too short: \d+\.\d{3} s, while the minimum is 0\.25 s\.$",
    "huge": r"has samples as large as \d\.\de\+\d+, far beyond full scale \(1\.0\): it is probably corrupt\.$",
}


def check_loaded(call, samples: np.ndarray, rate: int) -> None:
    """`call()` gives float32 mono 16 kHz audio as long as `samples` at `rate` (one sample of
    resampling rounding), or an AudioError whose sentence is true of `samples`."""
    frames = samples.shape[0]
    expected_length = frames * SR / rate
    peak = float(np.abs(samples.astype(np.float64)).max()) if samples.size else 0.0
    try:
        waveform = call()
    except AudioError as error:
        message = str(error)
        check_sentence(message, "|".join(LOADER_ERRORS.values()))
        kind = next(kind for kind, pattern in LOADER_ERRORS.items() if re.search(pattern, message))
        if kind == "empty":
            assert expected_length < 1, message  # nothing, or less than one sample at 16 kHz
        elif kind == "short":
            assert 0 < expected_length < 0.25 * SR + 1, message
        else:
            assert peak > MAX_SAMPLE_MAGNITUDE, (message, peak)
        return
    assert waveform.dtype == np.float32 and waveform.ndim == 1 and waveform.flags.c_contiguous
    assert abs(len(waveform) - expected_length) <= 1
    assert np.isfinite(waveform).all()
    assert peak <= MAX_SAMPLE_MAGNITUDE


# "Any finite float array": sparse arrays of any float32 values over one background value, and
# dense noise at any level from -160 dBFS to the top of float32 (the levels named are the edges:
# silence, full scale, the magnitude limit, where float32 resampling and downmixing overflowed).
def sample_arrays(frames: int, channels: int):
    sparse = hnp.arrays(np.float32, (frames, channels), elements=FINITE_FLOAT32, fill=FINITE_FLOAT32)
    dense = st.builds(
        lambda seed, level: (np.random.default_rng(seed).standard_normal((frames, channels)) * 10.0**level)
        .clip(-3.4e38, 3.4e38).astype(np.float32),
        st.integers(0, 2**32 - 1), st.one_of(st.floats(-8, 38.6), st.sampled_from([-3.0, 0.0, 20.0, 37.0, 38.6])),
    )
    return st.one_of(sparse, dense)


@st.composite
def audio_files(draw, container):
    rate = draw(st.integers(8000, 96_000))
    if container == "FLAC" and rate > 65_535:
        rate -= rate % 10  # FLAC's streamable subset: above 65,535 Hz, whole tens of Hz only
    channels = draw(st.integers(1, 6))
    frames = draw(lengths(2 * rate, short=rate // 4))
    return rate, draw(sample_arrays(frames, channels))


# One test per format: in a single test, hypothesis's choice of format skewed the sample values.
@pytest.mark.parametrize("container, subtype", [("WAV", "FLOAT"), ("WAV", "PCM_16"), ("FLAC", "PCM_16")])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_finite_audio_file_loads_as_finite_16k_mono_or_a_clear_sentence(tmp_path, container, subtype, data):
    rate, samples = data.draw(audio_files(container))
    path = tmp_path / f"clip.{container.lower()}"  # the same file each example: tmp_path is per test
    sf.write(path, samples, rate, subtype=subtype)
    # What the file holds: PCM clips values beyond full scale on writing.
    stored, _ = sf.read(path, dtype="float32", always_2d=True) if samples.shape[0] else (samples, rate)
    check_loaded(lambda: load_audio(path), stored, rate)


@settings(max_examples=40, deadline=None)
@given(
    samples=st.integers(1, 6).flatmap(
        lambda channels: lengths(SR, short=SR // 4).flatmap(lambda frames: sample_arrays(frames, channels))),
    mono=st.booleans(),
    rate=st.integers(8000, 96_000),
)
def test_any_finite_array_gives_finite_16k_audio_or_a_clear_sentence(samples, mono, rate):
    # In-memory audio (Gradio's numpy type, `predict_waveform`): (samples,) or (samples, channels).
    if mono:
        samples = samples[:, 0]
    check_loaded(lambda: validate_waveform(to_mono_16k(samples, rate), SR), samples, rate)


def test_a_float_file_far_beyond_full_scale_is_refused_as_corrupt_not_as_nan(tmp_path):
    # The regression behind the fix: soxr turned these finite samples into NaN, and a float32
    # downmix overflowed to inf, so the file was said to contain NaN or infinite values.
    for channels, rate in [(2, SR), (1, 44_100)]:
        frames = np.full((SR, channels), 3e38, np.float32)
        sf.write(tmp_path / "loud.wav", frames, rate, subtype="FLOAT")
        with pytest.raises(AudioError, match=r"^The audio in 'loud\.wav' has samples as large as 3\.0e\+38, far"):
            load_audio(tmp_path / "loud.wav")
    with pytest.raises(AudioError, match=r"^The audio has samples as large as 1\.0e\+300"):
        to_mono_16k(np.full(SR, 1e300), 44_100)
