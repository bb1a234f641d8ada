import copy

import pytest
import torch

from ser_model import SERFeatureExtractor

from ser_model import SERForAudioClassification
from ser_model.configuration import densenet_downsampling

from .conftest import speechlike, tiny_config


def features_for(config, *seconds, return_tensors="pt", seeds=None):
    extractor = SERFeatureExtractor.from_config(config)
    clips = [speechlike(s, seed=seed) for s, seed in zip(seconds, seeds or range(len(seconds)))]
    # The model's tests, not the refusals': a 50 ms clip is too short to show speech's syllables.
    return extractor(clips, sampling_rate=config.sampling_rate, return_tensors=return_tensors, check_audio=False)


def test_logits_shape_and_loss_only_with_labels(config):
    model = SERForAudioClassification(config).eval()
    inputs = features_for(config, 0.8, 0.5)
    output = model(**inputs)
    assert output.logits.shape == (2, config.num_labels)
    assert output.loss is None
    labelled = model(**inputs, labels=torch.tensor([0, 6]))
    assert labelled.loss is not None and labelled.loss.ndim == 0


@pytest.mark.parametrize("branches", [["mel", "mfcc"], ["mel"], ["mfcc"]])
def test_every_parameter_gets_a_finite_gradient(branches):
    config = tiny_config(branches=branches)
    model = SERForAudioClassification(config).train()
    model(**features_for(config, 0.8, 0.5), labels=torch.tensor([1, 2])).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"


def test_embedding_size_formula_matches_the_model(config):
    model = SERForAudioClassification(config).eval()
    embedding = model.ser(**features_for(config, 0.6)).pooler_output
    assert embedding.shape == (1, model.ser.embedding_size)


@pytest.mark.parametrize("preset", [dict(growth_rate=4, block_config=[1, 1]), dict(growth_rate=8, block_config=[2, 3, 2])])
def test_the_mel_branch_is_timms_densenet_on_unpadded_clips_and_counts_its_frames(preset):
    config = tiny_config(n_mels=64, n_mfcc=8, **preset)
    encoder = SERForAudioClassification(config).ser.mel_encoder.eval()
    # The config's validation cannot build the network, so it computes the stride; timm's must agree.
    assert densenet_downsampling(config.block_config) == encoder.reduction
    for frames in (16, 17, 33, 101, 401):
        image = torch.randn(1, 1, 64, frames)
        with torch.no_grad():
            hidden, lengths = encoder.features(image, torch.tensor([frames]))
            # The shipped weights keep their outputs: on a clip alone the branch computes what timm's forward does.
            assert torch.equal(hidden, encoder.densenet.forward_features(image))
        assert lengths.tolist() == [hidden.shape[-1]]


@pytest.mark.parametrize("block_config", [[1, 1], [1, 1, 1]])
def test_a_clip_in_a_padded_batch_gets_its_embedding_alone(block_config):
    # Padded frames are zero before every convolution and pooling, so in inference a clip padded to more than
    # twice its length in a batch gets its embedding alone, up to rounding; pooling over the padding too is
    # far off. 0.08 s is 11 frames, fewer than the 16 that three blocks shrink by: padded to 16 alone.
    config = tiny_config(block_config=block_config, min_audio_seconds=0.05)
    torch.manual_seed(0)
    model = SERForAudioClassification(config).eval()
    batch = features_for(config, 1.0, 0.45, 0.08)
    unmasked = {**batch, "attention_mask": torch.ones_like(batch["attention_mask"])}
    with torch.no_grad():
        embeddings = model.ser(**batch).pooler_output
        for i, seconds in enumerate((0.45, 0.08), start=1):
            alone = model.ser(**features_for(config, seconds, seeds=[i])).pooler_output[0]
            torch.testing.assert_close(embeddings[i], alone, atol=1e-5, rtol=1e-5)
        unmasked_error = (model.ser(**unmasked).pooler_output[1] - embeddings[1]).abs().mean()
    assert unmasked_error > 0.03 * embeddings[1].abs().mean()


def padded_further(batch, frames: int) -> dict:
    """`batch` with `frames` more padded frames: zeros, masked out."""
    return {name: torch.nn.functional.pad(value, (0, frames)) for name, value in batch.items()}


@pytest.mark.parametrize("seconds", [(0.7, 0.7, 0.7), (1.0, 0.45, 0.7)])
@pytest.mark.parametrize("branches", [["mel"], ["mfcc"]])
def test_in_training_more_padding_changes_neither_the_embeddings_nor_the_batch_statistics(branches, seconds):
    # The BatchNorms' batch statistics are those of the real frames alone, so more padding changes neither the
    # embeddings nor the running statistics. Clips of one length have no padding at first: there the reference
    # is torch's own BatchNorm over the whole batch.
    config = tiny_config(branches=branches)
    torch.manual_seed(0)
    model = SERForAudioClassification(config).train()
    further = copy.deepcopy(model)
    batch = features_for(config, *seconds)
    torch.testing.assert_close(further.ser(**padded_further(batch, 37)).pooler_output, model.ser(**batch).pooler_output,
                               atol=1e-5, rtol=1e-5)
    buffers = dict(further.named_buffers())
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffers[name], buffer, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("branches", [["mel"], ["mfcc"]])
def test_padded_frames_get_no_gradient(branches):
    config = tiny_config(branches=branches)
    model = SERForAudioClassification(config).train()
    batch = features_for(config, 0.9, 0.45)
    name = "input_values" if branches == ["mel"] else "input_mfcc"
    features = batch[name].requires_grad_()
    model(**batch, labels=torch.tensor([1, 2])).loss.backward()
    real = batch["attention_mask"][1].bool()
    assert not real.all()
    assert torch.count_nonzero(features.grad[1][:, ~real]) == 0
    assert torch.count_nonzero(features.grad[1][:, real]) > 0


