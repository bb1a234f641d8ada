"""The Whisper branch on a tiny random Whisper config: padding changes nothing, padded frames get no
gradient, every parameter learns (the layer weights too), each pooling gives its size, the model saves
and loads as one folder, a pretrained checkpoint's encoder is copied exactly, and the feature extractor
gives transformers' own Whisper log-mel."""

import copy
import json

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperModel

from ser_model import SERFeatureExtractor, SERForAudioClassification
from ser_model.errors import InputError
from ser_model.feature_extractor import REFERENCE_RMS
from ser_model.training.speech_encoder import load_speech_encoder, speech_encoder_config

from .conftest import REPO, speechlike, tiny_config

TINY_WHISPER = dict(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
                    decoder_attention_heads=2, decoder_ffn_dim=32, max_target_positions=16)


def whisper_config(branches=("mel", "mfcc", "whisper"), **overrides):
    return tiny_config(branches=list(branches), speech_encoder=WhisperConfig(**TINY_WHISPER), **overrides)


def whisper_features(config, *seconds, **kwargs):
    """Features of clips of these lengths; a clip's content depends on its length only."""
    clips = [speechlike(s, seed=round(100 * s)) for s in seconds]
    return SERFeatureExtractor.from_config(config)(clips, sampling_rate=16_000, return_tensors="pt", **kwargs)


@pytest.fixture
def tiny_whisper_dir(tmp_path):
    """A random Whisper checkpoint in a folder, as WhisperModel saves it (keys `encoder.*`)."""
    torch.manual_seed(1)
    folder = tmp_path / "whisper"
    WhisperModel(WhisperConfig(**TINY_WHISPER)).save_pretrained(folder)
    return folder


def whisper_embedding(model, inputs):
    return model.ser(**inputs, output_hidden_states=True).hidden_states[-1]


@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_the_branch_output_does_not_change_with_padding(padding):
    torch.manual_seed(0)
    config = whisper_config()
    model = SERForAudioClassification(config).eval()
    for seconds in (0.45, 0.52):  # an odd and an even number of frames
        alone = whisper_features(config, seconds)
        batch = whisper_features(config, 0.9, seconds, padding=padding)
        assert batch["input_features"].shape[-1] > alone["input_features"].shape[-1]
        with torch.no_grad():
            torch.testing.assert_close(whisper_embedding(model, batch)[1], whisper_embedding(model, alone)[0],
                                       atol=1e-5, rtol=1e-5)


def test_in_training_padding_changes_no_branch():
    # Every branch in training mode, the same clips padded to the longest or to the whole window. (The Whisper
    # branch standardises its pooled features over a batch of two: rounding errors grow to about 2e-5.)
    torch.manual_seed(0)
    config = whisper_config()
    model = SERForAudioClassification(config).train()
    further = copy.deepcopy(model)
    longest, window = whisper_features(config, 0.9, 0.45), whisper_features(config, 0.9, 0.45, padding="max_length")
    assert window["input_values"].shape[-1] > longest["input_values"].shape[-1]
    torch.testing.assert_close(further.ser(**window).pooler_output, model.ser(**longest).pooler_output,
                               atol=1e-4, rtol=1e-4)


def test_padded_frames_get_no_gradient():
    torch.manual_seed(0)
    config = whisper_config(branches=["whisper"])
    model = SERForAudioClassification(config).train()
    batch = whisper_features(config, 0.9, 0.45)
    features = batch["input_features"].requires_grad_()
    model(input_features=features, whisper_attention_mask=batch["whisper_attention_mask"],
          labels=torch.tensor([1, 2])).loss.backward()
    real = batch["whisper_attention_mask"][1].bool()
    assert not real.all()
    assert torch.count_nonzero(features.grad[1][:, ~real]) == 0
    assert torch.count_nonzero(features.grad[1][:, real]) > 0


