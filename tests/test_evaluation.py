"""Which clips evaluation scores: the model's own corpora by split, a left-out corpus whole."""

from ser_model.corpora import Record
from ser_model.evaluation import SPEAKER_INDEPENDENT, evaluate_predictions, evaluation_parts
from ser_model.splits import make_split


def records():
    return [Record(path=f"/{c}/{s}/{i}.wav", corpus=c, speaker=f"{c}:{s}", label=("angry", "sad")[i % 2],
                   gender=None, utterance=str(i), relpath=f"{s}/{i}.wav")
            for c in ("ravdess", "turev") for s in range(8) for i in range(4)]


def test_a_corpus_the_model_was_trained_without_is_tested_whole():
    data = records()
    split = make_split(data)
    parts, held_out_by = evaluation_parts(data, split, {"config": {"exclude_corpora": ["turev"]}})
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
    from ser_model.evaluation import validation_table

    validation = {"fusion": {"ravdess": {"macro_recall": 0.6}, "turev": {"macro_recall": 0.4},
                             "tess": {"macro_recall": 1.0}, SPEAKER_INDEPENDENT: {"macro_recall": 0.5}},
                  "plain": {"ravdess": {"macro_recall": 0.3}, "turev": {"macro_recall": 0.2}}}
    held_out_by = {"ravdess": "speaker", "turev": "speaker", "tess": "utterance"}
    lines = validation_table(validation, held_out_by)
    assert lines[4] == "| model | ravdess | turev | mean |"  # TESS (held out by word) and the pooled group left out
    assert lines[6:] == ["| fusion | 60.0% | 40.0% | 50.0% |", "| plain | 30.0% | 20.0% | 25.0% |"]
