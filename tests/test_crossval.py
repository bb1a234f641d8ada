"""Cross-validation: folds that keep speakers (or TESS words) apart, the frozen encoder's statistics
cached per window and per augmented copy, the head trained on them loading into the full model with the
same outputs, and the `crossval` command end to end on a small synthetic corpus, resumed and refused."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser_model import SERFeatureExtractor
from ser_model.cli import main as cli_main
from ser_model.configuration import EMOTIONS
from ser_model.data.augment import AugmentationSettings
from ser_model.data.corpora import Record
from ser_model.data.folds import corpus_folds, speaker_folds
from ser_model.errors import InputError
from ser_model.evaluation import crossval as crossval_module
from ser_model.evaluation.crossval import crossval
from ser_model.windows import sliding_windows
from ser_model.training.arguments import parse_arguments
from ser_model.training.encoder_statistics import EncoderStatistics
from ser_model.training.calibration import clip_probabilities
from ser_model.training.head_training import StatisticRows, to_model, train_head

from .conftest import TINY, speechlike
from .test_whisper_branch import tiny_whisper_dir, whisper_config  # noqa: F401 (a fixture)


def record(corpus, speaker, label="angry", gender="female", utterance="u", i=0):
    return Record(path=f"/{corpus}/{speaker}/{i}.wav", corpus=corpus, speaker=f"{corpus}:{speaker}", label=label,
                  gender=gender, utterance=utterance, relpath=f"{speaker}/{utterance}-{i}.wav")


def test_every_speaker_lies_in_one_fold_and_the_folds_keep_the_gender_mix():
    records = [record("ased", f"{s:02d}", gender=("female", "male")[s % 2], i=i) for s in range(10) for i in range(3)]
    folds, corpora = speaker_folds(records, k=5)
    fold_of = {}
    for r, f in zip(records, folds):
        assert fold_of.setdefault(r.speaker, f) == f
    assert corpora["ased"]["held_out_by"] == "speaker"
    for fold in range(5):  # five women and five men: one of each per fold
        genders = sorted(r.gender for r in records[::3] if fold_of[r.speaker] == fold)
        assert genders == ["female", "male"]
    assert speaker_folds(records, k=5) == (folds, corpora)  # the same on every run


def test_a_single_speaker_corpus_is_folded_by_word():
    records = [record("tess", "OAF", label=label, utterance=word, i=i)
               for i, (word, label) in enumerate((w, e) for w in ("back", "bath", "bite", "dog") for e in EMOTIONS)]
    folds, corpora = speaker_folds(records, k=2)
    assert corpora["tess"]["held_out_by"] == "utterance"
    fold_of_word = {}
    for r, f in zip(records, folds):
        assert fold_of_word.setdefault(r.utterance, f) == f
    assert sorted(fold_of_word.values()) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="at least 2 folds"):
        speaker_folds(records, k=1)


def test_leave_one_corpus_out_folds_are_the_corpora():
    records = [record("ravdess", "01"), record("nemo", "A"), record("ravdess", "02")]
    assert corpus_folds(records) == ([1, 0, 1], ["nemo", "ravdess"])


def test_rows_of_chosen_clips_are_renumbered_in_that_order():
    rows = StatisticRows(clean=np.arange(5.0)[:, None], clean_owner=np.array([0, 1, 1, 2, 3]),
                         copies=[10 + np.arange(4.0)[:, None]])
    chosen = rows.of_clips(np.array([3, 1]))
    assert chosen.clean[:, 0].tolist() == [4.0, 1.0, 2.0] and chosen.clean_owner.tolist() == [0, 1, 1]
    assert chosen.copies[0][:, 0].tolist() == [13.0, 11.0]


def test_a_clip_scores_the_mean_of_its_windows_probabilities():
    logits = np.log(np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]]))
    np.testing.assert_allclose(clip_probabilities(logits, np.array([0, 0, 1])), [[0.7, 0.3], [0.1, 0.9]])


@pytest.fixture
def statistics(tiny_whisper_dir, tmp_path):  # noqa: F811
    return EncoderStatistics(str(tiny_whisper_dir), window_seconds=1.0, window_hop_seconds=0.5,
                             cache_dir=tmp_path / "cache", batch_size=2)


def test_every_window_is_encoded_as_serving_cuts_it_and_kept(statistics, monkeypatch):
    clips = [speechlike(0.6, seed=1), speechlike(2.2, seed=2)]
    records = [record("ravdess", "01", i=0), record("ravdess", "01", i=1)]
    rows, owner = statistics.windows(records, lambda: clips)
    cut = [w for _, w, _ in sliding_windows([clips[1]], 16_000, 8_000)]
    assert owner.tolist() == [0] + [1] * len(cut) and rows.shape == (1 + len(cut), statistics.feature_size)
    np.testing.assert_allclose(rows[-1], statistics.encode([cut[-1]])[0], atol=1e-5)
    monkeypatch.setattr(statistics, "encode", lambda *a: pytest.fail("the cached rows were not reused"))
    np.testing.assert_array_equal(statistics.windows(records, lambda: pytest.fail("clips decoded again"))[0], rows)


def test_augmented_copies_are_reproducible_and_keyed_by_their_settings(statistics):
    clips = [speechlike(0.8, seed=i) for i in range(3)]
    records = [record("ravdess", "01", i=i) for i in range(3)]
    settings = AugmentationSettings(window=16_000, sampling_rate=16_000, babble_probability=1.0)
    first = statistics.augmented(records, lambda: clips, 0, settings, 0.0, ["a", "a", "b"])
    assert first.shape == (3, statistics.feature_size)
    other_copy = statistics.augmented(records, lambda: clips, 1, settings, 0.0, ["a", "a", "b"])
    assert not np.allclose(first, other_copy)
    statistics.cache_dir = None  # computed again, not read: the same draws give the same rows
    np.testing.assert_allclose(statistics.augmented(records, lambda: clips, 0, settings, 0.0, ["a", "a", "b"]),
                               first, atol=1e-5)


def test_a_head_trained_on_rows_loads_into_the_model_with_the_same_outputs(statistics, tiny_whisper_dir):  # noqa: F811
    clips = [speechlike(0.5 + 0.05 * i, seed=i) if i % 2 == 0 else
             0.05 * np.random.default_rng(i).standard_normal(8000 + 800 * i).astype(np.float32) for i in range(12)]
    records = [record("ravdess", f"{i % 3:02d}", label=("angry", "sad")[i % 2], i=i) for i in range(12)]
    rows, owner = statistics.windows(records, lambda: clips)
    config = whisper_config(branches=["whisper"], voice_head=True, fusion_dropout=0.0)
    args = parse_arguments(dict(output_dir="unused", num_train_epochs=20, samples_per_epoch=64,
                                per_device_train_batch_size=16, learning_rate=1e-2))[2]
    head = train_head(StatisticRows(rows, owner, []), records, config, args)
    probabilities = clip_probabilities(head.logits(rows), owner)
    assert (probabilities.argmax(1) == [EMOTIONS.index(r.label) for r in records]).mean() == 1.0
    model = to_model(head, str(tiny_whisper_dir), config)
    inputs = SERFeatureExtractor.from_config(config)(clips[0], sampling_rate=16_000, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits.numpy()
    np.testing.assert_allclose(logits[0], head.logits(rows[owner == 0])[0], atol=1e-4)


def write_corpus(root: Path, actors: int = 4, clips_per_emotion: int = 3) -> Path:
    """A RAVDESS-named corpus of separable classes: "angry" a voiced tone, "sad" quiet noise."""
    rng = np.random.default_rng(0)
    for actor in range(1, actors + 1):
        folder = root / "ravdess" / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for code, label in (("05", "angry"), ("04", "sad")):
            for n in range(clips_per_emotion):
                audio = (speechlike(0.6, seed=actor * 10 + n) if label == "angry" else
                         0.02 * rng.standard_normal(9600).astype(np.float32))
                sf.write(folder / f"03-01-{code}-01-0{n % 2 + 1}-0{n // 2 + 1}-{actor:02d}.wav", audio, 16_000)
    return root


@pytest.fixture
def small_run(tmp_path, tiny_whisper_dir):  # noqa: F811
    data_dir = write_corpus(tmp_path / "data")
    flags = dict(speech_encoder=str(tiny_whisper_dir), cache_dir=str(tmp_path / "cache"), num_train_epochs=10,
                 samples_per_epoch=64, per_device_train_batch_size=16, learning_rate=1e-2,
                 model_overrides=json.dumps({**TINY, "fusion_dropout": 0.0}), data_dir=str(data_dir))
    return flags, tmp_path / "cv"


def test_crossval_reports_every_fold_and_resumes(small_run, monkeypatch):
    flags, output_dir = small_run
    report = crossval(flags, flags["data_dir"], output_dir, k=2, loco=False, copies=1, recipe="head")
    assert set(report["per_fold"]) == {0, 1}
    assert report["pooled"]["ravdess"]["clips"] == 24 and report["pooled"]["ravdess"]["macro_recall"] == 1.0
    assert report["over_folds"]["ravdess"]["macro_recall"]["folds"] == 2
    assert 0.0 <= report["calibration"]["ece_temperature_from_other_folds"] <= 1.0
    saved = json.loads((output_dir / "folds.json").read_text())
    speakers = {}
    for key, fold in saved["fold_of_clip"].items():  # "ravdess/Actor_01/..." -> one fold per actor
        assert speakers.setdefault(key.split("/")[1], fold) == fold
    assert "| ravdess |" in (output_dir / "crossval.md").read_text()
    # Run again: every fold's predictions are read back, nothing is trained.
    monkeypatch.setattr(crossval_module, "train_head", lambda *a, **k: pytest.fail("a finished fold was trained again"))
    again = crossval(flags, flags["data_dir"], output_dir, k=2, loco=False, copies=1, recipe="head")
    assert again["pooled"] == json.loads(json.dumps(report["pooled"]))


def test_a_run_folder_with_other_settings_is_refused(small_run):
    flags, output_dir = small_run
    crossval(flags, flags["data_dir"], output_dir, k=2, loco=False, copies=0, recipe="head")
    with pytest.raises(InputError, match="other settings"):
        crossval(flags, flags["data_dir"], output_dir, k=3, loco=False, copies=0, recipe="head")


def test_the_probe_recipe_runs_on_the_same_folds(small_run):
    flags, output_dir = small_run
    report = crossval(flags, flags["data_dir"], output_dir, k=2, loco=False, copies=0, recipe="probe")
    assert report["pooled"]["ravdess"]["macro_recall"] == 1.0


def test_the_command_needs_an_output_folder(capsys):
    assert cli_main(["crossval", "--folds", "3"]) == 2
    assert "output_dir is required" in capsys.readouterr().err


def test_the_mel_mfcc_recipe_trains_each_fold_from_scratch_without_validation(small_run):
    flags, output_dir = small_run
    report = crossval(flags, flags["data_dir"], output_dir, k=2, loco=False, copies=0, recipe="mel-mfcc")
    assert report["pooled"]["ravdess"]["clips"] == 24 and report["pooled"]["ravdess"]["macro_recall"] > 0.5
    for fold in (0, 1):
        run = output_dir / f"fold-{fold}-run"
        saved = json.loads((run / "best" / "training.json").read_text())
        assert saved["arguments"]["branches"] == ["mel", "mfcc"] and saved["calibration"] is None
        parts = json.loads((run / "split.json").read_text())["assignments"]
        assert set(parts.values()) == {"train", "test"}  # the held-out fold's clips are never trained on


def test_a_run_without_validation_cannot_calibrate(tmp_path):
    from ser_model.training.train import train

    with pytest.raises(InputError, match="calibrate false"):
        train(*parse_arguments(dict(output_dir=str(tmp_path), data_dir=str(tmp_path), eval_strategy="no",
                                    load_best_model_at_end=False)))


def test_the_fusion_weights_favour_the_recipe_that_knows():
    from ser_model.evaluation.late_fusion import fit_fusion, simplex_grid

    grid = simplex_grid(3)
    assert len(grid) == 66 and np.allclose(grid.sum(axis=1), 1.0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    knows = np.log(np.where(np.eye(3)[labels] > 0, 0.8, 0.1))
    guesses = np.log(rng.dirichlet(np.ones(3), 300))
    weights, temperature = fit_fusion(np.stack([guesses, knows]), labels)
    assert weights[1] >= 0.9 and 0.05 < temperature < 20


def test_fused_runs_are_judged_against_each_recipe_alone(small_run, tmp_path):
    flags, output_dir = small_run
    runs = []
    for recipe in ("head", "probe"):
        crossval(flags, flags["data_dir"], tmp_path / recipe, k=2, loco=False, copies=0, recipe=recipe)
        runs.append(str(tmp_path / recipe))
    assert cli_main(["crossval", "--output_dir", str(tmp_path / "fused"), "--data_dir", flags["data_dir"],
                     "--fuse", *runs]) == 0
    report = json.loads((tmp_path / "fused" / "fusion.json").read_text())
    assert report["pooled"]["ravdess"]["macro_recall"] == 1.0 and set(report["alone"]) == set(runs)
    assert set(report["fitted_on_other_folds"]) == {"0", "1"}  # JSON keys
    assert "| ravdess |" in (tmp_path / "fused" / "fusion.md").read_text()


def test_a_leave_one_corpus_out_report_names_its_pooled_row_and_mean_over_corpora():
    from ser_model.evaluation.crossval import UNSEEN_CORPORA, summarize

    records = [record("ravdess", "01", label="angry"), record("ravdess", "02", label="sad"),
               record("nemo", "A", label="angry"), record("nemo", "B", label="sad")]
    right = np.eye(len(EMOTIONS))[[EMOTIONS.index("angry"), EMOTIONS.index("sad")] * 2]
    right[3] = np.eye(len(EMOTIONS))[EMOTIONS.index("angry")]  # nEMO's sad clip called angry
    report = summarize(records, np.array([1, 1, 0, 0]), right, {"ravdess": "corpus", "nemo": "corpus"})
    assert report["pooled"][UNSEEN_CORPORA]["held_out_by"] == "corpus" and "speaker-independent" not in report["pooled"]
    assert report["over_folds"][UNSEEN_CORPORA]["macro_recall"]["mean"] == pytest.approx((1.0 + 0.5) / 2)
