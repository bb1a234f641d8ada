"""Which clips evaluation scores: the model's own corpora by split, a left-out corpus whole."""

from ser_model.data.corpora import Record
from ser_model.evaluation.evaluate import SPEAKER_INDEPENDENT, evaluate_predictions, evaluation_parts
from ser_model.data.splits import make_split


def records():
    return [Record(path=f"/{c}/{s}/{i}.wav", corpus=c, speaker=f"{c}:{s}", label=("angry", "sad")[i % 2],
                   gender=None, utterance=str(i), relpath=f"{s}/{i}.wav")
            for c in ("ravdess", "turev") for s in range(8) for i in range(4)]


def test_a_corpus_the_model_was_trained_without_is_tested_whole():
    data = records()
    split = make_split(data)
    parts, held_out_by = evaluation_parts(data, split, {"arguments": {"exclude_corpora": ["turev"]}})
    assert held_out_by["turev"] == "corpus" and held_out_by["ravdess"] == "speaker"
    assert sum(r.corpus == "turev" for r in parts["test"]) == 32  # all of it
    assert not any(r.corpus == "turev" for r in parts["train"] + parts["validation"])
    results = evaluate_predictions(parts["test"], [r.label for r in parts["test"]], ["angry", "sad"], held_out_by)
    assert results["turev"]["held_out_by"] == "corpus" and results["turev"]["clips"] == 32
    assert results[SPEAKER_INDEPENDENT]["clips"] == len(parts["test"])


def test_without_a_training_record_every_corpus_is_scored_by_its_split():
    data = records()
    split = make_split(data)
    parts, held_out_by = evaluation_parts(data, split, None)
    assert set(held_out_by.values()) == {"speaker"}
    assert {r.corpus for r in parts["train"]} == {"ravdess", "turev"}
    assert all(split[f"{r.corpus}/{r.relpath[:-4]}"] == "test" for r in parts["test"])


def test_the_validation_table_has_a_row_per_model_and_the_mean_over_speaker_held_out_corpora():
    from ser_model.evaluation.evaluate import validation_table

    validation = {"fusion": {"ravdess": {"macro_recall": 0.6}, "turev": {"macro_recall": 0.4},
                             "tess": {"macro_recall": 1.0}, SPEAKER_INDEPENDENT: {"macro_recall": 0.5}},
                  "plain": {"ravdess": {"macro_recall": 0.3}, "turev": {"macro_recall": 0.2}}}
    held_out_by = {"ravdess": "speaker", "turev": "speaker", "tess": "utterance"}
    lines = validation_table(validation, held_out_by)
    assert lines[4] == "| model | ravdess | turev | mean |"  # TESS (held out by word) and the pooled group left out
    assert lines[6:] == ["| fusion | 60.0% | 40.0% | 50.0% |", "| plain | 30.0% | 20.0% | 25.0% |"]


def test_a_clip_refused_as_silent_under_a_condition_counts_as_wrong_and_is_reported():
    import numpy as np

    from ser_model.audio_io import AudioError
    from ser_model.evaluation.evaluate import robustness_on_test_actors

    class LoudnessOnly:
        """Says angry for any clip, and refuses a silent one as the real recognizer does."""
        sampling_rate = 16_000

        def predict_waveform(self, waveform, sampling_rate):
            if np.abs(waveform).max() < 1e-3:
                raise AudioError("The audio is silent.")
            return type("Prediction", (), {"label": "angry"})()

    rng = np.random.default_rng(0)
    loud, soft = (peak * np.sin(np.linspace(0, 2000, 16_000)).astype(np.float32) for peak in (0.5, 0.02))
    test = [r for r in records() if r.corpus == "ravdess"][:2]
    test = [Record(**{**r.__dict__, "label": "angry"}) for r in test]
    others = [0.1 * rng.standard_normal(16_000).astype(np.float32) for _ in range(6)]  # babble talkers
    result = robustness_on_test_actors(LoudnessOnly(), test + records()[-6:], [loud, soft, *others])
    assert result["corpus"] == "ravdess" and result["clips"] == 2
    quiet = result["conditions"]["level_minus_30db"]
    assert quiet["refused"] == 1 and quiet["accuracy"] == 0.5 and quiet["agreement_with_clean"] == 0.5
    assert result["conditions"]["clean"]["refused"] == 0


def test_the_channel_comparison_has_a_row_per_condition_and_a_column_per_model():
    from ser_model.evaluation.evaluate import robustness_comparison_table

    def result(agreement, accuracy):
        return {"clips": 10, "conditions": {
            "clean": {"agreement_with_clean": 1.0, "accuracy": accuracy, "refused": 0},
            "mp3_64k": {"agreement_with_clean": agreement, "accuracy": accuracy - 0.1, "refused": 0}}}

    lines = robustness_comparison_table({"fusion": result(0.9, 0.6), "no_channel": result(0.8, 0.5)})
    assert "(10 clips)" in lines[0]
    assert lines[4:] == ["| condition | fusion | no_channel |", "|---|---|---|",
                         "| clean | 100.0% (60.0%) | 100.0% (50.0%) |",
                         "| mp3_64k | 90.0% (50.0%) | 80.0% (40.0%) |"]
