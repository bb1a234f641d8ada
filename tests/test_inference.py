import tracemalloc
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from ser_model import SERFeatureExtractor, SERForAudioClassification
from ser_model.audio_io import AudioError
from ser_model.errors import InputError
from ser_model.serving.inference import EmotionRecognizer, quantize_whisper_branch
from ser_model.serving.prediction import Prediction
from ser_model.serving.signal_view import ENVELOPE_POINTS, Envelope
from ser_model.windows import sliding_windows

from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
from .conftest import save_tiny_model, speechlike, tiny_config
from .test_whisper_branch import whisper_config, whisper_features


@pytest.fixture
def recognizer(tiny_model_dir):
    return EmotionRecognizer.from_pretrained(tiny_model_dir, batch_size=8)


@pytest.mark.parametrize("total", [5, 10, 11, 25, 26, 100, 103])
@pytest.mark.parametrize("block", [1, 3, 7, 1000])
def test_sliding_windows_cover_the_audio_with_full_windows(total, block):
    window, hop = 10, 5
    samples = np.arange(total, dtype=np.float32)
    blocks = [samples[i:i + block] for i in range(0, total, block)]
    windows = list(sliding_windows(blocks, window, hop))
    starts = [start for start, _, _ in windows]
    for start, values, _ in windows:
        np.testing.assert_array_equal(values, samples[start:start + len(values)])  # the right samples
    if total <= window:
        assert starts == [0] and len(windows[0][1]) == total  # one window of the clip's own length
    else:
        assert all(len(values) == window for _, values, _ in windows)
        assert starts[-1] == total - window  # the tail is covered
        assert all(b - a <= hop for a, b in zip(starts, starts[1:]))  # no gaps between windows
    assert windows[-1][2] == total


def test_one_window_for_short_audio(recognizer):
    prediction = recognizer.predict_waveform(speechlike(0.8), 16_000)
    assert len(prediction.windows) == 1
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)


def test_other_rates_and_channels_are_converted(recognizer):
    stereo_44k = np.stack([speechlike(0.8, 44_100), speechlike(0.8, 44_100, seed=3)], axis=1)
    prediction = recognizer.predict_waveform((stereo_44k * 32767).astype(np.int16), 44_100)
    assert prediction.duration == pytest.approx(0.8, abs=0.01)


def test_silent_windows_are_marked_and_left_out_of_the_overall_prediction(recognizer):
    audio = np.concatenate([speechlike(2.0), np.zeros(32_000, np.float32), speechlike(2.0, seed=5)])
    prediction = recognizer.predict_waveform(audio, 16_000)
    silent = [w for w in prediction.windows if w.probabilities is None]
    assert silent and all(2.0 <= w.start and w.end <= 4.0 for w in silent)
    spoken = [w.probabilities for w in prediction.windows if w.probabilities is not None]
    expected = {label: np.mean([p[label] for p in spoken]) for label in recognizer.labels}
    assert prediction.probabilities == pytest.approx(expected)


@pytest.mark.parametrize("audio, message", [
    (np.zeros(16_000, np.float32), "silent"),
    (speechlike(0.05), "too short"),
    (np.zeros(0, np.float32), "empty"),
])
def test_bad_audio_gives_one_sentence(recognizer, audio, message):
    with pytest.raises(AudioError, match=message):
        recognizer.predict_waveform(audio, 16_000)


def write_long_file(path, minutes):
    with sf.SoundFile(path, "w", 16_000, 1, "PCM_16") as out:
        for i in range(round(minutes * 6)):
            out.write(speechlike(10.0, seed=i))
    return path


