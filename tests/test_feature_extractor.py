import json

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, pipeline

from ser_model import SERFeatureExtractor
from ser_model.audio_io import AudioError, silence_error, validate_waveform
from ser_model.configuration import FRONT_END_DEFAULTS, frame_levels_db, has_speech
from ser_model.feature_extractor import SAVED_KEYS

from .conftest import REPO, speechlike, tiny_config


@pytest.fixture
def extractor():
    return SERFeatureExtractor.from_config(tiny_config())


def test_shapes_follow_the_frame_formula(extractor):
    clip = speechlike(0.7)
    features = extractor(clip, sampling_rate=16_000)
    frames = extractor.num_frames(clip.size)
    assert features["input_values"].shape == (1, extractor.n_mels, frames)
    assert features["input_mfcc"].shape == (1, extractor.n_mfcc, frames)
    assert features["attention_mask"].shape == (1, frames)
    assert features["input_values"].dtype == np.float32


def test_list_and_numpy_give_the_same_features(extractor):
    clip = speechlike(0.5)
    from_numpy = extractor(clip, sampling_rate=16_000)
    from_list = extractor(clip.tolist(), sampling_rate=16_000)
    for name in from_numpy:
        np.testing.assert_allclose(from_numpy[name], from_list[name], atol=1e-6)


def test_batched_equals_unbatched_and_mask_marks_real_frames(extractor):
    long, short = speechlike(0.9, seed=1), speechlike(0.4, seed=2)
    batch = extractor([long, short], sampling_rate=16_000)
    alone = extractor(short, sampling_rate=16_000)
    frames = extractor.num_frames(short.size)
    np.testing.assert_allclose(batch["input_values"][1, :, :frames], alone["input_values"][0], atol=1e-5)
    np.testing.assert_allclose(batch["input_mfcc"][1, :, :frames], alone["input_mfcc"][0], atol=1e-5)
    assert batch["attention_mask"][1].sum() == frames
    assert batch["attention_mask"][0].all()
    assert not batch["input_values"][1, :, frames:].any()  # padding is padding_value


def test_two_dimensional_numpy_is_a_batch(extractor):
    clips = np.stack([speechlike(0.5, seed=1), speechlike(0.5, seed=2)])
    assert extractor(clips, sampling_rate=16_000)["input_values"].shape[0] == 2


def test_float64_and_tensors_are_accepted_and_cast(extractor):
    clip = speechlike(0.5)
    as_float64 = extractor(clip.astype(np.float64), sampling_rate=16_000)
    as_tensor = extractor(torch.from_numpy(clip), sampling_rate=16_000, return_tensors="pt")
    assert as_float64["input_values"].dtype == np.float32
    assert as_tensor["input_values"].dtype == torch.float32
    np.testing.assert_allclose(as_float64["input_values"], as_tensor["input_values"].numpy(), atol=1e-5)


def test_wrong_sampling_rate_raises_with_both_rates(extractor):
    with pytest.raises(ValueError, match=r"16000 Hz.*44100 Hz"):
        extractor(speechlike(0.5), sampling_rate=44_100)


def test_normalisation_removes_gain(extractor):
    # A scalar per-utterance normalisation: the same clip 20 dB quieter gives the same features,
    # up to the log floor's effect on the emptiest bins.
    clip = speechlike(0.5)
    loud = extractor(clip, sampling_rate=16_000)
    quiet = extractor(clip * 0.1, sampling_rate=16_000)
    np.testing.assert_allclose(loud["input_values"], quiet["input_values"], atol=1e-2)
    np.testing.assert_allclose(loud["input_mfcc"], quiet["input_mfcc"], atol=1e-2)


def test_truncation_and_max_length_padding(extractor):
    clip = speechlike(2.5)  # the tiny window is 1 s
    assert extractor(clip, sampling_rate=16_000)["input_values"].shape[-1] == extractor.num_frames(16_000)
    whole = extractor(clip, sampling_rate=16_000, truncation=False)
    assert whole["input_values"].shape[-1] == extractor.num_frames(clip.size)
    padded = extractor(speechlike(0.3), sampling_rate=16_000, padding="max_length")
    assert padded["input_values"].shape[-1] == extractor.num_frames(16_000)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros(10, np.float32), "too short"),
    (np.full(4000, np.nan, np.float32), "NaN"),
    (np.zeros((2, 2, 4000), np.float32), "mono"),
])
def test_bad_input_raises_one_clear_error(extractor, bad, message):
    with pytest.raises(ValueError, match=message):
        extractor(bad, sampling_rate=16_000)


