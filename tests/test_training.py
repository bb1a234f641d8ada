"""Training, evaluation and export on a tiny config and a handful of real clips."""

import json

import numpy as np
import pytest
import torch
from transformers import set_seed

from ser_model import SERFeatureExtractor

from ser_model import SERForAudioClassification
from ser_model.cli import main as cli_main
from ser_model.evaluation.evaluate import evaluate, evaluate_validation
from ser_model.hub.export import CODE_FILES, export_model, stale_code_files
from ser_model.data.splits import load_split
from ser_model.data.train_data import ClipDataset, FeatureCollator, load_clips
from ser_model.training.trainer import label_set_cross_entropy
from ser_model.training.train import TrainingConfig, build_trainer, prepare_data, train

from .conftest import TINY, data_dir_or_skip

NO_AUGMENTATION = {name: 0.0 for name in TrainingConfig.PROBABILITIES if name != "label_smoothing"} | dict(
    time_masks=0, freq_masks=0)


def test_invalid_training_config_is_named():
    with pytest.raises(ValueError, match="preset"):
        TrainingConfig(preset="huge")
    with pytest.raises(ValueError, match="codec_probability"):
        TrainingConfig(codec_probability=2.0)
    with pytest.raises(ValueError, match="model_overrides"):
        TrainingConfig(model_overrides="[1, 2]")


def test_every_field_is_a_flag_of_the_train_command(monkeypatch):
    seen = {}
    monkeypatch.setattr("ser_model.training.train.train", lambda cfg: seen.setdefault("cfg", cfg) and "best")
    cli_main(["train", "--epochs", "3", "--no_label_set_loss", "--speed-range", "0.8", "1.2", "--corpora", "ravdess",
              "tess", "--model_overrides", '{"growth_rate": 8}', "--mel-init", "weights.pth",
              "--init-model", "model"])
    cfg = seen["cfg"]
    assert (cfg.epochs, cfg.label_set_loss, cfg.speed_range, cfg.corpora) == (3, False, [0.8, 1.2], ["ravdess", "tess"])
    assert cfg.model_config().growth_rate == 8 and cfg.mel_init == "weights.pth" and cfg.init_model == "model"
    assert cfg.balanced_sampling is True and cfg.samples_per_epoch == TrainingConfig().samples_per_epoch


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 30 steps on 24 real clips, over-fitting them on purpose."""
    data_dir = data_dir_or_skip()
    out = tmp_path_factory.mktemp("run")
    # No dropout and a high rate: 30 steps are enough to fit 24 clips visibly.
    cfg = TrainingConfig(model_overrides=json.dumps({**TINY, "fusion_dropout": 0.0}), data_dir=str(data_dir),
                         output_dir=str(out), max_steps=30, logging_steps=5, batch_size=8, learning_rate=1e-2,
                         max_clips_per_part=24, cache_dir=None, samples_per_epoch=240, **NO_AUGMENTATION)
    return train(cfg), data_dir


@pytest.mark.slow
def test_a_run_can_start_from_a_model_trained_before(trained, tmp_path):
    best, data_dir = trained
    first = json.loads((best / "training.json").read_text())["config"]
    cfg = TrainingConfig(**{**first, "output_dir": str(tmp_path), "init_model": str(best)})
    _, split, parts = prepare_data(cfg)
    model = build_trainer(cfg, split, parts, tmp_path).model
    saved = SERForAudioClassification.from_pretrained(best).state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in model.state_dict().items())


def training_loss(model, cfg: TrainingConfig) -> float:
    """The label-set loss of `model` on the run's training clips, unaugmented."""
    _, _, parts = prepare_data(cfg)
    dataset = ClipDataset(load_clips(parts["train"], 16_000, "clips"), parts["train"])
    collate = FeatureCollator(SERFeatureExtractor.from_config(cfg.model_config()))
    batch = collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits = model.eval()(batch["input_values"], batch["input_mfcc"], batch["attention_mask"]).logits
    return label_set_cross_entropy(logits, batch["labels"], batch["label_mask"]).item()


