"""Tests for `ser_model.audio_io`.

Every file is generated in `tmp_path`, except in the real-corpus smoke test. Bad files (the
hostile-input corpus through `load_audio` and every other surface) and the property-based tests
live in test_hostile_input.py.
"""

import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_model import audio_io
from ser_model.audio_io import (
    AudioError,
    StreamConverter,
    audio_duration,
    load_audio,
    open_audio,
    stream_audio,
    to_mono_16k,
    validate_waveform,
)

from .conftest import DATA_DIR
from .hostile_inputs import write_float_wav, write_random_bytes


SR = 16000
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg): m4a/webm are not tested"
)


def tone(rate, seconds=1.0, frequency=220.0, seed=0):
    """A sine at half scale plus a little noise, float32 mono."""
    t = np.arange(int(round(rate * seconds))) / rate
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * np.sin(2 * np.pi * frequency * t) + noise).astype(np.float32)


def assert_matches(waveform, expected, slack=0):
    """Float32 mono, the expected length (1% plus `slack` samples of codec padding), the same wave."""
    assert waveform.dtype == np.float32 and waveform.ndim == 1 and waveform.flags.c_contiguous
    assert abs(len(waveform) - len(expected)) <= 0.01 * len(expected) + slack
    n = min(len(waveform), len(expected))
    assert np.corrcoef(waveform[:n], expected[:n])[0, 1] > 0.9


def write_ffmpeg(tmp_path, name, codec):
    source = tmp_path / "source.wav"
    sf.write(source, tone(SR), SR)
    target = tmp_path / name
    command = [FFMPEG, "-nostdin", "-v", "error", "-y", "-i", source, "-c:a", codec, target]
    subprocess.run(command, check=True)
    return target


@pytest.mark.parametrize(
    "name, container, subtype, rate",
    [
        ("pcm_u8.wav", "WAV", "PCM_U8", 16000),
        ("pcm_16.wav", "WAV", "PCM_16", 16000),
        ("pcm_24.wav", "WAV", "PCM_24", 22050),
        ("pcm_32.wav", "WAV", "PCM_32", 16000),
        ("float.wav", "WAV", "FLOAT", 16000),
        ("double.wav", "WAV", "DOUBLE", 32000),
        ("really_aiff.wav", "AIFF", "PCM_16", 16000),
        ("clip.flac", "FLAC", "PCM_16", 16000),
        ("vorbis.ogg", "OGG", "VORBIS", 44100),
        ("opus.ogg", "OGG", "OPUS", 48000),
        ("clip.mp3", "MP3", "MPEG_LAYER_III", 44100),
    ],
)
def test_soundfile_formats_load_as_float32_mono_16k(tmp_path, name, container, subtype, rate):
    signal = tone(rate)
    sf.write(tmp_path / name, signal, rate, format=container, subtype=subtype)
    assert_matches(load_audio(tmp_path / name), soxr.resample(signal, rate, SR))


@needs_ffmpeg
@pytest.mark.parametrize("name, codec", [("clip.m4a", "aac"), ("clip.webm", "libopus")])
def test_ffmpeg_formats_load(tmp_path, name, codec):
    path = write_ffmpeg(tmp_path, name, codec)
    # AAC pads the end to a whole 1024-sample frame.
    assert_matches(load_audio(path), tone(SR), slack=1024)
    assert audio_duration(path) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("rate", [8000, 24414, 44100, 96000])
def test_rates_are_resampled_to_16k(tmp_path, rate):
    signal = tone(rate)
    sf.write(tmp_path / "clip.wav", signal, rate, subtype="PCM_16")
    assert_matches(load_audio(tmp_path / "clip.wav"), soxr.resample(signal, rate, SR))


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged(tmp_path, channels):
    # Different tones per channel, so only a true average matches the expected signal.
    frames = np.stack([tone(44100, frequency=220.0 * (c + 1), seed=c) for c in range(channels)], axis=1)
    sf.write(tmp_path / "multi.wav", frames, 44100, subtype="PCM_16")
    expected = soxr.resample(frames.mean(axis=1), 44100, SR)
    assert_matches(load_audio(tmp_path / "multi.wav"), expected)


def test_truncated_wav_loads_the_samples_present(tmp_path):
    # Decision: a header that promises more data than the file holds is not an error; the
    # samples that are present load (libsndfile clamps the frame count to the data).
    signal = tone(SR)
    sf.write(tmp_path / "full.wav", signal, SR, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 2 * 8000 + 1])
    waveform = load_audio(tmp_path / "cut.wav")
    assert len(waveform) == 8000
    assert np.corrcoef(waveform, signal[:8000])[0, 1] > 0.99
    assert audio_duration(tmp_path / "cut.wav") == pytest.approx(0.5)


