"""Training with the pretrained speech encoder and the voice head: what is loaded, frozen, trained and scored."""

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from ser_model import SERFeatureExtractor, SERForAudioClassification
from ser_model.configuration import VOICE_LABELS
from ser_model.data.corpora import LABELS, Record
from ser_model.data.train_data import ClipDataset, FeatureCollator, voice_label
from ser_model.errors import InputError
from ser_model.modeling import voice_loss
from ser_model.training.arguments import parse_arguments
from ser_model.training.speech_encoder import freeze_speech_encoder, is_speech_encoder_parameter
from ser_model.training.train import build_model
from ser_model.training.trainer import SERTrainer, ValidationMetrics
from ser_model.training.warm_start import load_warm_start

from .conftest import TINY, speechlike, tiny_config
from .test_whisper_branch import tiny_whisper_dir, whisper_config  # noqa: F401  (a fixture)


def test_clips_without_a_known_gender_give_the_voice_head_no_loss_and_no_gradient():
    logits = torch.randn(4, len(VOICE_LABELS), requires_grad=True)
    loss = voice_loss(logits, torch.tensor([0, -100, 1, -100]))
    loss.backward()
    assert torch.all(logits.grad[[1, 3]] == 0) and torch.any(logits.grad[[0, 2]] != 0)
    unknown = torch.randn(2, len(VOICE_LABELS), requires_grad=True)
    assert voice_loss(unknown, torch.tensor([-100, -100])).item() == 0.0  # zero, not NaN


def test_the_collator_gives_voice_labels_from_the_speakers_gender_and_none_for_unknown():
    assert [voice_label(g) for g in ("female", "male", None)] == [0, 1, -100]
    config = tiny_config(voice_head=True)
    records = [Record(path=str(i), corpus="c", speaker=f"c:{i}", label="angry", gender=g, utterance="u")
               for i, g in enumerate(("male", None))]
    dataset = ClipDataset([speechlike(0.5, seed=i) for i in range(2)], records)
    batch = FeatureCollator(SERFeatureExtractor.from_config(config), config.label2id, voice=True)(list(dataset))
    assert batch["voice_labels"].tolist() == [1, -100]
    plain = FeatureCollator(SERFeatureExtractor.from_config(config), config.label2id)(list(dataset))
    assert "voice_labels" not in plain


def test_the_voice_head_is_a_config_flag_and_the_emotion_logits_do_not_need_it():
    inputs = SERFeatureExtractor.from_config(tiny_config())(speechlike(0.6), sampling_rate=16_000,
                                                            return_tensors="pt")
    assert SERForAudioClassification(tiny_config()).eval()(**inputs).voice_logits is None
    output = SERForAudioClassification(tiny_config(voice_head=True)).eval()(**inputs)
    assert output.voice_logits.shape == (1, len(VOICE_LABELS)) and output.logits.shape == (1, 7)


def test_a_model_with_more_branches_takes_the_shared_branches_whole_and_starts_the_rest_afresh(tmp_path):
    torch.manual_seed(0)
    trained = SERForAudioClassification(tiny_config())
    trained.save_pretrained(tmp_path)
    model = load_warm_start(tmp_path, whisper_config(voice_head=True))
    saved = trained.state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith(("ser.mel_encoder.", "ser.mfcc_encoder.")):
            assert torch.equal(tensor, saved[name]), name
    # The fusion head's input grew with the new branch, so none of the old head is taken.
    assert model.head.dense.weight.shape != trained.head.dense.weight.shape
    assert not torch.equal(model.head.classifier.weight, trained.head.classifier.weight)


def test_the_encoder_is_frozen_but_for_its_top_layers_and_the_layer_weights_always_train():
    model = SERForAudioClassification(whisper_config(speech_encoder_pooling="weighted"))
    encoder = model.ser.whisper_encoder.encoder
    freeze_speech_encoder(model, 0)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert model.ser.whisper_encoder.layer_weights.requires_grad and model.head.dense.weight.requires_grad
    freeze_speech_encoder(model, 1)
    top = {id(p) for p in encoder.layers[-1].parameters()} | {id(p) for p in encoder.layer_norm.parameters()}
    assert all(p.requires_grad == (id(p) in top) for p in encoder.parameters())
    freeze_speech_encoder(model, -1)
    assert all(p.requires_grad for p in encoder.parameters())


