"""The evaluation's tables in Markdown, one renderer per table, shared by every document that shows it.

`report.md` and `validation.md` (written by `evaluate` and again by `export`) and the model card
(`hub.export`) all show the same figures: each table is rendered here, from the JSON `evaluate`
writes, and nowhere else, so the card and the reports cannot disagree in content or wording.

A renderer returns the table's lines, preceded by a caption where the table needs one, and
without a heading: headings belong to the document (the card has its own). Each takes the part of
`report.json` or `validation.json` it shows.
"""

from __future__ import annotations

# The names of the report's groups and models (keys of `report["results"]`).
SPEAKER_INDEPENDENT = "speaker-independent"
BASELINE = "mfcc_svm_baseline"
PROBE = "whisper_probe"  # the frozen-encoder probe (`evaluation.probe`)
FUSION = "fusion"
INT8 = "fusion_int8"  # the model with its Whisper branch in int8 (`serving.inference.quantize_whisper_branch`)
BFLOAT16 = "fusion_bfloat16"  # the model under bfloat16 autocast (`serving.inference.PRECISIONS`)
# The baselines, each trained on the model's training clips, by the short name their columns carry.
BASELINES = {BASELINE: "baseline", PROBE: "probe"}

SAME_TOP_EMOTION = "same top emotion as the clean clip"


def percent(value: float | None) -> str:
    """'61.7%', or '–' where there is no figure (a class or corpus absent from a group)."""
    return "–" if value is None else f"{value:.1%}"


def points(value: float | None, reference: float | None) -> str:
    """The difference of two rates in percentage points, '+20.8 pts', or '–' without a reference."""
    return "–" if value is None or reference is None else f"{100 * (value - reference):+.1f} pts"


def _row(cells) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _header(columns: list[str]) -> list[str]:
    return [_row(columns), "|---" * len(columns) + "|"]


def results_table(results: dict[str, dict], models: list[str]) -> list[str]:
    """One row per model and test group: accuracy, macro recall (UAR) and macro F1, in the order of
    `report["results"]`."""
    lines = _header(["model", "test set", "clips", "speakers", "accuracy", "macro recall (UAR)", "macro F1"])
    for name, by_group in results.items():
        if name not in models:
            continue
        lines += [_row([name, f"{group} ({r['held_out_by']})", r["clips"], r["speakers"], percent(r["accuracy"]),
                        percent(r["macro_recall"]), percent(r["macro_f1"])])
                  for group, r in by_group.items()]
    return lines


def _baselines(reports: list[dict]) -> list[str]:
    """The baselines measured in any of these `report["results"]`, in the order of `BASELINES` (a report
    written before the probe existed has the MFCC+SVM baseline only)."""
    return [name for name in BASELINES if any(name in results for results in reports)]


def _baseline_columns(names: list[str]) -> list[str]:
    return [column for name in names for column in (f"{BASELINES[name]} UAR", f"fusion − {BASELINES[name]} UAR")]


def _baseline_cells(results: dict[str, dict], names: list[str], group: str, fusion_recall: float) -> list[str]:
    """Each baseline's macro recall on the group's clips, and the fusion's lead over it."""
    recalls = [results.get(name, {}).get(group, {}).get("macro_recall") for name in names]
    return [cell for recall in recalls for cell in (percent(recall), points(fusion_recall, recall))]


def baseline_table(results: dict[str, dict]) -> list[str]:
    """The fusion model's test groups, each with every baseline's macro recall on the same clips (the
    MFCC+SVM baseline, the frozen-encoder probe) and the fusion's lead over it."""
    names = _baselines([results])
    lines = _header(["test set", "held out by", "clips", "speakers", "accuracy", "macro recall (UAR)", "macro F1",
                     *_baseline_columns(names)])
    for group, r in results[FUSION].items():
        lines.append(_row([group, r["held_out_by"], r["clips"], r["speakers"], percent(r["accuracy"]),
                           percent(r["macro_recall"]), percent(r["macro_f1"]),
                           *_baseline_cells(results, names, group, r["macro_recall"])]))
    return lines