@pytest.mark.parametrize("pooling", ["concat", "weighted"])
def test_every_parameter_learns(pooling):
    torch.manual_seed(0)
    config = whisper_config(speech_encoder_pooling=pooling)
    model = SERForAudioClassification(config).train()
    batch = whisper_features(config, 0.8, 0.5)
    if pooling == "weighted":  # embeddings and each layer
        assert model.ser.whisper_encoder.layer_weights.shape == (config.speech_encoder.encoder_layers + 1,)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(3):
        optimizer.zero_grad()
        model(**batch, labels=torch.tensor([1, 2])).loss.backward()
        if step == 0:
            for name, parameter in model.named_parameters():
                if parameter.requires_grad:
                    assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        optimizer.step()
    for name, parameter in model.named_parameters():
        # The voice head gets no loss without voice labels; Whisper keeps its sinusoidal positions fixed.
        if parameter.requires_grad and not name.startswith("voice_head."):
            assert (parameter.detach() - start[name]).abs().max() > 0, name
    if pooling == "weighted":
        assert (model.ser.whisper_encoder.layer_weights.detach() - start["ser.whisper_encoder.layer_weights"]).abs(
        ).max() > 0.01


def test_the_weighted_pooling_learns_one_weight_per_selected_hidden_state():
    config = whisper_config(speech_encoder_pooling="weighted", speech_encoder_hidden_states=[0, 1])
    model = SERForAudioClassification(config).eval()
    inputs = whisper_features(config, 0.5)
    assert model.ser.whisper_encoder.layer_weights.shape == (2,)
    assert model.ser.whisper_encoder.output_size == 2 * config.speech_encoder.d_model
    with torch.no_grad():
        states, mask = model.ser.whisper_encoder.hidden_states(inputs["input_features"],
                                                               inputs["whisper_attention_mask"])
    assert len(states) == 2 and states[0].shape[:2] == mask.shape