def test_silent_and_too_short_audio_are_refused_with_the_apps_sentences(extractor):
    # The app and the CLI refuse these through ser_model.audio_io; a Hub model must say the same.
    short = speechlike(0.05)  # the tiny model's minimum is 0.1 s
    with pytest.raises(AudioError) as expected:
        validate_waveform(short, 16_000, extractor.min_audio_seconds)
    with pytest.raises(ValueError) as refused:
        extractor(short, sampling_rate=16_000)
    assert str(refused.value) == str(expected.value) == "The audio is too short: 0.050 s, while the minimum is 0.1 s."

    with pytest.raises(ValueError) as refused:
        extractor(np.zeros(32_000, np.float32), sampling_rate=16_000)
    assert str(refused.value) == str(silence_error()) == (
        "The audio is silent or a steady sound such as hum or noise, with no speech in it.")


def test_only_what_the_model_sees_must_be_loud_and_each_clip_of_a_batch_is_named(extractor):
    late_speech = np.concatenate([np.zeros(16_000, np.float32), speechlike(1.0)])  # the tiny window is 1 s
    with pytest.raises(ValueError, match="silent"):
        extractor(late_speech, sampling_rate=16_000)
    assert extractor(late_speech, sampling_rate=16_000, truncation=False)["input_values"].shape[0] == 1
    with pytest.raises(ValueError, match=r"^Clip 2 of 3 is silent"):
        extractor([speechlike(0.5), np.zeros(8000, np.float32), speechlike(0.5)], sampling_rate=16_000)


def test_training_turns_the_refusals_off_but_not_the_frame_minimum(extractor):
    quiet_and_short = [np.zeros(8000, np.float32), speechlike(0.05)]
    features = extractor(quiet_and_short, sampling_rate=16_000, check_audio=False)
    assert features["input_values"].shape[0] == 2 and np.isfinite(features["input_values"]).all()
    with pytest.raises(ValueError, match="at least"):
        extractor(np.zeros(10, np.float32), sampling_rate=16_000, check_audio=False)


def test_the_minimum_is_saved_and_older_configs_load_with_the_default(extractor, tmp_path):
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["min_audio_seconds"] == extractor.min_audio_seconds == tiny_config().min_audio_seconds
    del saved["min_audio_seconds"]  # as exported before the feature extractor knew it
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(saved))
    assert SERFeatureExtractor.from_pretrained(tmp_path).min_audio_seconds == FRONT_END_DEFAULTS["min_audio_seconds"]


def test_the_pipeline_refuses_silence_and_too_short_audio(tiny_model_dir):
    classifier = pipeline("audio-classification", model=str(tiny_model_dir), trust_remote_code=True)
    assert len(classifier({"raw": speechlike(0.5), "sampling_rate": 16_000}, top_k=None)) == 7
    with pytest.raises(ValueError, match=r"^The audio is silent or a steady sound such as hum or noise, with no"):
        classifier({"raw": np.zeros(32_000, np.float32), "sampling_rate": 16_000})
    with pytest.raises(ValueError, match=r"^The audio is too short: 0\.050 s, while the minimum is 0\.1 s\.$"):
        classifier({"raw": speechlike(0.05), "sampling_rate": 16_000})


def test_save_and_load_round_trip(extractor, tmp_path):
    extractor.save_pretrained(tmp_path)
    loaded = SERFeatureExtractor.from_pretrained(tmp_path)
    clip = speechlike(0.5)
    np.testing.assert_array_equal(extractor(clip, sampling_rate=16_000)["input_values"],
                                  loaded(clip, sampling_rate=16_000)["input_values"])


def test_a_misspelt_argument_is_refused_with_its_name():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'n_mel' \(did you mean 'n_mels'\?\)"):
        SERFeatureExtractor(n_mel=80)
    with pytest.raises(TypeError, match="positional"):
        SERFeatureExtractor(16_000)  # keyword-only: no argument is taken for another by its place