@pytest.mark.slow
def test_a_short_run_fits_its_training_clips_and_saves_a_loadable_model(trained):
    best, _ = trained
    record = json.loads((best / "training.json").read_text())
    cfg = TrainingConfig(**record["config"])
    losses = [entry["loss"] for entry in record["log_history"] if "loss" in entry]
    assert len(losses) >= 4 and all(np.isfinite(losses))
    set_seed(cfg.seed)
    untrained = SERForAudioClassification(cfg.model_config())
    model = SERForAudioClassification.from_pretrained(best)
    assert model.config.growth_rate == TINY["growth_rate"]
    # The temperature was fitted on the validation speakers and travels in the config.
    assert record["calibration"]["temperature"] == pytest.approx(model.config.calibration_temperature)
    assert model.config.calibration_temperature > 0 and record["calibration"]["clips"] > 0
    # Calibration changes no decision, but the loss: compare both at temperature 1.
    model.config.calibration_temperature = 1.0
    assert training_loss(model, cfg) < training_loss(untrained, cfg)
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
    assert set(report["validation"]) == {"fusion", "same_again"}
    # The same model twice gives the same validation figures: both are really scored.
    assert report["validation"]["fusion"] == report["validation"]["same_again"]
    calibration = report["calibration"]
    assert calibration["clips"] > 0 and 0 <= calibration["with_temperature"]["ece"] <= 1
    robustness = report["robustness"]
    assert robustness["clips"] == report["results"]["fusion"]["ravdess"]["clips"]
    assert robustness["conditions"]["clean"]["agreement_with_clean"] == 1.0
    assert {"telephone_8k", "babble_10db", "reverb_rt60_0.5s", "level_minus_30db"} <= set(robustness["conditions"])
    for name in ("report.json", "report.md", "confusion_matrix.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
def test_recipes_can_be_compared_on_the_validation_speakers_alone(trained, tmp_path):
    best, data_dir = trained
    report = evaluate_validation(str(best), str(data_dir), str(tmp_path), ablations={"same_again": str(best)},
                                 max_clips_per_part=40)
    assert set(report["validation"]) == {"fusion", "same_again"}
    assert report["validation"]["fusion"] == report["validation"]["same_again"]  # both really scored
    assert report["validation"]["fusion"]["ravdess"]["clips"] > 0
    # Under the channel conditions too, on the speaker-held-out corpora's validation clips only.
    speaker_held_out = sum(r["clips"] for c, r in report["validation"]["fusion"].items()
                           if report["held_out_by"].get(c) == "speaker")
    assert report["robustness"]["fusion"]["clips"] == speaker_held_out
    assert report["robustness"]["fusion"] == report["robustness"]["same_again"]
    markdown = (tmp_path / "validation.md").read_text()
    assert "| fusion |" in markdown and "| level_minus_30db |" in markdown
    assert not (tmp_path / "report.json").exists()  # the test speakers were not scored


@pytest.mark.slow
def test_export_writes_a_complete_model_folder(trained, tmp_path):
    best, data_dir = trained
    report = evaluate(str(best), str(data_dir), str(best / "evaluation"), max_clips_per_part=20, robustness=False)
    evaluate_validation(str(best), str(data_dir), str(best / "evaluation"), max_clips_per_part=20, robustness=False)
    # Stands in for the report of the same recipe trained without TESS (`train --exclude_corpora tess`).
    left_out = tmp_path / "without-tess"
    left_out.mkdir()
    (left_out / "report.json").write_text(json.dumps({**report, "held_out_by": {**report["held_out_by"],
                                                                                "tess": "corpus"}}))
    folder = export_model(best, tmp_path / "model", repo_id="someone/tiny-ser", left_out_reports=[left_out])
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "split.json",
            "training.json", "evaluation", *CODE_FILES} <= names
    assert {"validation.json", "validation.md", "left_out_tess.json"} <= {p.name for p in (folder / "evaluation").iterdir()}
    assert stale_code_files(folder) == []
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "someone/tiny-ser" in card and "model-index" in card
    tess = report["results"]["fusion"]["tess"]
    assert f"| TESS | {tess['clips']} | 1 | {tess['accuracy']:.1%} |" in card  # the leave-one-corpus-out row
    comparison = card.split("**How the recipe was chosen.**")[1].split("##")[0]  # on the validation speakers
    assert "| ravdess |" in comparison and "| fusion |" in comparison
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


def test_bad_input_to_train_is_one_sentence_not_a_traceback(tmp_path, capsys):
    assert cli_main(["train", "--data_dir", str(tmp_path / "absent"), "--output_dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == f"error: data directory {str(tmp_path / 'absent')!r} does not exist"
    assert cli_main(["train", "--preset", "cpu-small", "--model_overrides", '{"n_mfcc": 0}',
                     "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "run")]) == 2
    assert "n_mfcc must be a positive integer" in capsys.readouterr().err
