"""Which clips evaluation scores (the model's own corpora by split, a left-out corpus whole), and the
tables `evaluation.report` renders from the results for `report.md`, `validation.md` and the card."""

from ser_model.data.corpora import Record
from ser_model.data.splits import make_split
from ser_model.evaluation import report
from ser_model.evaluation.evaluate import evaluate_predictions, evaluation_parts
from ser_model.evaluation.report import SPEAKER_INDEPENDENT


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
    validation = {"fusion": {"ravdess": {"macro_recall": 0.6}, "turev": {"macro_recall": 0.4},
                             "tess": {"macro_recall": 1.0}, SPEAKER_INDEPENDENT: {"macro_recall": 0.5}},
                  "plain": {"ravdess": {"macro_recall": 0.3}, "turev": {"macro_recall": 0.2}}}
    held_out_by = {"ravdess": "speaker", "turev": "speaker", "tess": "utterance"}
    lines = report.validation_table(validation, held_out_by)
    assert lines[2] == "| model | ravdess | turev | mean |"  # TESS (held out by word) and the pooled group left out
    assert lines[4:] == ["| fusion | 60.0% | 40.0% | 50.0% |", "| plain | 30.0% | 20.0% | 25.0% |"]


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
    def result(agreement, accuracy):
        return {"clips": 10, "conditions": {
            "clean": {"agreement_with_clean": 1.0, "accuracy": accuracy, "refused": 0},
            "mp3_64k": {"agreement_with_clean": agreement, "accuracy": accuracy - 0.1, "refused": 0}}}

    lines = report.channel_comparison_table({"fusion": result(0.9, 0.6), "no_channel": result(0.8, 0.5)})
    assert "over 10 clips" in lines[0]
    assert lines[2:] == ["| condition | fusion | no_channel |", "|---|---|---|",
                         "| clean | 100.0% (60.0%) | 100.0% (50.0%) |",
                         "| mp3_64k | 90.0% (50.0%) | 80.0% (40.0%) |"]


def group(clips, accuracy, recall, held_out_by="speaker", speakers=2, **extra) -> dict:
    """One group of `report["results"][model]`, with the fields the tables read."""
    return {"held_out_by": held_out_by, "clips": clips, "speakers": speakers, "accuracy": accuracy,
            "macro_recall": recall, "macro_f1": recall - 0.05, **extra}


def small_report() -> dict:
    """A `report.json` of two corpora, the pooled group, a baseline and an ablation."""
    recalls = {"angry": 0.5, "sad": None}
    fusion = {"ravdess": group(40, 0.6, 0.55, per_class_recall=recalls),
              SPEAKER_INDEPENDENT: group(40, 0.6, 0.55, per_class_recall=recalls),
              "tess": group(20, 1.0, 1.0, held_out_by="utterance", speakers=1, per_class_recall=recalls)}
    return {"labels": ["angry", "sad"], "corpora_trained_on": ["ravdess", "tess"], "split": {},
            "held_out_by": {"ravdess": "speaker", "tess": "utterance"},
            "results": {"fusion": fusion, "no_mfcc": {"ravdess": group(40, 0.5, 0.45)},
                        "mfcc_svm_baseline": {"ravdess": group(40, 0.4, 0.35), "tess": group(20, 0.9, 0.95)}},
            "validation": {"fusion": {"ravdess": {"macro_recall": 0.7}}},
            "robustness": {"corpus": "ravdess", "clips": 40, "not_measured": ["mp3_64k"], "conditions": {
                "clean": {"accuracy": 0.6, "agreement_with_clean": 1.0, "refused": 0},
                "level_minus_30db": {"accuracy": 0.5, "agreement_with_clean": 0.75, "refused": 3}}},
            "calibration": {"temperature": 1.5, "clips": 40, "with_temperature": {"ece": 0.03},
                            "without_temperature": {"ece": 0.08}}}


def test_the_results_table_has_a_row_per_chosen_model_and_group():
    results = small_report()["results"]
    assert report.results_table(results, ["no_mfcc", "mfcc_svm_baseline"]) == [
        "| model | test set | clips | speakers | accuracy | macro recall (UAR) | macro F1 |", "|---" * 7 + "|",
        "| no_mfcc | ravdess (speaker) | 40 | 2 | 50.0% | 45.0% | 40.0% |",
        "| mfcc_svm_baseline | ravdess (speaker) | 40 | 2 | 40.0% | 35.0% | 30.0% |",
        "| mfcc_svm_baseline | tess (speaker) | 20 | 2 | 90.0% | 95.0% | 90.0% |"]