def test_the_trained_encoder_layers_get_their_own_learning_rate(tmp_path):
    model = SERForAudioClassification(whisper_config())
    freeze_speech_encoder(model, 1)
    _, _, args = parse_arguments({"output_dir": str(tmp_path), "learning_rate": 1e-3,
                                  "speech_encoder_learning_rate": 1e-5, "use_cpu": True,
                                  "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False})
    trainer = SERTrainer(model=model, args=args, class_weights=torch.ones(7))
    optimizer = trainer.create_optimizer()
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert rate[id(parameter)] == (1e-5 if is_speech_encoder_parameter(name) else 1e-3), name
    assert not any(id(p) in rate for p in model.parameters() if not p.requires_grad)


def test_build_model_loads_the_named_encoder_into_a_warm_started_model(tmp_path, tiny_whisper_dir):
    from transformers import WhisperModel

    SERForAudioClassification(tiny_config()).save_pretrained(tmp_path / "init")
    model_args, _, args = parse_arguments({"output_dir": str(tmp_path), "init_model": str(tmp_path / "init"),
                                           "speech_encoder": str(tiny_whisper_dir),
                                           "model_overrides": TINY})
    model = build_model(model_args, args)
    expected = WhisperModel.from_pretrained(tiny_whisper_dir).encoder.state_dict()
    for name, tensor in model.ser.whisper_encoder.encoder.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert not any(p.requires_grad for p in model.ser.whisper_encoder.encoder.parameters())


def test_an_unreachable_speech_encoder_is_one_sentence(tmp_path):
    model_args, _, _ = parse_arguments({"output_dir": str(tmp_path), "speech_encoder": str(tmp_path / "absent")})
    with pytest.raises(InputError, match="--speech_encoder"):
        model_args.model_config()


def test_validation_scores_the_voice_on_the_clips_whose_gender_is_known():
    records = [Record(path=str(i), corpus="c", speaker=f"c:{i}", label=LABELS[0], gender=None, utterance="u")
               for i in range(4)]
    metrics = ValidationMetrics(records, {"c": "speaker"}, 7)
    emotion = np.eye(7)[[0, 0, 0, 0]]
    voice = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    scores = metrics(EvalPrediction(predictions=(emotion, voice),
                                    label_ids=(np.zeros(4, dtype=int), np.array([0, 0, -100, 1]))))
    assert scores["voice_accuracy"] == pytest.approx(2 / 3)
    assert "voice_accuracy" not in metrics(EvalPrediction(predictions=emotion, label_ids=np.zeros(4, dtype=int)))


def frozen_branch_setup(tmp_path, tiny_whisper_dir, **arguments):
    SERForAudioClassification(tiny_config()).save_pretrained(tmp_path / "init")
    model_args, _, args = parse_arguments({"output_dir": str(tmp_path / "out"), "init_model": str(tmp_path / "init"),
                                           "speech_encoder": str(tiny_whisper_dir), "model_overrides": TINY,
                                           "use_cpu": True, "eval_strategy": "no", "save_strategy": "no",
                                           "load_best_model_at_end": False, **arguments})
    return build_model(model_args, args), args


def test_frozen_branches_keep_their_weights_and_batchnorm_statistics_through_a_training_step(tmp_path,
                                                                                              tiny_whisper_dir):
    model, args = frozen_branch_setup(tmp_path, tiny_whisper_dir, freeze_branches=["mel", "mfcc"])
    trainer = SERTrainer(model=model, args=args, class_weights=torch.ones(7))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    inputs = dict(SERFeatureExtractor.from_config(model.config)(
        [speechlike(0.8, seed=1), speechlike(1.0, seed=2)], sampling_rate=16_000, return_tensors="pt"))
    model.train()
    trainer.compute_loss(model, {**inputs, "labels": torch.tensor([0, 3]), "voice_labels": torch.tensor([0, 1])}).backward()
    frozen = ("ser.mel_encoder.", "ser.mfcc_encoder.")
    for name, parameter in model.named_parameters():
        assert (parameter.grad is None) == name.startswith(frozen + ("ser.whisper_encoder.encoder.",)), name
    changed = {name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert not {name for name in changed if name.startswith(frozen)}
    # The Whisper branch's own BatchNorm is not frozen: its statistics moved in the same step.
    assert "ser.whisper_encoder.norm.running_mean" in changed


def test_freezing_a_branch_needs_an_init_model_that_has_it(tmp_path, tiny_whisper_dir):
    model_args, _, args = parse_arguments({"output_dir": str(tmp_path), "branches": ["mel", "mfcc"],
                                           "freeze_branches": ["mel"], "model_overrides": TINY})
    with pytest.raises(InputError, match="needs --init_model"):
        build_model(model_args, args)
    SERForAudioClassification(tiny_config(branches=["mel"])).save_pretrained(tmp_path / "mel-only")
    model_args, _, args = parse_arguments({"output_dir": str(tmp_path), "branches": ["mel", "mfcc"],
                                           "init_model": str(tmp_path / "mel-only"), "freeze_branches": ["mfcc"],
                                           "model_overrides": TINY})
    with pytest.raises(InputError, match="the mfcc branch is not in both"):
        build_model(model_args, args)
    with pytest.raises(InputError, match="freeze_branches must name branches"):
        parse_arguments({"output_dir": str(tmp_path), "freeze_branches": ["wav2vec2"]})