def test_the_concat_pooling_is_each_hidden_states_mean_and_std_in_order():
    config = whisper_config(speech_encoder_hidden_states=[0, 2])
    model = SERForAudioClassification(config).eval()
    branch = model.ser.whisper_encoder
    assert not hasattr(branch, "layer_weights")
    assert branch.output_size == 2 * 2 * config.speech_encoder.d_model
    inputs = whisper_features(config, 0.9, 0.5)
    with torch.no_grad():
        states, mask = branch.hidden_states(inputs["input_features"], inputs["whisper_attention_mask"])
        embedding = whisper_embedding(model, inputs)
    size = config.speech_encoder.d_model
    for i, state in enumerate(states):
        for clip in range(2):
            real = state[clip][mask[clip].bool()]
            # A fresh BatchNorm without affine divides by sqrt(1 + eps) only.
            pooled = torch.cat([real.mean(0), (real.var(0, unbiased=False) + 1e-5).sqrt()])
            expected = pooled / (1 + branch.norm.eps) ** 0.5
            torch.testing.assert_close(embedding[clip, 2 * size * i:2 * size * (i + 1)], expected,
                                       atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip_in_one_folder(tmp_path):
    torch.manual_seed(0)
    config = whisper_config()
    model = SERForAudioClassification(config).eval()
    model.save_pretrained(tmp_path)
    SERFeatureExtractor.from_config(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["speech_encoder"]["d_model"] == 16 and saved["branches"] == ["mel", "mfcc", "whisper"]
    loaded = SERForAudioClassification.from_pretrained(tmp_path).eval()
    inputs = SERFeatureExtractor.from_pretrained(tmp_path)(speechlike(0.7), sampling_rate=16_000,
                                                           return_tensors="pt")
    assert {"input_features", "whisper_attention_mask"} <= set(inputs)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, loaded(**inputs).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("saved_as", [WhisperModel, WhisperForConditionalGeneration])
def test_loading_a_checkpoint_copies_its_encoder_exactly(saved_as, tmp_path):
    # WhisperModel saves `encoder.*`, WhisperForConditionalGeneration the Hub's `model.encoder.*`.
    torch.manual_seed(1)
    folder = tmp_path / "whisper"
    saved_as(WhisperConfig(**TINY_WHISPER)).save_pretrained(folder)
    reference = WhisperModel.from_pretrained(folder, dtype=torch.float32).encoder.state_dict()
    config = tiny_config(branches=["mel", "whisper"], speech_encoder=speech_encoder_config(str(folder)))
    model = SERForAudioClassification(config)
    assert load_speech_encoder(model, str(folder)) == len(reference)
    own = model.ser.whisper_encoder.encoder.state_dict()
    assert own.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(own[key], value), key
    assert config.speech_encoder.name_or_path == ""  # no local path in the saved config


def test_a_checkpoint_of_other_sizes_is_refused(tiny_whisper_dir):
    other = WhisperConfig(**{**TINY_WHISPER, "d_model": 8})
    model = SERForAudioClassification(tiny_config(branches=["whisper"], speech_encoder=other))
    with pytest.raises(InputError, match="does not fit"):
        load_speech_encoder(model, str(tiny_whisper_dir))


def test_a_folder_without_a_checkpoint_is_one_sentence(tmp_path):
    with pytest.raises(InputError, match="--speech_encoder"):
        speech_encoder_config(str(tmp_path))


@pytest.mark.parametrize("export", ["model-mel-mfcc", "model-ravdess-tess"])
def test_a_model_without_the_branch_still_loads_and_gets_todays_features(export):
    folder = REPO / export
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{export}/ is absent")
    model, info = SERForAudioClassification.from_pretrained(folder, output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.ser.whisper_encoder is None
    features = SERFeatureExtractor.from_pretrained(folder)(speechlike(1.0), sampling_rate=16_000,
                                                          return_tensors="pt")
    assert set(features) == {"input_values", "input_mfcc", "attention_mask"}
    with torch.no_grad():
        assert torch.isfinite(model.eval()(**features).logits).all()


@pytest.mark.parametrize("seconds", [0.45, 1.0, 3.0])
def test_whisper_features_are_transformers_own_on_the_window(seconds):
    # What is compared: WhisperFeatureExtractor on the same window of audio, (a) with its padding to
    # 30 s turned off (padding="longest" on one clip): every frame equal; (b) as Whisper calls it,
    # padded to 30 s: equal on every real frame but the last, whose STFT window reaches into the
    # padding (zeros there, the reflected clip here).
    config = whisper_config(window_seconds=2.0)
    clip = speechlike(seconds, seed=3)
    ours = SERFeatureExtractor.from_config(config)([clip, speechlike(2.5, seed=4)], sampling_rate=16_000)
    window = clip[: round(2.0 * 16_000)]
    rms = np.sqrt(np.mean(np.square(window, dtype=np.float64)))
    window = (window * (REFERENCE_RMS / rms)).astype(np.float32)  # the level every branch gets
    whisper = WhisperFeatureExtractor(feature_size=config.speech_encoder.num_mel_bins)
    unpadded = whisper(window, sampling_rate=16_000, padding="longest", return_tensors="np")["input_features"][0]
    padded = whisper(window, sampling_rate=16_000, return_tensors="np")["input_features"][0]
    frames = int(ours["whisper_attention_mask"][0].sum())
    assert frames == unpadded.shape[1] == len(window) // 160
    np.testing.assert_allclose(ours["input_features"][0][:, :frames], unpadded, atol=1e-6)
    np.testing.assert_allclose(ours["input_features"][0][:, : frames - 1], padded[:, : frames - 1], atol=1e-6)


def test_every_branch_sees_the_same_input_at_any_recording_level():
    # A phone on a table records 30 to 40 dB lower: the level is normalised in front of every branch,
    # Whisper's included, whose log-mel is otherwise absolute.
    extractor = SERFeatureExtractor.from_config(whisper_config(window_seconds=2.0))
    clip = speechlike(1.5, seed=5)
    full, quiet = (extractor(c, sampling_rate=16_000) for c in (clip, clip * 10 ** (-40 / 20)))
    for name in ("input_values", "input_mfcc", "input_features"):
        np.testing.assert_allclose(quiet[name], full[name], atol=1e-4, err_msg=name)
    # Without the normalisation (models exported before it), Whisper's input moves with the level.
    raw = SERFeatureExtractor.from_config(whisper_config(window_seconds=2.0))
    raw.normalize_level = False
    assert np.abs(raw(clip, sampling_rate=16_000)["input_features"]
                  - raw(clip * 0.01, sampling_rate=16_000)["input_features"]).max() > 0.5


def test_the_feature_extractor_saves_the_whisper_setting(tmp_path):
    extractor = SERFeatureExtractor.from_config(whisper_config())
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["whisper_num_mel_bins"] == 80 and not any(key.startswith("_") for key in saved)
    assert SERFeatureExtractor.from_pretrained(tmp_path).whisper_num_mel_bins == 80


def test_a_missing_whisper_input_is_named():
    model = SERForAudioClassification(whisper_config()).eval()
    inputs = whisper_features(whisper_config(), 0.5)
    del inputs["input_features"]
    with pytest.raises(ValueError, match="input_features"):
        model(**inputs)


def test_more_than_the_encoder_positions_is_refused():
    config = whisper_config(branches=["whisper"], window_seconds=1.0)
    model = SERForAudioClassification(config).eval()
    long = SERFeatureExtractor.from_config(config)(speechlike(31.0), sampling_rate=16_000, truncation=False,
                                                  return_tensors="pt")
    with pytest.raises(ValueError, match="1500 positions"):
        model(**long)


def test_a_folder_of_another_model_is_refused():
    with pytest.raises(InputError, match="model_type 'ser_fusion'"):
        speech_encoder_config(str(REPO / "model"))


@pytest.mark.slow  # a fresh Python process importing torch and transformers
def test_a_saved_whisper_model_loads_through_auto_classes_and_pipeline_offline(tmp_path):
    from ser_model.hub.publish import check_loads

    config = whisper_config()
    SERForAudioClassification(config).eval().save_pretrained(tmp_path)
    SERFeatureExtractor.from_config(config).save_pretrained(tmp_path)
    result = check_loads(tmp_path)
    assert not result.model_module.startswith("ser_model")
    # The pipeline and the direct call agree, so the pipeline hands the remote code the Whisper features too.
    direct = np.exp(result.logits) / np.exp(result.logits).sum()
    np.testing.assert_allclose([result.scores[label] for label in result.labels], direct, atol=1e-5)


@pytest.mark.parametrize("scale", [1e-2, 1e20])
def test_quiet_and_absurdly_loud_clips_give_finite_logits(scale):
    # Silence itself is refused by the feature extractor (tests/test_feature_extractor.py).
    config = whisper_config()
    model = SERForAudioClassification(config).eval()
    clip = speechlike(0.6) * np.float32(scale)
    inputs = SERFeatureExtractor.from_config(config)(clip, sampling_rate=16_000, return_tensors="pt")
    assert torch.isfinite(inputs["input_features"]).all()
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_a_batch_of_one_trains_on_the_running_statistics_without_moving_them():
    model = SERForAudioClassification(whisper_config()).train()
    norm = model.ser.whisper_encoder.norm
    before = norm.running_mean.clone()
    output = model(**whisper_features(whisper_config(), 0.5), labels=torch.tensor([1]))
    output.loss.backward()  # a batch of one used to fail: BatchNorm has no batch statistics to use
    assert torch.equal(norm.running_mean, before) and torch.isfinite(output.loss)
    model(**whisper_features(whisper_config(), 0.5, 0.7))
    assert not torch.equal(norm.running_mean, before)  # a real batch still updates them


def test_weights_initialise_with_either_pooling():
    for pooling in ("concat", "weighted"):
        model = SERForAudioClassification(whisper_config(speech_encoder_pooling=pooling))
        encoder = model.ser.whisper_encoder
        assert hasattr(encoder, "layer_weights") == (pooling == "weighted")
        model._init_weights(encoder)  # read layer_weights even with concat pooling, which has none
        if pooling == "weighted":
            assert torch.equal(encoder.layer_weights, torch.zeros_like(encoder.layer_weights))