def per_class_table(by_group: dict[str, dict], labels: list[str]) -> list[str]:
    """One row per test group, one column per class: the recall of that class ('–' where the group has
    no clip of it)."""
    return _header(["test set", *labels]) + [
        _row([group, *(percent(r["per_class_recall"][label]) for label in labels)]) for group, r in by_group.items()]


def robustness_table(robustness: dict) -> list[str]:
    """The test actors of one corpus under each channel condition (`robustness.conditions`): accuracy,
    how often the top emotion is that of the clean clip, and the clips refused as silent."""
    lines = [f"On the {robustness['clips']} clips of the {robustness['corpus'].upper()} test actors:", "",
             *_header(["condition", "accuracy", SAME_TOP_EMOTION, "refused as silent (counted wrong)"])]
    lines += [_row([name, percent(r["accuracy"]), percent(r["agreement_with_clean"]), r.get("refused", 0)])
              for name, r in robustness["conditions"].items()]
    return lines + _not_measured(robustness)


def channel_comparison_table(by_model: dict[str, dict]) -> list[str]:
    """One row per channel condition, one column per model: how often the top emotion is that of the
    clean clip and, in brackets, the accuracy (`validation.json`'s "robustness")."""
    names = list(by_model)
    first = by_model[names[0]]
    lines = [f"How often the top emotion is that of the clean clip, over {first['clips']} clips (accuracy in "
             "brackets); a clip refused as silent counts as wrong.", "", *_header(["condition", *names])]
    for condition in first["conditions"]:
        cells = [by_model[name]["conditions"][condition] for name in names]
        lines.append(_row([condition, *(f"{percent(c['agreement_with_clean'])} ({percent(c['accuracy'])})"
                                        for c in cells)]))
    return lines + _not_measured(first)


def _not_measured(robustness: dict) -> list[str]:
    missing = robustness.get("not_measured")
    return ["", f"Not measured (FFmpeg was not installed): {', '.join(missing)}."] if missing else []


def validation_table(validation: dict[str, dict], held_out_by: dict[str, str]) -> list[str]:
    """One row per model: the macro recall on each speaker-held-out corpus' validation speakers and
    their mean, the score training selects checkpoints by (`trainer.ValidationMetrics`). Corpora held
    out by word (TESS) and the pooled group are left out, as the selection score leaves them out."""
    corpora = sorted({c for by_group in validation.values() for c in by_group if held_out_by.get(c) == "speaker"})
    lines = ["Macro recall (UAR) per corpus; the mean over them is the selection score.", "",
             *_header(["model", *corpora, "mean"])]
    for name, by_group in validation.items():
        scores = [by_group[c]["macro_recall"] if c in by_group else None for c in corpora]
        present = [v for v in scores if v is not None]
        mean = sum(present) / len(present) if present else None
        lines.append(_row([name, *(percent(v) for v in scores), percent(mean)]))
    return lines


def recipe_comparison(validation_report: dict) -> list[str]:
    """The recipes compared on the validation speakers (`evaluate --validation-only`): the selection
    scores, then the channel comparison where it was measured."""
    lines = validation_table(validation_report["validation"], validation_report["held_out_by"])
    if validation_report.get("robustness"):
        lines += ["", *channel_comparison_table(validation_report["robustness"])]
    return lines


def left_out_table(left_out: dict[str, dict], corpus_names: dict[str, str] | None = None) -> list[str]:
    """One row per corpus a model was trained without (leave-one-corpus-out), from that model's
    report: its figures on all of the corpus and the baselines', trained on the same clips.
    `corpus_names` gives the names to show (the corpus key where it has none)."""
    names = _baselines([report["results"] for report in left_out.values()])
    lines = _header(["corpus left out of training", "clips", "speakers", "accuracy", "macro recall (UAR)",
                     *_baseline_columns(names)])
    for corpus, report in left_out.items():
        fusion = report["results"][FUSION][corpus]
        lines.append(_row([(corpus_names or {}).get(corpus, corpus), fusion["clips"], fusion["speakers"],
                           percent(fusion["accuracy"]), percent(fusion["macro_recall"]),
                           *_baseline_cells(report["results"], names, corpus, fusion["macro_recall"])]))
    return lines