def test_missing_ffmpeg_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(audio_io.shutil, "which", lambda name: None)
    write_random_bytes(tmp_path / "voice.m4a")
    write_random_bytes(tmp_path / "bad.wav")
    needs_ffmpeg_message = r"'voice\.m4a'.*needs FFmpeg, which is not installed \(apt-get install ffmpeg\)"
    with pytest.raises(AudioError, match=needs_ffmpeg_message):
        load_audio(tmp_path / "voice.m4a")
    # A corrupt file with a libsndfile extension is corrupt, not missing a decoder.
    with pytest.raises(AudioError, match="not a supported audio file"):
        load_audio(tmp_path / "bad.wav")


def test_max_seconds_is_checked_before_decoding(tmp_path, monkeypatch):
    sf.write(tmp_path / "long.wav", tone(SR, seconds=3.0), SR)
    def refuse(*args, **kwargs):
        pytest.fail("decoded a file whose header already says it is too long")

    monkeypatch.setattr(audio_io, "_soundfile_chunks", refuse)
    with pytest.raises(AudioError, match=r"'long\.wav' lasts 3\.0 s, longer than the limit of 2\.0 s"):
        load_audio(tmp_path / "long.wav", max_seconds=2)


@needs_ffmpeg
def test_max_seconds_without_header_duration_stops_decoding(tmp_path, monkeypatch):
    path = write_ffmpeg(tmp_path, "clip.webm", "libopus")
    monkeypatch.setattr(audio_io, "_ffprobe_duration", lambda path: None)
    with pytest.raises(AudioError, match="longer than the limit of 0.5 s"):
        load_audio(path, max_seconds=0.5)
    assert audio_duration(path) == pytest.approx(1.0, abs=0.02)


def test_audio_duration_from_header(tmp_path):
    sf.write(tmp_path / "clip.flac", tone(24414, seconds=1.5), 24414)
    assert audio_duration(tmp_path / "clip.flac") == pytest.approx(1.5, abs=1e-4)
    write_random_bytes(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="not a supported audio file"):
        audio_duration(tmp_path / "bad.wav")


def test_stream_matches_load_and_block_sizes(tmp_path):
    frames = np.stack([tone(44100, seconds=3.0), tone(44100, seconds=3.0, frequency=330.0)], axis=1)
    sf.write(tmp_path / "stereo.wav", frames, 44100, subtype="PCM_24")
    blocks = list(stream_audio(tmp_path / "stereo.wav", block_seconds=0.25))
    assert {len(block) for block in blocks[:-1]} == {4000} and 0 < len(blocks[-1]) <= 4000
    assert all(block.dtype == np.float32 and block.flags.c_contiguous for block in blocks)
    streamed, loaded = np.concatenate(blocks), load_audio(tmp_path / "stereo.wav")
    assert streamed.shape == loaded.shape
    assert np.abs(streamed - loaded).max() < 1e-3


def test_one_opening_gives_the_duration_the_truncation_and_the_samples(tmp_path):
    sf.write(tmp_path / "full.wav", tone(SR, seconds=1.0), SR, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[: 44 + 2 * 8000])
    with open_audio(tmp_path / "cut.wav") as audio:
        assert (audio.name, audio.duration) == ("cut.wav", 0.5)
        assert audio.notice == ("'cut.wav' is truncated: its header promises 1.0 s of audio but the file holds only "
                                "0.5 s, which is what was classified.")
        assert sum(map(len, audio.blocks)) == 8000
    with open_audio(tmp_path / "full.wav") as audio:
        assert audio.duration == 1.0 and audio.notice is None
    with pytest.raises(AudioError, match=r"^'full\.wav' lasts 1\.0 s, longer than the limit of 0\.5 s\.$"):
        open_audio(tmp_path / "full.wav", max_seconds=0.5)


def test_closing_an_opened_file_early_releases_it(tmp_path):
    sf.write(tmp_path / "clip.flac", tone(44100, seconds=2.0), 44100)
    audio = open_audio(tmp_path / "clip.flac", block_seconds=0.5)
    next(audio.blocks)
    audio.close()
    assert all(resource.closed for resource in audio._resources)


def test_stream_errors(tmp_path):
    # Path problems surface at the call, data problems when the bad block is reached.
    with pytest.raises(AudioError, match="File not found"):
        stream_audio(tmp_path / "missing.wav")
    write_float_wav(tmp_path / "nan.wav", np.nan)
    blocks = stream_audio(tmp_path / "nan.wav", block_seconds=0.5)
    with pytest.raises(AudioError, match="NaN or infinite"):
        list(blocks)