def test_the_baseline_table_puts_the_baseline_next_to_each_fusion_group():
    lines = report.baseline_table(small_report()["results"])
    assert lines[2:] == ["| ravdess | speaker | 40 | 2 | 60.0% | 55.0% | 50.0% | 35.0% | +20.0 pts |",
                         "| speaker-independent | speaker | 40 | 2 | 60.0% | 55.0% | 50.0% | – | – |",
                         "| tess | utterance | 20 | 1 | 100.0% | 100.0% | 95.0% | 95.0% | +5.0 pts |"]


def test_the_probe_gets_its_columns_next_to_the_baseline_and_its_rows_in_every_table():
    results = small_report()["results"]
    results[report.PROBE] = {"ravdess": group(40, 0.5, 0.45), SPEAKER_INDEPENDENT: group(40, 0.5, 0.45)}
    lines = report.baseline_table(results)
    assert lines[0].endswith("| baseline UAR | fusion − baseline UAR | probe UAR | fusion − probe UAR |")
    assert lines[2:4] == [
        "| ravdess | speaker | 40 | 2 | 60.0% | 55.0% | 50.0% | 35.0% | +20.0 pts | 45.0% | +10.0 pts |",
        "| speaker-independent | speaker | 40 | 2 | 60.0% | 55.0% | 50.0% | – | – | 45.0% | +10.0 pts |"]
    assert "| whisper_probe | ravdess (speaker) | 40 | 2 | 50.0% | 45.0% | 40.0% |" in \
        report.results_table(results, list(results))
    markdown = report.markdown_report({**small_report(), "results": results})
    assert "| 45.0% | +10.0 pts |" in markdown and "| whisper_probe | speaker-independent (speaker) |" in markdown


def test_the_left_out_table_has_the_probe_where_a_report_measured_it():
    def scores(recall, corpus="turev"):
        return {corpus: {"clips": 1735, "speakers": 6, "accuracy": recall + 0.01, "macro_recall": recall}}
    with_probe = {"results": {"fusion": scores(0.45), "mfcc_svm_baseline": scores(0.3), "whisper_probe": scores(0.5)}}
    without = {"results": {"fusion": scores(0.4, "nemo"), "mfcc_svm_baseline": scores(0.3, "nemo")}}  # an older report
    lines = report.left_out_table({"turev": with_probe, "nemo": without})
    assert lines[0].endswith("| baseline UAR | fusion − baseline UAR | probe UAR | fusion − probe UAR |")
    assert lines[2].endswith("| 45.0% | 30.0% | +15.0 pts | 50.0% | -5.0 pts |")
    assert lines[3].endswith("| 30.0% | +10.0 pts | – | – |")


def test_the_per_class_table_has_a_column_per_label_and_a_dash_for_an_absent_class():
    lines = report.per_class_table(small_report()["results"]["fusion"], ["angry", "sad"])
    assert lines[0] == "| test set | angry | sad |" and lines[3] == "| speaker-independent | 50.0% | – |"


def test_the_robustness_table_counts_refusals_and_names_the_conditions_it_could_not_measure():
    lines = report.robustness_table(small_report()["robustness"])
    assert lines[0] == "On the 40 clips of the RAVDESS test actors:"
    assert lines[4:] == ["| clean | 60.0% | 100.0% | 0 |", "| level_minus_30db | 50.0% | 75.0% | 3 |", "",
                         "Not measured (FFmpeg was not installed): mp3_64k."]


def test_the_left_out_table_shows_the_corpus_by_its_display_name():
    def scores(recall):
        return {"turev": {"clips": 1735, "speakers": 6, "accuracy": recall + 0.01, "macro_recall": recall}}
    left_out = {"turev": {"results": {"fusion": scores(0.225), "mfcc_svm_baseline": scores(0.3)}}}
    assert report.left_out_table(left_out, {"turev": "TurEV-DB"})[2] == \
        "| TurEV-DB | 1735 | 6 | 23.5% | 22.5% | 30.0% | -7.5 pts |"
    assert report.left_out_table(left_out)[2].startswith("| turev |")