def calibration_sentence(calibration: dict) -> str:
    """The temperature and the expected calibration error on the held-out test clips with and without it
    (a temperature of 1 is none: training keeps one only where it lowers the validation speakers' error)."""
    clips, ece = calibration["clips"], calibration["with_temperature"]["ece"]
    if calibration["temperature"] == 1.0:
        return (f"No temperature is applied: the probabilities are the model's own, and their expected "
                f"calibration error on the {clips} held-out test clips is {ece:.3f}.")
    return (f"The logits are divided by a temperature of {calibration['temperature']:.2f}, fitted on the validation "
            f"speakers, so that the probabilities mean what they say: the expected calibration error on the "
            f"{clips} held-out test clips is {ece:.3f} ({calibration['without_temperature']['ece']:.3f} without it).")


def voice_table(voice: dict) -> list[str]:
    """How often the voice head's "sounds female/male" matches the gender each corpus records for the
    speaker, on the held-out test clips; a perception of the audio, never a fact about the person."""
    rows = [_row([corpus, percent(v["accuracy"]), v["clips"], v["speakers"]])
            for corpus, v in voice.items() if corpus != "speaker_held_out"]
    pooled = voice.get("speaker_held_out")
    if pooled:
        rows.append(_row([f"**{SPEAKER_INDEPENDENT}**", f"**{percent(pooled['accuracy'])}**", pooled["clips"], ""]))
    return [*_header(["test set", "voice sounds as the corpus records", "clips", "speakers"]), *rows]


def markdown_report(report: dict) -> str:
    """`report.md`: every table of `report.json`, under its heading."""
    lines = ["# Evaluation on held-out clips", "",
             f"Trained on: {', '.join(report.get('corpora_trained_on') or report['split'])}. Speaker-independent "
             "rows pool the corpora held out by speaker (and any held out whole); a corpus split by utterance "
             "(single-speaker TESS) is held out by word and is NOT speaker-independent."]
    sections = {
        "Test: fusion against the baselines trained on the same data": baseline_table(report["results"]),
        "Test: every model": results_table(report["results"], list(report["results"])),
        "Validation speakers: the figures recipes are chosen by":
            report.get("validation") and validation_table(report["validation"], report["held_out_by"]),
        "Per-class recall of the fusion model": per_class_table(report["results"][FUSION], report["labels"]),
        "Robustness to the channel": report.get("robustness") and robustness_table(report["robustness"]),
        "Voice (sounds female or male)": report.get("voice") and voice_table(report["voice"]),
        "Calibration on held-out speakers": report.get("calibration") and [
            calibration_sentence(report["calibration"]), "", "![reliability diagram](reliability.png)"],
    }
    for heading, section in sections.items():
        if section:
            lines += ["", f"## {heading}", "", *section]
    return "\n".join([*lines, "", "![confusion matrix](confusion_matrix.png)", ""])


def validation_markdown(validation_report: dict) -> str:
    """`validation.md`: the recipe comparison on the validation speakers."""
    return "\n".join(["# Validation speakers: the figures recipes are chosen by", "",
                      *recipe_comparison(validation_report), ""])


__all__ = ["BASELINE", "BASELINES", "FUSION", "PROBE", "SPEAKER_INDEPENDENT", "baseline_table", "calibration_sentence",
           "channel_comparison_table", "left_out_table", "markdown_report", "per_class_table", "percent", "points",
           "recipe_comparison", "results_table", "robustness_table", "validation_markdown", "validation_table",
           "voice_table"]
