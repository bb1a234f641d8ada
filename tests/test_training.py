"""Training, evaluation and export on a tiny config and a handful of real clips."""

import json

import numpy as np
import pytest
import torch
from transformers import set_seed

from ser_model import SERFeatureExtractor

from ser_model import SERForAudioClassification
from ser_model.cli import main as cli_main
from ser_model.errors import InputError
from ser_model.evaluation.evaluate import evaluate, evaluate_validation
from ser_model.hub.export import CODE_FILES, export_model, stale_code_files
from ser_model.data.splits import load_split
from ser_model.data.train_data import ClipDataset, FeatureCollator, load_clips
from ser_model.training.arguments import SERTrainingArguments, TRAINING_DEFAULTS, parse_arguments, recipe
from ser_model.training.trainer import label_set_cross_entropy
from ser_model.training.train import build_trainer, prepare_data, train

from .conftest import TINY, data_dir_or_skip

NO_AUGMENTATION = {name: 0.0 for name in SERTrainingArguments.PROBABILITIES if name != "label_smoothing_factor"} | dict(
    time_masks=0, freq_masks=0)


def test_invalid_training_arguments_are_named():
    for values, field in (({"preset": "huge"}, "preset"), ({"codec_probability": 2.0}, "codec_probability"),
                          ({"model_overrides": "[1, 2]"}, "model_overrides"),
                          ({"mel_init": "imagenet", "init_model": "model"}, "mel_init and init_model"),
                          ({"lr_scheduler_type": "sideways"}, "sideways"), ({"no_such_flag": 1}, "no_such_flag")):
        with pytest.raises(InputError, match=field):
            parse_arguments({"output_dir": "run", **values})
    with pytest.raises(InputError, match="output_dir is required"):
        parse_arguments({})


def run_train_command(monkeypatch, argv: list[str]):
    """The arguments `python -m ser_model train ARGV` would train with."""
    seen = {}
    monkeypatch.setattr("ser_model.training.train.train", lambda *arguments: seen.setdefault("arguments", arguments))
    assert cli_main(["train", *argv]) == 0
    return seen["arguments"]


def test_every_field_is_a_flag_of_the_train_command(monkeypatch):
    model_args, data_args, args = run_train_command(monkeypatch, [
        "--output_dir", "run", "--num_train_epochs", "3", "--no_label_set_loss", "--speed-range", "0.8", "1.2",
        "--corpora", "ravdess", "tess", "--model_overrides", '{"growth_rate": 8}', "--init-model", "model",
        "--branches", "mel", "mfcc"])
    assert (args.num_train_epochs, args.label_set_loss, args.speed_range) == (3, False, [0.8, 1.2])
    assert data_args.corpora == ["ravdess", "tess"] and args.output_dir == "run"
    assert model_args.model_config().growth_rate == 8 and model_args.init_model == "model"
    # What the flags leave alone keeps the project's values, not TrainingArguments' own defaults.
    assert args.balanced_sampling is True and args.samples_per_epoch == 3000
    assert (args.learning_rate, args.lr_scheduler_type.value, args.load_best_model_at_end) == (2e-3, "cosine", True)
    assert args.per_device_train_batch_size == TRAINING_DEFAULTS["per_device_train_batch_size"]