def test_a_saved_config_with_an_unknown_key_is_refused_and_an_inconsistent_one_too(extractor, tmp_path):
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**saved, "n_mel": 80}))
    with pytest.raises(TypeError, match="'n_mel'"):
        SERFeatureExtractor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**saved, "feature_size": extractor.n_mels + 1}))
    with pytest.raises(ValueError, match=f"feature_size must equal n_mels \\({extractor.n_mels}\\)"):
        SERFeatureExtractor.from_pretrained(tmp_path)


@pytest.mark.parametrize("folder", ["model", "model-mel-mfcc", "model-ravdess-tess"])
def test_every_model_folder_of_the_repository_loads_with_the_keys_transformers_saved(folder):
    path = REPO / folder
    if not (path / "preprocessor_config.json").is_file():
        pytest.skip(f"{folder}/ is absent")
    saved = json.loads((path / "preprocessor_config.json").read_text())
    assert {"feature_extractor_type", "feature_size", "padding_side", "auto_map"} <= set(saved)
    direct = SERFeatureExtractor.from_pretrained(path)
    auto = AutoFeatureExtractor.from_pretrained(path, trust_remote_code=True)
    assert type(auto).__name__ == "SERFeatureExtractor" and auto.to_dict() == direct.to_dict()
    assert {name: value for name, value in direct.to_dict().items() if name in saved} == saved  # nothing lost


def test_a_processors_saved_key_is_accepted(extractor, tmp_path):
    # A processor's save_pretrained adds processor_class; FeatureExtractionMixin drops it again.
    assert "processor_class" in SAVED_KEYS
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**saved, "processor_class": "SomeProcessor"}))
    assert SERFeatureExtractor.from_pretrained(tmp_path).to_dict() == extractor.to_dict()


def test_model_input_names_lists_every_input_returned_main_input_first(extractor):
    # pad() and the Trainer read model_input_names[0] as the main input, which every model has.
    assert extractor.model_input_names[0] == "input_values"
    assert set(extractor(speechlike(0.5), sampling_rate=16_000)) < set(extractor.model_input_names)
    with_whisper = SERFeatureExtractor.from_dict({**extractor.to_dict(), "whisper_num_mel_bins": 80})
    assert sorted(with_whisper(speechlike(0.5), sampling_rate=16_000)) == sorted(extractor.model_input_names)


def steady_sounds(seconds: float = 2.0, seed: int = 0) -> dict[str, np.ndarray]:
    """What a microphone gives with nobody speaking: digital silence, steady noise, mains hum."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 16_000)) / 16_000
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 3, 5))
    return {"zeros": np.zeros(t.size, np.float32),
            "white noise": (0.1 * rng.standard_normal(t.size)).astype(np.float32),
            "50 Hz hum": (0.3 * hum).astype(np.float32),
            "hum under noise": (0.3 * hum + 0.05 * rng.standard_normal(t.size)).astype(np.float32)}


@pytest.mark.parametrize("name", ["zeros", "white noise", "50 Hz hum", "hum under noise"])
def test_no_speech_is_refused_at_any_level(extractor, name):
    sound = steady_sounds()[name]
    for gain_db in (0, -40):
        assert not has_speech(sound * 10 ** (gain_db / 20), 16_000)
        with pytest.raises(ValueError, match=r"^The audio is silent or a steady sound"):
            extractor(sound * 10 ** (gain_db / 20), sampling_rate=16_000)


def test_quiet_speech_is_speech_and_gives_the_same_features(extractor):
    clip = speechlike(1.0)
    quiet = np.round(clip * 10 ** (-40 / 20) * 32767) / 32767  # 40 dB down, as a 16-bit file stores it
    assert has_speech(clip, 16_000) and has_speech(quiet, 16_000)
    full, low = extractor(clip, sampling_rate=16_000), extractor(quiet.astype(np.float32), sampling_rate=16_000)
    # Only the 16-bit rounding differs: about 35 dB under the speech, in the quietest bands.
    assert np.abs(full["input_values"] - low["input_values"]).mean() < 0.05


def test_frame_levels_read_a_full_scale_sine_as_minus_3_dbfs_and_ignore_what_lies_below_the_band():
    t = np.arange(16_000) / 16_000
    in_band, below_band = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 50 * t)
    np.testing.assert_allclose(frame_levels_db(in_band, 16_000), -3.01, atol=0.01)
    assert frame_levels_db(below_band, 16_000).max() < -40
    assert frame_levels_db(in_band[:100], 16_000).shape == (1,)  # shorter than a frame: one, zero-padded