def test_report_md_has_each_table_once_under_its_heading_and_skips_what_was_not_measured():
    markdown = report.markdown_report(small_report())
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## Test: fusion against the baselines trained on the same data", "## Test: every model",
                        "## Validation speakers: the figures recipes are chosen by",
                        "## Per-class recall of the fusion model", "## Robustness to the channel",
                        "## Calibration on held-out speakers"]
    assert markdown.count("| level_minus_30db |") == 1 and "temperature of 1.50" in markdown
    # An older report without validation, robustness or calibration still renders, without those sections.
    older = {k: v for k, v in small_report().items() if k not in ("validation", "robustness", "calibration",
                                                                    "corpora_trained_on")}
    headings = [line for line in report.markdown_report(older).splitlines() if line.startswith("## ")]
    assert headings == ["## Test: fusion against the baselines trained on the same data", "## Test: every model",
                        "## Per-class recall of the fusion model"]


def test_validation_md_and_the_card_share_the_recipe_comparison():
    channel = {"clips": 3, "not_measured": [],
               "conditions": {"clean": {"agreement_with_clean": 1.0, "accuracy": 0.5, "refused": 0}}}
    validation = {"held_out_by": {"ravdess": "speaker"},
                  "validation": {"fusion": {"ravdess": {"macro_recall": 0.6}}, "plain": {"ravdess": {"macro_recall": 0.5}}},
                  "robustness": {"fusion": channel, "plain": channel}}
    comparison = report.recipe_comparison(validation)
    assert "| plain | 50.0% | 50.0% |" in comparison and "| clean | 100.0% (50.0%) | 100.0% (50.0%) |" in comparison
    assert report.validation_markdown(validation).splitlines()[2:] == comparison
    assert not any(line.startswith("#") for line in comparison)
    assert report.recipe_comparison({**validation, "robustness": {}})[-1] == "| plain | 50.0% | 50.0% |"


def test_the_voice_is_scored_against_the_gender_each_corpus_records():
    from ser_model.data.corpora import Record
    from ser_model.evaluation.evaluate import voice_results
    from ser_model.serving.prediction import Prediction

    def record(corpus, speaker, gender):
        return Record(path="x", corpus=corpus, speaker=speaker, label="sad", gender=gender, utterance="u")

    def said(voice):
        return Prediction("sad", {"sad": 1.0}, 1.0, voice=None if voice is None else
                          {"female": float(voice == "female"), "male": float(voice == "male")})

    records = [record("ravdess", "ravdess:1", "male"), record("ravdess", "ravdess:2", "female"),
               record("tess", "tess:OAF", "female"), record("turev", "turev:1", None)]
    result = voice_results(records, [said("male"), said("male"), said("female"), said("female")],
                           {"ravdess": "speaker", "tess": "utterance", "turev": "speaker"})
    assert result["ravdess"] == {"accuracy": 0.5, "clips": 2, "speakers": 2} and result["tess"]["accuracy"] == 1.0
    assert "turev" not in result  # no gender recorded: not scored
    assert result["speaker_held_out"] == {"accuracy": 0.5, "clips": 2}
    assert voice_results(records, [said(None)] * 4, {}) is None  # a model without a voice head


def test_the_voice_table_has_a_row_per_corpus_and_the_pooled_speaker_held_out_row():
    from ser_model.evaluation.report import voice_table

    lines = voice_table({"ravdess": {"accuracy": 0.95, "clips": 240, "speakers": 4},
                         "speaker_held_out": {"accuracy": 0.9, "clips": 600}})
    assert "| ravdess | 95.0% | 240 | 4 |" in lines and any("90.0%" in line for line in lines)


def test_the_report_scores_the_model_in_float32_and_bfloat16_only_as_its_own_rows(tmp_path):
    from ser_model.evaluation.evaluate import _recognizers

    from .conftest import save_tiny_model

    model = str(save_tiny_model(tmp_path / "model"))
    ablation = str(save_tiny_model(tmp_path / "ablation"))
    recognizers = _recognizers(model, {"other": ablation}, bfloat16=True)
    assert {name: r.precision for name, r in recognizers.items()} == {
        report.FUSION: "float32", "other": "float32", report.BFLOAT16: "bfloat16"}
