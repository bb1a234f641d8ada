"""The live mode's session (`ser_model.serving.live`), checked without Gradio on the tiny model (1 s windows)."""

import numpy as np
import pytest

from ser_model.serving.inference import EmotionRecognizer
from ser_model.serving.live import LiveSession

from .conftest import speechlike


@pytest.fixture
def recognizer(tiny_model_dir):
    return EmotionRecognizer.from_pretrained(tiny_model_dir)


def int16_chunks(audio: np.ndarray, rate: int, seconds: float = 0.5):
    """The audio as the browser streams it: int16 chunks at the microphone's rate."""
    pcm = (audio * 32767).astype(np.int16)
    step = round(seconds * rate)
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


def test_each_chunk_classifies_the_newest_window(recognizer):
    session = LiveSession.for_recognizer(recognizer, every_seconds=0.5)
    chunks = int16_chunks(speechlike(3.0, 48_000), 48_000)
    windows = [session.add_chunk(recognizer, chunk, 48_000) for chunk in chunks]
    # The first chunk is all there is (0.5 s); from 1 s on, the last 1 s window. One resampler runs through
    # the whole stream, which holds back its filter's delay (about 33 ms) until the stream ends.
    spans = [value for w in windows for value in (w.start, w.end)]
    assert spans == pytest.approx([0, 0.5, 0, 1, 0.5, 1.5, 1, 2, 1.5, 2.5, 2, 3], abs=0.04)
    assert session.seconds == pytest.approx(3.0, abs=0.04)


def test_the_live_window_is_classified_as_the_same_audio_from_a_file(recognizer):
    audio = speechlike(2.5, 16_000, seed=4)
    session = LiveSession.for_recognizer(recognizer, every_seconds=0.5)
    for chunk in int16_chunks(audio, 16_000):
        window = session.add_chunk(recognizer, chunk, 16_000)
    last_second = (audio * 32767).astype(np.int16)[-16_000:].astype(np.float32) / 32768
    assert window.probabilities == pytest.approx(recognizer.classify([last_second])[0][0], abs=1e-6)


def test_chunks_of_a_tenth_of_a_second_give_one_decision_per_second_of_audio(recognizer):
    session = LiveSession.for_recognizer(recognizer)
    decided = [session.add_chunk(recognizer, chunk, 16_000) is not None
               for chunk in int16_chunks(speechlike(3.0), 16_000, seconds=0.1)]
    # The first as soon as there is enough audio (0.1 s), then at 1.1 and 2.1 s.
    assert [i for i, d in enumerate(decided) if d] == [0, 10, 20]
    assert [w.end for w in session.history] == pytest.approx([0.1, 1.1, 2.1])


def test_too_little_audio_and_silence_are_not_classified(recognizer):
    session = LiveSession.for_recognizer(recognizer)
    assert session.add_chunk(recognizer, np.zeros(800, np.int16), 16_000) is None  # 50 ms < the 0.1 s minimum
    silent = session.add_chunk(recognizer, np.zeros(16_000, np.int16), 16_000)
    assert silent is not None and silent.probabilities is None
    assert session.overall() is None and session.prediction() is None


def test_memory_stays_bounded_while_the_overall_emotion_counts_everything(recognizer):
    session = LiveSession.for_recognizer(recognizer, max_history_seconds=5.0, every_seconds=1.0)
    chunks = int16_chunks(speechlike(20.0, 16_000), 16_000, seconds=1.0)
    sums = np.zeros(len(recognizer.labels))
    for chunk in chunks:
        window = session.add_chunk(recognizer, chunk, 16_000)
        sums += [window.probabilities[label] for label in recognizer.labels]
        assert len(session.buffer) <= session.window_samples  # one window of audio, however long the talk
    assert len(session.history) <= 6 and session.history[-1].end == pytest.approx(20.0)
    assert session.history[0].end >= 20.0 - 5.0
    overall = session.overall()
    assert [overall[label] for label in recognizer.labels] == pytest.approx(sums / len(chunks))
    prediction = session.prediction()
    assert prediction.duration == pytest.approx(20.0) and prediction.windows == list(session.history)


def test_a_chunk_file_is_read_with_its_rate_and_channels(tmp_path):
    import soundfile as sf

    from ser_model.audio_io import AudioError
    from ser_model.serving.live import read_chunk

    sf.write(tmp_path / "chunk.wav", np.stack([speechlike(0.1, 48_000)] * 2, axis=1), 48_000, subtype="PCM_16")
    samples, rate = read_chunk(tmp_path / "chunk.wav")
    assert rate == 48_000 and samples.shape == (4_800, 2)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match="could not be read"):
        read_chunk(tmp_path / "bad.wav")


def test_the_session_tells_how_much_audio_never_arrived(recognizer):
    session = LiveSession.for_recognizer(recognizer)
    session.started -= 4.0  # four seconds since the session started...
    session.add_chunk(recognizer, (speechlike(2.0) * 32767).astype(np.int16), 16_000)  # ...but 2 s arrived
    assert session.skipped_fraction() == pytest.approx(0.5, abs=0.05)


def test_the_recording_is_kept_on_disk_and_saved_as_a_wav_after_stop(recognizer, tmp_path):
    import soundfile as sf

    session = LiveSession.for_recognizer(recognizer, recording=str(tmp_path / "live.pcm"))
    audio = speechlike(2.0, 48_000, seed=2)
    for chunk in int16_chunks(audio, 48_000, seconds=0.1):
        session.add_chunk(recognizer, chunk, 48_000)
    wav = session.save_recording(tmp_path / "recording.wav")
    samples, rate = sf.read(wav, dtype="float32")
    # What the model heard: 16 kHz mono, every chunk, in order.
    assert rate == 16_000 and len(samples) == session.total_samples == 32_000
    assert not (tmp_path / "live.pcm").exists()  # the raw file goes once the WAV is written
    assert LiveSession.for_recognizer(recognizer).save_recording(tmp_path / "none.wav") is None


def test_a_session_resamples_its_chunks_as_one_stream(recognizer, tmp_path):
    # A 48 kHz tone in the browser's 0.1 s chunks: resampled chunk by chunk it showed an error of about
    # 0.008 at every boundary; the session's one resampler gives the tone resampled whole.
    import soundfile as sf
    import soxr

    t = np.arange(48_000 * 2) / 48_000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    session = LiveSession.for_recognizer(recognizer, recording=str(tmp_path / "live.pcm"))
    for chunk in int16_chunks(tone, 48_000, seconds=0.1):
        session.add_chunk(recognizer, chunk, 48_000)
    heard, _ = sf.read(session.save_recording(tmp_path / "recording.wav"), dtype="float32")
    whole = soxr.resample((tone * 32767).astype(np.int16).astype(np.float32) / 32768, 48_000, 16_000, quality="HQ")
    assert len(heard) == len(whole)
    assert np.abs(heard - whole).max() < 1e-4  # the recording's own 16-bit rounding is 3e-5
