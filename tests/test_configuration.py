import json

import pytest

from ser_model import EMOTIONS, PRESETS, SERConfig, SERFeatureExtractor


def test_defaults_hold_seven_emotions_in_order():
    config = SERConfig()
    assert config.num_labels == 7
    assert [config.id2label[i] for i in range(7)] == list(EMOTIONS)
    assert config.label2id["surprise"] == 6


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_override(name):
    config = SERConfig.from_preset(name, fusion_dropout=0.1)
    assert config.block_config == PRESETS[name]["block_config"]
    assert config.fusion_dropout == 0.1


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


def test_feature_extractor_defaults_match_the_config():
    # Both saved configs must describe the same front end out of the box.
    from_config = SERFeatureExtractor.from_config(SERConfig()).to_dict()
    assert from_config == SERFeatureExtractor().to_dict()