def test_a_json_recipe_parses_to_the_same_arguments_as_the_flags(monkeypatch, tmp_path):
    flags = ["--output_dir", "run", "--learning_rate", "1e-3", "--num_train_epochs", "12", "--init_model", "model",
             "--exclude_corpora", "turev", "--no_calibrate", "--speed_range", "0.8", "1.2", "--branches", "mel"]
    values = {"output_dir": "run", "learning_rate": 1e-3, "num_train_epochs": 12, "init_model": "model",
              "exclude_corpora": ["turev"], "calibrate": False, "speed_range": [0.8, 1.2], "branches": ["mel"]}
    (tmp_path / "recipe.json").write_text(json.dumps(values))
    from_flags = recipe(*run_train_command(monkeypatch, flags))
    assert recipe(*run_train_command(monkeypatch, [str(tmp_path / "recipe.json")])) == from_flags
    assert from_flags["learning_rate"] == 1e-3 and from_flags["calibrate"] is False
    # A saved record is a recipe too, and flags given after it win.
    (tmp_path / "saved.json").write_text(json.dumps(from_flags))
    again = recipe(*run_train_command(monkeypatch, [str(tmp_path / "saved.json"), "--output_dir", "elsewhere"]))
    assert again == {**from_flags, "output_dir": "elsewhere"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 30 steps on 24 real clips, over-fitting them on purpose."""
    data_dir = data_dir_or_skip()
    out = tmp_path_factory.mktemp("run")
    # No dropout and a high rate: 30 steps are enough to fit 24 clips visibly.
    arguments = parse_arguments(dict(
        model_overrides=json.dumps({**TINY, "fusion_dropout": 0.0}), branches=["mel", "mfcc"], data_dir=str(data_dir),
        output_dir=str(out),
        max_steps=30, logging_steps=5, per_device_train_batch_size=8, per_device_eval_batch_size=8,
        learning_rate=1e-2, max_clips_per_part=24, samples_per_epoch=240, **NO_AUGMENTATION))
    return train(*arguments), data_dir


@pytest.mark.needs_corpora
def test_a_run_can_start_from_a_model_trained_before(trained, tmp_path):
    best, data_dir = trained
    first = json.loads((best / "training.json").read_text())["arguments"]
    model_args, data_args, args = parse_arguments({**first, "output_dir": str(tmp_path), "init_model": str(best)})
    _, split, parts = prepare_data(data_args, args.seed)
    model = build_trainer(model_args, data_args, args, split, parts).model
    saved = SERForAudioClassification.from_pretrained(best).state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in model.state_dict().items())


def training_loss(model, arguments) -> float:
    """The label-set loss of `model` on the run's training clips, unaugmented."""
    model_args, data_args, args = arguments
    _, _, parts = prepare_data(data_args, args.seed)
    dataset = ClipDataset(load_clips(parts["train"], 16_000, "clips"), parts["train"])
    collate = FeatureCollator(SERFeatureExtractor.from_config(model.config), model.config.label2id)
    batch = collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits = model.eval()(batch["input_values"], batch["input_mfcc"], batch["attention_mask"]).logits
    return label_set_cross_entropy(logits, batch["labels"], batch["label_mask"]).item()


@pytest.mark.needs_corpora
def test_a_short_run_fits_its_training_clips_and_saves_a_loadable_model(trained):
    best, _ = trained
    record = json.loads((best / "training.json").read_text())
    arguments = parse_arguments(record["arguments"])
    history = json.loads((best.parent / "trainer_state.json").read_text())["log_history"]  # trainer.save_state()
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 4 and all(np.isfinite(losses))
    assert record["validation_curve"] and {"epoch", "eval_macro_recall"} <= set(record["validation_curve"][-1])
    assert (best.parent / "train_results.json").is_file()  # trainer.save_metrics()
    set_seed(arguments[2].seed)
    untrained = SERForAudioClassification(arguments[0].model_config())
    model = SERForAudioClassification.from_pretrained(best)
    assert model.config.growth_rate == TINY["growth_rate"]
    # The temperature was fitted on the validation speakers and travels in the config.
    assert record["calibration"]["temperature"] == pytest.approx(model.config.calibration_temperature)
    assert model.config.calibration_temperature > 0 and record["calibration"]["clips"] > 0
    # Calibration changes no decision, but the loss: compare both at temperature 1.
    model.config.calibration_temperature = 1.0
    assert training_loss(model, arguments) < training_loss(untrained, arguments)
    split = load_split(best / "split.json")
    assert split.corpora["ravdess"]["held_out_by"] == "speaker"


@pytest.mark.needs_corpora
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


@pytest.mark.needs_corpora
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


@pytest.mark.needs_corpora
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


@pytest.mark.needs_corpora
def test_running_again_resumes_from_the_last_checkpoint_and_keeps_the_clock(trained):
    best, data_dir = trained
    first = json.loads((best / "training.json").read_text())
    again = json.loads((train(*parse_arguments({**first["arguments"], "max_steps": 40})) / "training.json").read_text())
    assert again["resumed_from"].endswith("checkpoint-30")
    assert again["wall_seconds"] > first["wall_seconds"]
    history = json.loads((best.parent / "trainer_state.json").read_text())["log_history"]
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert steps[-1] == 40 and steps[0] == 5  # the history of the first 30 steps came back too


def test_bad_input_to_train_is_one_sentence_not_a_traceback(tmp_path, capsys):
    assert cli_main(["train", "--data_dir", str(tmp_path / "absent"), "--output_dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == f"error: data directory {str(tmp_path / 'absent')!r} does not exist"
    assert cli_main(["train", "--preset", "cpu-small", "--model_overrides", '{"n_mfcc": 0}',
                     "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "run")]) == 2
    assert "n_mfcc must be a positive integer" in capsys.readouterr().err


def test_recipes_written_before_mixup_was_removed_still_parse_and_one_that_used_it_is_refused():
    old = {"output_dir": "run", "mixup_probability": 0.0, "mixup_alpha": 0.4}
    assert "mixup_probability" not in recipe(*parse_arguments(old))
    assert recipe(*parse_arguments(old)) == recipe(*parse_arguments({"output_dir": "run"}))
    with pytest.raises(InputError, match="mixup was removed"):
        parse_arguments({**old, "mixup_probability": 0.5})
