"""Training, evaluation and export on a tiny config and a handful of real clips."""

import json

import numpy as np
import pytest
import torch
from transformers import TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

from ser_model import SERFeatureExtractor, SERForAudioClassification
from ser_model.corpora import Record
from ser_model.evaluation import evaluate
from ser_model.export import CODE_FILES, export_model, stale_code_files
from ser_model.splits import Split, load_split
from ser_model.training import TrainingConfig, ValidationMetrics, WeightedLossTrainer, class_weights, train

from .conftest import TINY, data_dir_or_skip, speechlike, tiny_config

NO_AUGMENTATION = dict(noise_probability=0.0, speed_probability=0.0, time_masks=0, freq_masks=0)


def test_class_weights_balance_the_classes():
    weights = class_weights([0, 0, 0, 1, 2, 2], num_labels=4)
    assert weights[0] * 3 == pytest.approx(weights[1] * 1) == pytest.approx(weights[2] * 2)
    assert weights[3] == 0  # an absent class gets no weight
    assert weights[:3].mean() == pytest.approx(1.0)


def test_invalid_training_config_is_named():
    with pytest.raises(ValueError, match="preset"):
        TrainingConfig(preset="huge")
    with pytest.raises(ValueError, match="noise_probability"):
        TrainingConfig(noise_probability=2.0)


class RecordingModel(torch.nn.Module):
    """Logits from the mean mel frame; keeps the inputs it was given."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.linear = torch.nn.Linear(n_mels, 7)
        self.seen = {}

    def forward(self, input_values, input_mfcc, attention_mask=None):
        self.seen = {"input_values": input_values, "input_mfcc": input_mfcc, "attention_mask": attention_mask}
        return SequenceClassifierOutput(logits=self.linear(input_values.mean(dim=-1)))


def test_mixup_mixes_features_and_targets_with_one_weight(tmp_path):
    config = tiny_config()
    extractor = SERFeatureExtractor.from_config(config)
    lengths = (1.0, 0.6, 1.0, 0.8)  # padded clips: the mask of a mixed pair is the union
    batch = dict(extractor([speechlike(s, seed=i) for i, s in enumerate(lengths)], sampling_rate=16_000,
                           return_tensors="pt"))
    labels = torch.tensor([0, 1, 2, 3])
    model = RecordingModel(config.n_mels).train()
    cfg = TrainingConfig(mixup_probability=1.0, label_smoothing=0.0, seed=3)
    trainer = WeightedLossTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none"),
                                  class_weights=torch.ones(7), training_config=cfg)
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, {**batch, "labels": labels})

    # The same draws again: "mix or not" then the Beta weight from the seeded generator, the pairing from torch.
    rng = np.random.default_rng(cfg.seed)
    rng.random()
    weight = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
    torch.manual_seed(0)
    order = torch.randperm(4)
    assert not torch.equal(order, torch.arange(4))
    for name in ("input_values", "input_mfcc"):
        assert torch.allclose(model.seen[name], weight * batch[name] + (1 - weight) * batch[name][order], atol=1e-6)
    assert torch.equal(model.seen["attention_mask"], torch.maximum(batch["attention_mask"],
                                                                   batch["attention_mask"][order]))
    logits = model.linear(model.seen["input_values"].mean(dim=-1))
    ce = torch.nn.functional.cross_entropy
    expected = weight * ce(logits, labels) + (1 - weight) * ce(logits, labels[order])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_validation_selects_on_speaker_held_out_clips_only():
    records = [Record(path=f"{c}{i}.wav", corpus=c, speaker=c, label="angry", gender=None, utterance=str(i))
               for c in ("ravdess", "tess") for i in range(2)]
    split = Split(assignments={}, corpora={"ravdess": {"held_out_by": "speaker"}, "tess": {"held_out_by": "utterance"}})
    metrics = ValidationMetrics(records, split, num_labels=7)
    prediction = type("P", (), {"label_ids": np.array([0, 1, 2, 3]),
                                "predictions": np.eye(7)[[0, 0, 2, 3]]})()
    scores = metrics(prediction)
    assert scores["accuracy"] == pytest.approx(0.75)
    # Only the two RAVDESS clips count for selection: classes 0 (right) and 1 (wrong).
    assert scores[ValidationMetrics.SELECTION] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 30 steps on 24 real clips, over-fitting them on purpose."""
    data_dir = data_dir_or_skip()
    out = tmp_path_factory.mktemp("run")
    cfg = TrainingConfig(model_overrides=TINY, data_dir=str(data_dir), output_dir=str(out), max_steps=30,
                         logging_steps=5, batch_size=8, learning_rate=3e-3, max_clips_per_part=24, **NO_AUGMENTATION)
    return train(cfg), data_dir


@pytest.mark.slow
def test_a_short_run_lowers_the_loss_and_saves_a_loadable_model(trained):
    best, _ = trained
    record = json.loads((best / "training.json").read_text())
    losses = [entry["loss"] for entry in record["log_history"] if "loss" in entry]
    assert len(losses) >= 4
    assert losses[-1] < losses[0], f"loss did not fall: {losses}"
    model = SERForAudioClassification.from_pretrained(best)
    assert model.config.growth_rate == TINY["growth_rate"]
    split = load_split(best / "split.json")
    assert split.corpora["ravdess"]["held_out_by"] == "speaker"


@pytest.mark.slow
def test_evaluation_report_has_every_field(trained, tmp_path):
    best, data_dir = trained
    report = evaluate(str(best), str(data_dir), str(tmp_path), ablations={"same_again": str(best)},
                      max_clips_per_part=40)
    assert set(report["results"]) == {"fusion", "same_again", "mfcc_svm_baseline"}
    for by_group in report["results"].values():
        assert "speaker-independent" in by_group and "ravdess" in by_group
        for result in by_group.values():
            assert {"held_out_by", "clips", "speakers", "accuracy", "macro_recall", "macro_f1",
                    "per_class_recall", "confusion_matrix"} <= set(result)
            assert 0 <= result["accuracy"] <= 1 and len(result["confusion_matrix"]) == 7
    assert report["results"]["fusion"]["tess"]["held_out_by"] == "utterance"
    for name in ("report.json", "report.md", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
def test_export_writes_a_complete_model_folder(trained, tmp_path):
    best, data_dir = trained
    evaluate(str(best), str(data_dir), str(best / "evaluation"), max_clips_per_part=20)
    folder = export_model(best, tmp_path / "model", repo_id="someone/tiny-ser")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "split.json",
            "training.json", "evaluation", *CODE_FILES} <= names
    assert stale_code_files(folder) == []
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "someone/tiny-ser" in card and "model-index" in card
    (folder / "modeling.py").write_text("# edited\n")
    assert stale_code_files(folder) == ["modeling.py"]


@pytest.mark.slow
def test_running_again_resumes_from_the_last_checkpoint_and_keeps_the_clock(trained):
    best, data_dir = trained
    first = json.loads((best / "training.json").read_text())
    cfg = TrainingConfig(**{**first["config"], "max_steps": 40})
    again = json.loads((train(cfg) / "training.json").read_text())
    assert again["resumed_from"].endswith("checkpoint-30")
    assert again["wall_seconds"] > first["wall_seconds"]
    steps = [entry["step"] for entry in again["log_history"] if "loss" in entry]
    assert steps[-1] == 40 and steps[0] == 5  # the history of the first 30 steps came back too