def test_clips_shorter_than_the_downsampling_still_classify():
    # 0.05 s is 5 frames, fewer than the DenseNet shrinks each axis by (16 here): the pooled map must still
    # hold the clip, not NaN from an empty mean nor the bias alone, so two different clips differ.
    config = tiny_config(n_mels=64, block_config=[1, 1, 1, 1], min_audio_seconds=0.05, branches=["mel"])
    torch.manual_seed(0)
    model = SERForAudioClassification(config).eval()
    inputs = features_for(config, 0.05, 0.05)
    with torch.no_grad():
        logits = model(**inputs).logits
        embeddings = model.ser(**inputs).pooler_output
    assert logits.shape == (2, config.num_labels) and torch.isfinite(logits).all()
    assert (embeddings[0] - embeddings[1]).abs().mean() > 1e-3 * embeddings.abs().mean()


def test_save_and_load_round_trip(config, tmp_path):
    model = SERForAudioClassification(config).eval()
    model.save_pretrained(tmp_path)
    loaded = SERForAudioClassification.from_pretrained(tmp_path).eval()
    inputs = features_for(config, 0.7)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, loaded(**inputs).logits, atol=1e-5, rtol=1e-5)


def test_forward_follows_the_transformers_conventions(config):
    from ser_model.modeling import classification_loss

    torch.manual_seed(0)
    model = SERForAudioClassification(config).eval()
    batch = SERFeatureExtractor.from_config(config)([speechlike(0.6), speechlike(0.4, seed=1)], sampling_rate=16_000,
                                                    return_tensors="pt")
    labels = torch.tensor([2, 5])
    with torch.no_grad():
        output = model(**batch, labels=labels, output_hidden_states=True)
        as_tuple = model(**batch, labels=labels, output_hidden_states=True, return_dict=False)
        plain = model(**batch)
    mel, mfcc, fused = output.hidden_states
    assert mel.shape == (2, model.ser.mel_encoder.output_size) and mfcc.shape == (2, 2 * config.mfcc_channels[-1])
    assert model.ser.mel_encoder.output_size == 2 * model.ser.mel_encoder.densenet.num_features
    assert fused.shape == (2, config.fusion_hidden_size)
    assert output.loss.item() == pytest.approx(torch.nn.functional.cross_entropy(output.logits, labels).item())
    assert output.loss.item() == pytest.approx(classification_loss(output.logits, labels).item())
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[1], output.logits) and torch.equal(as_tuple[0], output.loss)
    assert plain.loss is None and plain.hidden_states is None
    # The fused embedding is what the classifier reads: the logits follow from it alone.
    assert torch.allclose(model.head.classifier(fused) / config.calibration_temperature, output.logits, atol=1e-6)


def test_a_misspelt_argument_is_refused_not_ignored(config):
    # A forward that swallowed **kwargs gave no loss for `label=` and no error.
    model = SERForAudioClassification(config).eval()
    inputs = features_for(config, 0.5)
    with pytest.raises(TypeError, match="label"):
        model(**inputs, label=torch.tensor([0]))
    with pytest.raises(TypeError, match="input_mfccs"):
        model.ser(input_values=inputs["input_values"], input_mfccs=inputs["input_mfcc"])


def test_trainer_scales_the_loss_itself(config, tmp_path):
    # The model's loss is a batch mean: Trainer must not hand it `num_items_in_batch` and must divide
    # the loss by the gradient accumulation steps itself.
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = Trainer(model=SERForAudioClassification(config), args=args)
    assert trainer.model_accepts_loss_kwargs is False


def test_return_dict_false_gives_a_tuple_from_the_config_too(config):
    model = SERForAudioClassification(config).eval()
    inputs = features_for(config, 0.5)
    with torch.no_grad():
        expected = model(**inputs).logits
        model.config.return_dict = False
        (logits,) = model(**inputs)
    assert torch.equal(logits, expected)


def test_the_temperature_divides_the_logits_in_inference_only():
    # Fine-tuning a calibrated model must learn from the logits its training produced, not rescaled ones.
    config = tiny_config(calibration_temperature=2.0)
    model = SERForAudioClassification(config)
    inputs = features_for(config, 0.6, 0.8)
    model.eval()
    with torch.no_grad():
        calibrated = model(**inputs).logits
        model.train()
        model.apply(lambda m: m.eval() if isinstance(m, torch.nn.Dropout) else None)  # same numbers, train mode
        model.ser.mel_encoder.eval()
        model.ser.mfcc_encoder.eval()
        raw = model(**inputs).logits
    torch.testing.assert_close(raw / 2.0, calibrated)