def test_stream_memory_is_bounded_on_a_long_file(tmp_path):
    seconds, rng = 600, np.random.default_rng(0)
    with sf.SoundFile(tmp_path / "long.wav", "w", SR, 1, subtype="PCM_16") as sound:
        for _ in range(seconds // 60):
            sound.write((0.01 * rng.standard_normal(60 * SR)).astype(np.float32))
    decoded_bytes = seconds * SR * 4
    tracemalloc.start()
    try:
        blocks = stream_audio(tmp_path / "long.wav", block_seconds=5.0)
        num_samples = sum(len(block) for block in blocks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert num_samples == seconds * SR
    assert peak < decoded_bytes / 10, f"peak {peak / 1e6:.1f} MB for {decoded_bytes / 1e6:.0f} MB of audio"


def test_to_mono_16k_int16_stereo_at_44k():
    samples = (tone(44100)[:, None] * np.array([32767, -32768])).astype(np.int16)
    samples[0] = [-32768, -32768]
    waveform = to_mono_16k(samples, 44100)
    assert waveform.dtype == np.float32 and waveform.shape == (16000,)
    assert np.abs(waveform).max() <= 1.0
    assert to_mono_16k(samples[:1], 16000)[0] == -1.0


@pytest.mark.parametrize(
    "samples, expected",
    [
        (np.array([-(2**31), 0, 2**30], dtype=np.int32), [-1.0, 0.0, 0.5]),
        (np.array([0, 128, 192], dtype=np.uint8), [-1.0, 0.0, 0.5]),
        (np.array([-128, 0, 64], dtype=np.int8), [-1.0, 0.0, 0.5]),
        (np.array([-0.5, 0.0, 0.25], dtype=np.float64), [-0.5, 0.0, 0.25]),
    ],
)
def test_to_mono_16k_scales_each_dtype(samples, expected):
    waveform = to_mono_16k(samples, SR)
    assert waveform.dtype == np.float32
    np.testing.assert_allclose(waveform, expected, atol=1e-6)


@pytest.mark.parametrize(
    "samples", [np.zeros((4, 2, 2)), np.zeros(4, dtype=complex), np.zeros(4, dtype=bool)]
)
def test_to_mono_16k_rejects_odd_arrays(samples):
    with pytest.raises(AudioError):
        to_mono_16k(samples, SR)


def test_validate_waveform_messages():
    assert validate_waveform(tone(SR), SR) is not None
    for waveform, words in [
        (np.zeros(0, np.float32), "The audio is empty"),
        (np.full(SR, np.nan, np.float32), "NaN or infinite"),
        (tone(SR, seconds=0.1), "too short: 0.100 s, while the minimum is 0.25 s"),
    ]:
        with pytest.raises(AudioError, match=words):
            validate_waveform(waveform, SR)


@pytest.mark.parametrize("pattern", ["ravdess/Actor_01/*", "tess/OAF_*", "tess/OA_bite_neutral.*"])
def test_real_corpus_files(pattern):
    matches = sorted(DATA_DIR.glob(pattern))
    if not matches:
        pytest.skip(f"no file matches {DATA_DIR / pattern}; set SER_DATA_DIR to the corpora folder")
    path = matches[0]
    waveform = load_audio(path)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert len(waveform) / SR == pytest.approx(audio_duration(path), rel=0.01)
    assert np.abs(np.concatenate(list(stream_audio(path, block_seconds=1.0))) - waveform).max() < 1e-3


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_a_stream_of_chunks_is_resampled_as_the_whole_audio_at_once(rate):
    # The live mode's 0.1 s chunks: resampling each one apart left an error of about 0.008 at every boundary.
    audio = tone(rate, seconds=2.0, frequency=440.0)
    whole = soxr.resample(audio, rate, SR, quality="HQ")
    converter = StreamConverter(SR)
    step = rate // 10
    chunks = [converter.convert((audio[i:i + step] * 32767).astype(np.int16), rate) for i in range(0, len(audio), step)]
    streamed = np.concatenate([*chunks, converter.flush()])
    pcm = soxr.resample((audio * 32767).astype(np.int16).astype(np.float32) / 32768, rate, SR, quality="HQ")
    assert len(streamed) == len(whole)
    assert np.abs(streamed - pcm).max() < 1e-4
    one_by_one = np.concatenate([to_mono_16k(audio[i:i + step], rate) for i in range(0, len(audio), step)])
    assert np.abs(one_by_one - whole).max() > 1e-3  # what the stream avoids


def test_a_stream_at_the_target_rate_passes_through_and_a_new_rate_starts_a_new_stream():
    converter = StreamConverter(SR)
    audio = tone(SR, seconds=0.5)
    np.testing.assert_array_equal(converter.convert(audio, SR), audio)
    assert len(converter.flush()) == 0
    stereo = np.stack([tone(48_000, seconds=1.0)] * 2, axis=1)
    converted = np.concatenate([converter.convert(stereo, 48_000), converter.flush()])
    assert len(converted) == SR and converted.dtype == np.float32
    with pytest.raises(AudioError, match="Sampling rates must be positive"):
        converter.convert(audio, 0)
