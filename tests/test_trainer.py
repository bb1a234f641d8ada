"""The training loss over each clip's label set, SpecAugment and the validation score."""

import numpy as np
import pytest
import torch

from ser_model.data.corpora import LABELS, Record
from ser_model.training.trainer import ValidationMetrics, label_set_cross_entropy, spec_augment

TUREV = torch.tensor([label in ("angry", "happy", "neutral", "sad") for label in LABELS])


def test_masking_leaves_the_classes_inside_the_set_as_a_softmax_over_them_alone():
    torch.manual_seed(0)
    logits = torch.randn(3, 7)
    labels = torch.tensor([LABELS.index("sad"), LABELS.index("angry"), LABELS.index("happy")])
    mask = TUREV.expand(3, 7)
    inside = logits[:, TUREV]
    expected = torch.nn.functional.cross_entropy(inside, torch.tensor([3, 0, 1]))  # positions within the set
    assert label_set_cross_entropy(logits, labels, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    # Whatever the classes outside the set say, the loss does not move.
    shifted = logits.clone()
    shifted[:, ~TUREV] += 100.0
    assert label_set_cross_entropy(shifted, labels, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_classes_outside_the_set_get_no_gradient_and_those_inside_do():
    logits = torch.randn(2, 7, requires_grad=True)
    labels = torch.tensor([LABELS.index("sad"), LABELS.index("neutral")])
    label_set_cross_entropy(logits, labels, TUREV.expand(2, 7), weight=torch.rand(7) + 0.5,
                            label_smoothing=0.2).backward()
    assert torch.all(logits.grad[:, ~TUREV] == 0)
    assert torch.all(logits.grad[:, TUREV] != 0)
    assert torch.isfinite(logits.grad).all()


def test_with_every_class_in_the_set_it_is_torchs_cross_entropy():
    torch.manual_seed(1)
    logits, labels, weight = torch.randn(5, 7), torch.tensor([0, 1, 4, 4, 6]), torch.rand(7) + 0.1
    ce = torch.nn.functional.cross_entropy
    assert label_set_cross_entropy(logits, labels, None, weight).item() == pytest.approx(
        ce(logits, labels, weight=weight).item(), rel=1e-5)
    assert label_set_cross_entropy(logits, labels, None, None, 0.1).item() == pytest.approx(
        ce(logits, labels, label_smoothing=0.1).item(), rel=1e-5)
    # With both, a clip's whole smoothed target is weighed by its class's weight (torch weighs each
    # smoothed class by its own weight instead): the weighted mean of per-clip smoothed losses.
    per_clip = ce(logits, labels, label_smoothing=0.1, reduction="none")
    expected = (per_clip * weight[labels]).sum() / weight[labels].sum()
    assert label_set_cross_entropy(logits, labels, None, weight, 0.1).item() == pytest.approx(expected.item(), rel=1e-5)


def test_smoothing_spreads_only_over_the_set():
    # Uniform logits inside a 4-class set: the loss is log 4 whatever the smoothing, which it would
    # not be if smoothing leaked mass onto the masked classes (their log-probability is -inf).
    logits = torch.zeros(1, 7)
    loss = label_set_cross_entropy(logits, torch.tensor([LABELS.index("angry")]), TUREV[None], label_smoothing=0.3)
    assert loss.item() == pytest.approx(np.log(4), rel=1e-6)


def test_spec_augment_zeroes_time_spans_in_both_inputs_and_bands_within_limits():
    batch = {"input_values": torch.ones(2, 16, 50), "input_mfcc": torch.ones(2, 8, 50),
             "attention_mask": torch.ones(2, 50, dtype=torch.long)}
    spec_augment(batch, time_masks=1, time_mask_frames=10, freq_masks=0, freq_mask_bands=0,
                 generator=torch.Generator().manual_seed(0))
    for i in range(2):
        silent_mel = (batch["input_values"][i] == 0).all(dim=0)
        silent_mfcc = (batch["input_mfcc"][i] == 0).all(dim=0)
        assert torch.equal(silent_mel, silent_mfcc)  # the same frames in both branches
        assert silent_mel.sum() <= 10
    spec_augment(batch, time_masks=0, time_mask_frames=0, freq_masks=3, freq_mask_bands=8,
                 generator=torch.Generator().manual_seed(1))
    zero_rows = (batch["input_values"] == 0).all(dim=2).sum(dim=1)
    assert (zero_rows <= 3 * 4).all()  # at most a quarter of 16 bands per mask
    assert (batch["input_values"] == 0).any()


def masked_frames(features: torch.Tensor) -> list[int]:
    """The frames of one clip's (bands, frames) input that are zero in every band."""
    return torch.nonzero((features == 0).all(dim=0)).flatten().tolist()


def test_spec_augment_masks_whispers_log_mel_over_the_same_seconds_and_its_own_bins():
    # Whisper's frames at twice the rate here, so that the mapping shows; 80 bins: masks up to 20 wide.
    batch = {"input_values": torch.ones(2, 16, 50), "input_mfcc": torch.ones(2, 8, 50),
             "attention_mask": torch.ones(2, 50, dtype=torch.long), "input_features": torch.ones(2, 80, 100)}
    spec_augment(batch, time_masks=1, time_mask_frames=10, freq_masks=0, freq_mask_bands=0,
                 generator=torch.Generator().manual_seed(0), whisper_frames_per_frame=2.0)
    for i in range(2):
        mel = masked_frames(batch["input_values"][i])
        assert mel and masked_frames(batch["input_mfcc"][i]) == mel
        assert masked_frames(batch["input_features"][i]) == list(range(2 * mel[0], 2 * (mel[-1] + 1)))
    spec_augment(batch, time_masks=0, time_mask_frames=0, freq_masks=3, freq_mask_bands=30,
                 generator=torch.Generator().manual_seed(1))
    zero_bins = (batch["input_features"] == 0).all(dim=2).sum(dim=1)
    assert (zero_bins > 0).all() and (zero_bins <= 3 * 20).all()


def test_the_trainer_masks_every_branchs_input_in_training_only(tmp_path):
    from transformers import WhisperFeatureExtractor

    from ser_model import SERFeatureExtractor, SERForAudioClassification
    from ser_model.data.train_data import ClipDataset, FeatureCollator
    from ser_model.training.arguments import parse_arguments
    from ser_model.training.trainer import SERTrainer

    from .conftest import speechlike
    from .test_whisper_branch import whisper_config

    config = whisper_config()
    records = [Record(path=str(i), corpus="c", speaker="c:1", label="sad", gender=None, utterance="u")
               for i in range(2)]
    collate = FeatureCollator(SERFeatureExtractor.from_config(config), config.label2id)
    _, _, args = parse_arguments({"output_dir": str(tmp_path), "use_cpu": True, "eval_strategy": "no",
                                  "save_strategy": "no", "load_best_model_at_end": False, "time_masks": 1,
                                  "time_mask_frames": 30, "freq_masks": 0})
    model = SERForAudioClassification(config)
    trainer = SERTrainer(model=model, args=args, class_weights=torch.ones(7))
    # The mel frames hop 128 samples here, Whisper's its own feature extractor's 160.
    ratio = config.hop_length / WhisperFeatureExtractor().hop_length
    assert trainer.whisper_frames_per_frame == pytest.approx(ratio)
    batch = collate(list(ClipDataset([speechlike(0.9, seed=0), speechlike(0.7, seed=1)], records)))
    before = {name: value.clone() for name, value in batch.items()}
    trainer.compute_loss(model.eval(), dict(batch))  # a dict of its own: compute_loss pops the labels
    assert all(torch.equal(batch[name], value) for name, value in before.items())  # validation: never masked
    trainer.compute_loss(model.train(), dict(batch))
    for i in range(2):
        mel = sorted(set(masked_frames(batch["input_values"][i])) - set(masked_frames(before["input_values"][i])))
        whisper = set(masked_frames(batch["input_features"][i])) - set(masked_frames(before["input_features"][i]))
        assert mel and sorted(whisper) == list(range(round(mel[0] * ratio), round((mel[-1] + 1) * ratio)))


def test_selection_averages_the_speaker_held_out_corpora_equally():
    def record(corpus, label):
        return Record(path="x", corpus=corpus, speaker=f"{corpus}:1", label=label, gender=None, utterance="u")

    # Four RAVDESS clips (2 right of 2 classes: recall 1.0 and 0.0), one TurEV clip right, TESS ignored.
    records = [record("ravdess", "angry"), record("ravdess", "angry"), record("ravdess", "sad"),
               record("ravdess", "sad"), record("turev", "happy"), record("tess", "sad")]
    truth = np.array([LABELS.index(r.label) for r in records])
    predicted = truth.copy()
    predicted[2:4] = LABELS.index("angry")
    predicted[5] = LABELS.index("happy")
    metrics = ValidationMetrics(records, {"ravdess": "speaker", "turev": "speaker", "tess": "utterance"}, len(LABELS))
    scores = metrics(type("P", (), {"label_ids": truth, "predictions": np.eye(7)[predicted]})())
    assert scores["ravdess_macro_recall"] == pytest.approx(0.5)
    assert scores["turev_macro_recall"] == pytest.approx(1.0)
    assert scores[ValidationMetrics.SELECTION] == pytest.approx(0.75)
    assert scores["accuracy"] == pytest.approx(3 / 6)


def test_validation_scores_each_clip_by_the_mean_of_its_windows_probabilities():
    # An angry clip of three windows whose first says sad while the mean of all three says angry (as serving
    # averages them), and a sad clip of one window. The voice likewise: the first window decides it.
    records = [Record(path=str(i), corpus="ravdess", speaker="ravdess:1", label=label, gender=None, utterance="u")
               for i, label in enumerate(("angry", "sad"))]
    angry, sad = LABELS.index("angry"), LABELS.index("sad")
    logits = np.zeros((4, 7))
    logits[0, sad] = 2.0
    logits[1:3, angry] = 3.0
    logits[3, sad] = 3.0
    voice = np.array([[4.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    metrics = ValidationMetrics(records, {"ravdess": "speaker"}, len(LABELS), owner=np.array([0, 0, 0, 1]))
    scores = metrics(type("P", (), {"predictions": (logits, voice),
                                    "label_ids": (np.array([angry, angry, angry, sad]), np.array([0, 0, 0, 1]))})())
    assert scores["accuracy"] == 1.0 and scores["ravdess_macro_recall"] == 1.0
    assert scores["voice_accuracy"] == 1.0


def test_out_of_set_weight_runs_from_the_masked_loss_to_the_plain_one():
    torch.manual_seed(2)
    logits = torch.randn(4, 7)
    labels = torch.tensor([LABELS.index(label) for label in ("angry", "sad", "happy", "neutral")])
    mask = TUREV.expand(4, 7)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert label_set_cross_entropy(logits, labels, mask, out_of_set_weight=1.0).item() == pytest.approx(plain.item())
    losses, pushes = [], []
    for w in (0.0, 0.1, 1.0):
        leaf = logits.clone().requires_grad_(True)
        loss = label_set_cross_entropy(leaf, labels, mask, out_of_set_weight=w)
        loss.backward()
        losses.append(loss.item())
        pushes.append(leaf.grad[:, ~TUREV].sum().item())  # positive: the out-of-set logits are pushed down
    assert losses[0] < losses[1] < losses[2]
    assert pushes[0] == 0.0 and 0.0 < pushes[1] < pushes[2]