def peak_allocation(recognizer, path, **kwargs):
    tracemalloc.start()
    prediction = recognizer.predict_file(path, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return prediction, peak


@pytest.mark.slow  # ten minutes of audio through the model
def test_ten_minute_file_streams_in_bounded_memory(recognizer, tmp_path):
    # A 10-minute file through the long-audio path: every window classified, in order, while
    # memory stays flat in the length (the decoded audio alone would be 38 MB).
    seen = []
    prediction, peak = peak_allocation(recognizer, write_long_file(tmp_path / "long.wav", 10), keep_view=True,
                                       progress=lambda done, total: seen.append((done, total)))
    _, short_peak = peak_allocation(recognizer, write_long_file(tmp_path / "short.wav", 2), keep_view=True)

    window, hop, seconds = recognizer.config.window_seconds, recognizer.config.window_hop_seconds, 600
    assert len(prediction.windows) == int((seconds - window) / hop) + 1
    assert prediction.duration == pytest.approx(seconds)
    assert [w.start for w in prediction.windows] == sorted(w.start for w in prediction.windows)
    assert prediction.windows[-1].end == pytest.approx(seconds)
    assert seen[-1] == (pytest.approx(seconds), pytest.approx(seconds))
    assert len(prediction.view.envelope_seconds) <= 2 * ENVELOPE_POINTS + 1  # the picture's data does not grow either
    # Five times the audio: only the per-window results (about 1 kB each) may add to the peak.
    assert peak < short_peak + 2 * 2**20, f"{peak / 2**20:.1f} MiB for 10 min vs {short_peak / 2**20:.1f} for 2 min"
    assert peak < 38 * 2**20 / 2


def test_max_seconds_refuses_before_decoding(recognizer, tmp_path):
    sf.write(tmp_path / "clip.wav", speechlike(3.0), 16_000)
    with pytest.raises(AudioError, match="longer than the limit of 2.0 s"):
        recognizer.predict_file(tmp_path / "clip.wav", max_seconds=2.0)


def test_a_missing_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(OSError, match="No model folder at"):
        EmotionRecognizer.from_pretrained(tmp_path / "nowhere")


def test_classify_gives_each_clip_its_own_decision_in_one_forward_pass(recognizer):
    clips = [speechlike(0.5), speechlike(1.5, seed=2)]
    calls = []
    forward = recognizer.model.forward
    recognizer.model.forward = lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs)
    try:
        together = recognizer.classify(clips)
    finally:
        del recognizer.model.forward
    assert len(calls) == 1 and [voice for _, voice in together] == [None, None]  # the tiny model has no voice head
    alone = [recognizer.classify([clip])[0][0] for clip in clips]
    # Each clip is decided as when it is alone (its padding masked; the convolutions' edges differ by 1e-5).
    assert [probabilities for probabilities, _ in together] == [pytest.approx(p, abs=1e-4) for p in alone]
    assert together[0][0] != together[1][0]


@pytest.mark.parametrize("seconds", [0.01, 0.05])
def test_too_short_files_and_streams_are_refused_before_the_model(recognizer, tmp_path, seconds):
    sf.write(tmp_path / "blip.wav", speechlike(seconds), 16_000)
    with pytest.raises(AudioError, match="too short"):
        recognizer.predict_file(tmp_path / "blip.wav")
    with pytest.raises(AudioError, match="too short"):
        recognizer.predict_stream([speechlike(seconds)])


def test_a_name_that_is_neither_folder_nor_hub_id_is_one_sentence():
    from ser_model.errors import InputError

    with pytest.raises(InputError, match="'my model' is neither a model folder in .* nor a Hub id such as org/name"):
        EmotionRecognizer.from_pretrained("my model")


def test_a_bare_name_that_is_no_folder_here_fails_at_once_without_asking_the_hub(tmp_path, monkeypatch):
    # `from_pretrained("model")` outside the repository: transformers would take "model" for a Hub id
    # and retry the network for about 20 s (HF_HUB_OFFLINE unset, no network), then end in a traceback.
    from ser_model.errors import InputError

    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr("ser_model.serving.inference.SERForAudioClassification.from_pretrained", no_network)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=rf"^'model' is neither a model folder in {tmp_path} nor a Hub id"):
        EmotionRecognizer.from_pretrained("model")
    with pytest.raises(InputError, match="neither a model folder"):
        EmotionRecognizer.load_labels("model")


