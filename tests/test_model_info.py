"""The facts about a model that the app states: its training corpora and the sentence naming them."""

import csv

import pytest

from ser_model.model_info import corpus_languages, describe_training_data, load_training_corpora

from .conftest import REPO


def test_the_training_data_sentence_names_languages_and_corpora():
    assert describe_training_data(["ravdess", "ased", "nemo"]) == "acted speech in English, Amharic and Polish " \
                                                                 "(RAVDESS, ASED, nEMO)"
    assert describe_training_data(["tess"]) == "acted speech in English (TESS)"
    assert describe_training_data(None) == "acted speech (its training corpora were not recorded with it)"
    assert corpus_languages(["turev", "emodb", "tess", "manifest"]) == ["en", "de", "tr"]


def test_the_training_corpora_come_from_the_model_folders_record(tiny_model_dir):
    assert load_training_corpora(tiny_model_dir) is None
    (tiny_model_dir / "split.json").write_text('{"corpora": {"tess": {}, "ravdess": {}}}')
    assert load_training_corpora(tiny_model_dir) == ["ravdess", "tess"]
    (tiny_model_dir / "training.json").write_text('{"corpora": ["turev"]}')  # the record of the run wins
    assert load_training_corpora(tiny_model_dir) == ["turev"]


def test_the_accuracy_per_language_is_read_from_the_report_and_pools_a_languages_corpora():
    from ser_model.evaluation.report import FUSION

    from ser_model.model_info import EVALUATED_MODEL, accuracy_by_language

    assert EVALUATED_MODEL == FUSION  # the key the evaluation writes
    report = {"results": {FUSION: {
        "ravdess": {"held_out_by": "speaker", "accuracy": 0.6, "clips": 200, "speakers": 4},
        "crema-d": {"held_out_by": "speaker", "accuracy": 0.4, "clips": 300, "speakers": 10},
        "nemo": {"held_out_by": "corpus", "accuracy": 0.5, "clips": 100, "speakers": 9},
        "tess": {"held_out_by": "utterance", "accuracy": 1.0, "clips": 210, "speakers": 1},  # a heard speaker
        "speaker-independent": {"held_out_by": "speaker", "accuracy": 0.5, "clips": 600, "speakers": 23},
    }, "mfcc_svm_baseline": {"ravdess": {"held_out_by": "speaker", "accuracy": 0.1, "clips": 200, "speakers": 4}}}}
    assert accuracy_by_language(report) == [("English", pytest.approx(0.48), 500, 14), ("Polish", 0.5, 100, 9)]
    assert accuracy_by_language(None) == []


def test_the_bundled_models_figures_come_from_its_own_report():
    from ser_model.model_info import accuracy_by_language, describe_calibration, read_model_json

    report = read_model_json(REPO / "model", "evaluation/report.json")
    rows = accuracy_by_language(report)
    ravdess = report["results"]["fusion"]["ravdess"]
    assert ("English", pytest.approx(ravdess["accuracy"]), ravdess["clips"], ravdess["speakers"]) in rows
    ece = report["calibration"]["with_temperature"]["ece"]
    assert f"differ by {100 * ece:.1f} percentage points" in describe_calibration(report, 0.97)
    assert "not calibrated" in describe_calibration(report, 1.0)
    assert describe_calibration(None, 1.0).startswith("The percentages are the model's probabilities, not calibrated")


def test_each_example_is_described_by_the_models_own_split():
    from ser_model.model_info import clip_status, read_model_json

    split = read_model_json(REPO / "model", "split.json")
    rows = list(csv.DictReader((REPO / "examples" / "examples.csv").open()))
    assert sorted(row["file"] for row in rows) == sorted(p.name for p in (REPO / "examples").glob("*.flac"))
    statuses = {row["file"]: clip_status(split, row["clip"], row["speaker"]) for row in rows}
    assert statuses["ravdess_actor10_happy.flac"] == "a speaker never heard in training"
    # TESS has one speaker, split by word.
    assert statuses["tess_mood_disgust.flac"] == "a new word from the training speaker"
    tiny = {"assignments": {"tess/OAF_back_angry": "train"}, "corpora": {}}
    assert clip_status(tiny, "tess/OAF_back_angry", "tess:OAF") == "heard in training"
    assert clip_status(None, "tess/OAF_mood_disgust", "tess:OAF") == "not in the model's data split"
