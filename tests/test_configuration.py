import json

import pytest

from ser_model import EMOTIONS

from ser_model import PRESETS

from ser_model import SERConfig

from ser_model import SERFeatureExtractor
from ser_model.configuration import FRONT_END_DEFAULTS

from .conftest import REPO


def test_defaults_hold_seven_emotions_in_order():
    config = SERConfig()
    assert config.num_labels == 7
    assert [config.id2label[i] for i in range(7)] == list(EMOTIONS)
    assert config.label2id["surprise"] == 6


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_its_sizes_and_survives_json(name, tmp_path):
    config = SERConfig.from_preset(name)
    assert {field: getattr(config, field) for field in PRESETS[name]} == PRESETS[name]
    # Lists, not tuples: a tuple would come back from config.json as a list and no longer compare equal.
    config.save_pretrained(tmp_path)
    assert SERConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()


def test_the_densenet121_preset_is_densenet_121_and_overrides_apply_to_one_config():
    # DenseNet-121 of Huang et al. (2017), Table 1: growth rate 32, dense blocks of 6, 12, 24 and 16 layers.
    config = SERConfig.from_preset("densenet121")
    assert (config.growth_rate, config.block_config) == (32, [6, 12, 24, 16])
    overridden = SERConfig.from_preset("densenet121", growth_rate=12, fusion_dropout=0.1)
    assert (overridden.growth_rate, overridden.block_config, overridden.fusion_dropout) == (12, [6, 12, 24, 16], 0.1)
    assert SERConfig.from_preset("densenet121").growth_rate == 32  # the preset itself is unchanged


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="preset"):
        SERConfig.from_preset("resnet")


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_mels", 0),
        ("n_mfcc", 128),  # more MFCCs than mel bands
        ("hop_length", -1),
        ("growth_rate", 2.5),
        ("block_config", []),
        ("mfcc_channels", [64, 0]),
        ("fusion_dropout", 1.0),
        ("f_max", 9000.0),  # above Nyquist of 16 kHz
        ("f_min", 9000.0),
        ("mfcc_kernel_size", 4),
        ("window_hop_seconds", 5.0),
        ("min_audio_seconds", 0.0),
        ("branches", ["mel", "pitch"]),
        ("branches", []),
    ],
)
def test_invalid_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SERConfig(**{field: value})


def test_too_many_blocks_for_the_input_is_refused():
    with pytest.raises(ValueError, match="block_config"):
        SERConfig(n_mels=16, n_mfcc=8, block_config=[2, 2, 2, 2])


def test_json_round_trip(tmp_path):
    config = SERConfig.from_preset("densenet121", branches=["mel"])
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["block_config"] == [6, 12, 24, 16] and saved["branches"] == ["mel"]
    loaded = SERConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


FRONT_END = tuple(FRONT_END_DEFAULTS)  # the one list of the fields the feature extractor takes


def test_the_default_front_end_is_25_ms_frames_every_10_ms_at_16_khz():
    # 400 and 160 samples at 16 kHz; 64 mel bands from 20 Hz to the Nyquist frequency, 40 MFCCs, 4 s windows,
    # nothing shorter than a quarter second.
    expected = (16_000, 400, 160, 64, 40, 20.0, 8_000.0, 4.0, 0.25)
    for extractor in (SERFeatureExtractor(), SERFeatureExtractor.from_config(SERConfig())):
        assert tuple(getattr(extractor, name) for name in FRONT_END) == expected


def test_the_feature_extractor_takes_every_front_end_field_of_the_config():
    values = (8_000, 200, 80, 32, 13, 50.0, 4_000.0, 2.0, 0.5)  # none of them a default
    config = SERConfig(**dict(zip(FRONT_END, values)), window_hop_seconds=1.0)
    extractor = SERFeatureExtractor.from_config(config)
    assert tuple(getattr(extractor, name) for name in FRONT_END) == values


@pytest.mark.parametrize("export", ["model-mel-mfcc", "model-ravdess-tess"])
def test_configs_saved_before_the_annotated_fields_load_and_save_unchanged(export, tmp_path):
    saved = json.loads((REPO / export / "config.json").read_text())
    config = SERConfig.from_pretrained(REPO / export)
    assert (config.block_config, config.calibration_temperature) == (saved["block_config"],
                                                                     saved["calibration_temperature"])
    config.save_pretrained(tmp_path)
    resaved = json.loads((tmp_path / "config.json").read_text())
    # The same keys and values, plus the fields added since, empty or off.
    assert resaved == {**saved, "speech_encoder": None, "speech_encoder_hidden_states": None,
                       "speech_encoder_pooling": "concat", "voice_head": False}
    assert config.speech_encoder is None and "whisper" not in config.branches


def test_fields_are_stored_as_json_gives_them_back():
    config = SERConfig(block_config=(2, 2), f_max=4000, branches=("mel",))
    assert config.block_config == [2, 2] and config.branches == ["mel"]
    assert isinstance(config.f_max, float)


def test_a_field_broken_after_construction_is_refused_when_saving(tmp_path):
    config = SERConfig()
    config.branches = ["pitch"]
    with pytest.raises(ValueError, match="branches"):
        config.save_pretrained(tmp_path)


def test_the_whisper_branch_needs_its_encoder_config_and_whisper_audio():
    from transformers import WhisperConfig

    encoder = WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2)
    with pytest.raises(ValueError, match="speech_encoder must be the WhisperConfig"):
        SERConfig(branches=["mel", "whisper"])
    with pytest.raises(ValueError, match="sampling_rate must be 16000"):
        SERConfig(branches=["whisper"], speech_encoder=encoder, sampling_rate=8_000, f_max=4_000.0)
    with pytest.raises(ValueError, match="window_seconds must be at most 30"):
        SERConfig(branches=["whisper"], speech_encoder=encoder, window_seconds=31.0)
    for states in ([], [0, 0], [3], [-1]):
        with pytest.raises(ValueError, match="speech_encoder_hidden_states"):
            SERConfig(branches=["whisper"], speech_encoder=encoder, speech_encoder_hidden_states=states)


def test_the_nested_encoder_config_round_trips_through_json(tmp_path):
    from transformers import WhisperConfig

    config = SERConfig(branches=["mel", "mfcc", "whisper"], speech_encoder_hidden_states=(0, 2),
                       speech_encoder=WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2).to_dict())
    assert isinstance(config.speech_encoder, WhisperConfig) and config.speech_encoder_hidden_states == [0, 2]
    config.save_pretrained(tmp_path)
    loaded = SERConfig.from_pretrained(tmp_path)
    assert isinstance(loaded.speech_encoder, WhisperConfig)
    assert loaded.to_dict() == config.to_dict()