def test_a_truncated_wav_is_classified_with_a_notice_that_gives_both_durations(recognizer, tmp_path):
    path = write_truncated_wav(tmp_path / "cut.wav", seconds=3.0, kept=0.5)
    assert sf.info(path).frames == 24_000  # libsndfile alone reads the 1.5 s without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sentence travels in the result, not as a Python warning
        prediction = recognizer.predict_file(path)
    assert prediction.notices == [TRUNCATED_SENTENCE]
    assert prediction.duration == pytest.approx(1.5)
    assert Prediction.from_dict(prediction.to_dict()).notices == [TRUNCATED_SENTENCE]


def test_a_wav_with_the_streaming_unknown_size_is_not_called_truncated(recognizer, tmp_path):
    # Recorders that stream a WAV write 0xFFFFFFFF as the data size until they finish.
    path = tmp_path / "streamed.wav"
    sf.write(path, speechlike(1.5), 16_000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no truncation warning
        prediction = recognizer.predict_file(path)
    assert prediction.duration == pytest.approx(1.5) and prediction.notices == []


@pytest.mark.parametrize("length", [1, 7_999, 8_001, 1_000_000])
@pytest.mark.parametrize("block", [1_000, 16_000, 70_001])
def test_the_envelope_bounds_every_sample_in_bounded_size_whatever_the_blocks(length, block):
    samples = np.random.default_rng(0).standard_normal(length).astype(np.float32)
    envelope = Envelope()
    assert sum(map(len, envelope.tap(samples[i:i + block] for i in range(0, length, block)))) == length
    seconds, low, high = envelope.result(16_000)
    assert len(seconds) == len(low) == len(high) <= 2 * ENVELOPE_POINTS + 1
    bin_samples = envelope.bin
    assert np.allclose(seconds * 16_000, np.arange(len(low)) * bin_samples)
    for i in range(len(low)):  # each bin holds exactly its stretch of samples, the last what remains
        stretch = samples[i * bin_samples:(i + 1) * bin_samples]
        assert (low[i], high[i]) == (stretch.min(), stretch.max())
    assert len(low) == -(-length // bin_samples)


def test_no_name_loads_the_bundled_model_from_any_folder(tmp_path, monkeypatch):
    from ser_model import bundled_model
    from ser_model.model_info import BUNDLED_MODEL

    if not (BUNDLED_MODEL / "model.safetensors").is_file():
        pytest.skip("the bundled model/ has not been exported")
    monkeypatch.chdir(tmp_path)  # the README's lines run from anywhere
    recognizer = EmotionRecognizer.from_pretrained()
    assert bundled_model() == str(BUNDLED_MODEL) and recognizer.config.name_or_path == str(BUNDLED_MODEL)


def test_an_installation_without_the_repository_says_it_has_no_bundled_model(tmp_path, monkeypatch):
    monkeypatch.setattr("ser_model.model_info.BUNDLED_MODEL", tmp_path / "model")
    with pytest.raises(OSError, match=r"has no bundled model .* `pip install -e /path/to/repository`"):
        EmotionRecognizer.from_pretrained()


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_serving_uses_every_core_unless_omp_num_threads_says_otherwise(monkeypatch, restore_threads):
    from ser_model.serving.inference import available_cores, set_inference_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    torch.set_num_threads(1)
    assert set_inference_threads() == available_cores() == torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_inference_threads() == torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert set_inference_threads() == 3


def test_bfloat16_is_chosen_only_where_the_cpu_has_it_and_gives_the_same_answer(tmp_path, monkeypatch):
    save_tiny_model(tmp_path)
    for native in (False, True):
        monkeypatch.setattr("ser_model.serving.inference.native_bfloat16", lambda: native)
        assert EmotionRecognizer.from_pretrained(tmp_path).precision == ("bfloat16" if native else "float32")
    with pytest.raises(InputError, match="precision must be one of auto, float32, bfloat16, got 'half'"):
        EmotionRecognizer.from_pretrained(tmp_path, precision="half")
    clip = speechlike(1.5)
    full = EmotionRecognizer.from_pretrained(tmp_path, precision="float32").predict_waveform(clip, 16_000)
    half = EmotionRecognizer.from_pretrained(tmp_path, precision="bfloat16").predict_waveform(clip, 16_000)
    assert max(abs(full.probabilities[k] - half.probabilities[k]) for k in full.probabilities) < 0.02
    assert full.probabilities != half.probabilities  # bfloat16 really ran


def test_a_model_with_a_voice_head_says_how_the_voice_sounds_over_the_spoken_windows(tmp_path):
    from ser_model import SERFeatureExtractor, SERForAudioClassification
    from ser_model.configuration import VOICE_LABELS

    from .conftest import tiny_config

    config = tiny_config(voice_head=True)
    SERForAudioClassification(config).save_pretrained(tmp_path)
    SERFeatureExtractor.from_config(config).save_pretrained(tmp_path)
    recognizer = EmotionRecognizer.from_pretrained(tmp_path)
    audio = np.concatenate([speechlike(1.0), np.zeros(16_000, dtype=np.float32), speechlike(1.0, seed=3)])
    prediction = recognizer.predict_waveform(audio, 16_000)
    spoken = [w.voice for w in prediction.windows if w.probabilities is not None]
    assert all(w.voice is None for w in prediction.windows if w.probabilities is None)
    assert prediction.voice == pytest.approx({v: np.mean([s[v] for s in spoken]) for v in VOICE_LABELS})
    assert sum(prediction.voice.values()) == pytest.approx(1.0) and prediction.voice_label in VOICE_LABELS
    assert Prediction.from_dict(prediction.to_dict()).voice == prediction.voice


def test_a_model_without_a_voice_head_says_nothing_of_the_voice(recognizer):
    prediction = recognizer.predict_waveform(speechlike(0.5), 16_000)
    assert prediction.voice is None and prediction.voice_label is None and "voice" not in prediction.to_dict()


def test_a_file_is_opened_once_per_prediction(recognizer, tmp_path, monkeypatch):
    import builtins

    path = write_truncated_wav(tmp_path / "cut.wav", seconds=3.0, kept=0.5)
    opened, decoders = [], []
    real_open, real_soundfile = builtins.open, sf.SoundFile

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_soundfile(file, *args, **kwargs):
        decoders.append(file)
        return real_soundfile(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(sf, "SoundFile", counting_soundfile)
    prediction = recognizer.predict_file(path, max_seconds=60, progress=lambda done, total: None)
    # Its length, its truncation and its samples all come from one open file.
    assert opened.count(str(path)) == 1 and len(decoders) == 1
    assert prediction.notices == [TRUNCATED_SENTENCE] and prediction.duration == pytest.approx(1.5)




def test_int8_quantises_the_whisper_branchs_linear_layers_only_and_keeps_the_probabilities(tmp_path):
    torch.manual_seed(0)
    model = SERForAudioClassification(whisper_config(voice_head=True)).eval()
    model.save_pretrained(tmp_path)
    SERFeatureExtractor.from_config(model.config).save_pretrained(tmp_path)
    inputs = whisper_features(model.config, 0.8, 1.0)
    with torch.no_grad():
        before = model(**inputs).logits.softmax(dim=-1)
    quantised = EmotionRecognizer.from_pretrained(tmp_path, device="cpu", int8=True).model
    encoder = list(quantised.ser.whisper_encoder.encoder.modules())
    assert not any(type(m) is torch.nn.Linear for m in encoder)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in encoder)
    assert type(quantised.head.dense) is torch.nn.Linear  # the rest of the model stays float32
    with torch.no_grad():
        after = quantised(**inputs).logits.softmax(dim=-1)
    assert torch.allclose(before, after, atol=0.02), (before, after)
    plain = SERForAudioClassification(tiny_config())
    assert quantize_whisper_branch(plain) is plain
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in plain.modules())


def test_a_recognizer_with_its_own_torch_thread_loads_and_classifies_there_with_the_same_answer(tmp_path):
    import threading

    save_tiny_model(tmp_path)
    plain = EmotionRecognizer.from_pretrained(tmp_path, precision="float32")
    served = EmotionRecognizer.from_pretrained(tmp_path, precision="float32", one_torch_thread=True)
    clip = speechlike(1.5)
    assert served.predict_waveform(clip, 16_000).probabilities == pytest.approx(
        plain.predict_waveform(clip, 16_000).probabilities, abs=1e-6)
    assert served.torch_thread.run(threading.get_ident) != threading.get_ident()
