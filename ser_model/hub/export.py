"""Builds a complete Hugging Face model folder (what ships in `model/` and what gets published).

`python -m ser_model export --model runs/cpu-small/best --report runs/cpu-small/best/evaluation`
writes weights, `config.json` (with `auto_map`), `preprocessor_config.json`, the remote-code files
copied from `ser_model/` by `save_pretrained`, the split, a training summary, the evaluation report
and a model card generated from that report, so the published metrics are always the measured ones.
"""

from __future__ import annotations

import ast
import functools
import json
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..configuration import SERConfig
from ..errors import InputError
from ..evaluation.evaluate import BASELINE, SPEAKER_INDEPENDENT, robustness_comparison_table, validation_table
from ..feature_extractor import SERFeatureExtractor
from ..modeling import SERForAudioClassification

PACKAGE = Path(__file__).resolve().parents[1]  # ser_model/, where the Hub files are
CODE_FILES = ("configuration.py", "feature_extractor.py", "modeling.py")
TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
DEFAULT_REPO_ID = "your-username/ser-densenet-fusion"
# Non-commercial because every corpus it can be trained on is (RAVDESS and nEMO CC BY-NC-SA, TESS and
# TurEV-DB CC BY-NC-ND), share-alike as RAVDESS and nEMO ask of adaptations.
LICENSE = "cc-by-nc-sa-4.0"
# What the card says of each corpus a split can hold: its Hub dataset tag (None: no canonical one),
# its language (ISO 639-1), what it contains, and its licence and citation.
CORPORA = {
    "ravdess": ("ravdess", "en", "two English sentences read by professional actors",
                "RAVDESS (CC BY-NC-SA 4.0): Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual Database of "
                "Emotional Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391."),
    "tess": ("tess", "en", "single English words in a carrier phrase",
             "TESS (CC BY-NC-ND 4.0): Dupuis K, Pichora-Fuller MK (2010) Toronto emotional speech set (TESS). "
             "University of Toronto."),
    "crema-d": ("crema-d", "en", "twelve English sentences read by actors of varied age and ethnicity",
                "CREMA-D (ODbL 1.0): Cao H, Cooper DG, Keutmann MK, Gur RC, Nenkova A, Verma R (2014) CREMA-D: "
                "Crowd-sourced emotional multimodal actors dataset. IEEE Trans. Affective Computing 5(4)."),
    "savee": ("savee", "en", "sentences read by four male British English speakers",
              "SAVEE (free for research): Haq S, Jackson PJB (2009) Speaker-dependent audio-visual emotion "
              "recognition. AVSP 2009."),
    "ased": (None, "am", "Amharic sentences read by 65 speakers, each clip accepted by at least 5 of 8 listeners",
             "ASED (no licence stated by its authors; non-commercial research use): Retta EA, Almekhlafi E, "
             "Sutcliffe R, Mhamed M, Ali H, Feng J (2022) A New Amharic Speech Emotion Dataset and Classification "
             "Benchmark. ACM Trans. Asian Low-Resour. Lang. Inf. Process. https://doi.org/10.1145/3529759."),
    "nemo": ("amu-cai/nEMO", "pl", "Polish sentences read by 9 speakers",
             "nEMO (CC BY-NC-SA 4.0): Christop I (2024) nEMO: Dataset of Emotional Speech in Polish. "
             "LREC-COLING 2024."),
    "turev": (None, "tr", "Turkish single words spoken by 6 speakers",
              "TurEV-DB (CC BY-NC-ND 4.0): Canpolat SF, Ormanoğlu Z, Zeyrek D (2020) Turkish Emotion Voice "
              "Database (TurEV-DB). SLTU-CCURL 2020, pp. 368-375."),
    "emodb": (None, "de", "ten German sentences read by ten actors",
              "EmoDB (free for research): Burkhardt F, Paeschke A, Rolfes M, Sendlmeier W, Weiss B (2005) A "
              "database of German emotional speech. Interspeech 2005."),
    "manifest": (None, None, "the user's own recordings listed in a manifest", "Own data: see its owner's terms."),
}
LANGUAGE_NAMES = {"en": "English", "am": "Amharic", "pl": "Polish", "tr": "Turkish", "de": "German"}
DISPLAY_NAMES = {"ravdess": "RAVDESS", "tess": "TESS", "crema-d": "CREMA-D", "savee": "SAVEE", "ased": "ASED",
                 "nemo": "nEMO", "turev": "TurEV-DB", "emodb": "EmoDB", "manifest": "your own recordings"}


def describe_training_data(corpora: list[str] | None) -> str:
    """'acted speech in English, Amharic, ... (RAVDESS, TESS, ASED, ...)', what the app tells people."""
    if not corpora:
        return "acted speech (its training corpora were not recorded with it)"
    languages = sorted({CORPORA[c][1] for c in corpora if CORPORA.get(c, (None, None))[1]},
                       key=lambda code: (code != "en", code))
    named = [LANGUAGE_NAMES[code] for code in languages]
    spoken = " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named) or "several languages"
    return f"acted speech in {spoken} ({', '.join(DISPLAY_NAMES.get(c, c) for c in corpora)})"


EVALUATION_FILES = ("report.json", "report.md", "confusion_matrix.png", "reliability.png", "validation.json",
                    "validation.md")
# Where `--left-out-report` copies the report of a model trained without one corpus (leave-one-corpus-out).
LEFT_OUT_FILE = "left_out_{corpus}.json"


def stale_code_files(folder: str | Path) -> list[str]:
    """The remote-code files in `folder` that are missing or differ from `ser_model/`."""
    folder = Path(folder)
    return [name for name in CODE_FILES
            if not (folder / name).is_file() or (folder / name).read_bytes() != (PACKAGE / name).read_bytes()]


def hub_requirements() -> list[str]:
    """`name==version` for each package the remote-code files import, sorted: what users must
    `pip install` to load the model from the Hub (e.g. `["numpy==2.4.6", "timm==1.0.31", "torch==2.14.1",
    "torchaudio==2.11.0", "transformers==5.23.0"]`).

    The names are read from the imports in `CODE_FILES` themselves and the versions are those installed
    here, where the folder is exported and its load check runs, so the list can drift neither from the
    code nor from what was checked.
    """
    modules = set()
    for name in CODE_FILES:
        for node in ast.walk(ast.parse((PACKAGE / name).read_text(), filename=name)):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    distributions = _installed_distributions()
    requirements = set()
    for module in modules - set(sys.stdlib_module_names) - {"__future__"}:
        if module not in distributions:
            raise RuntimeError(f"{module}, imported by the Hub code files, is not installed, so the model card "
                               f"cannot say which package provides it")
        requirements.update(f"{dist}=={metadata.version(dist)}" for dist in distributions[module])
    return sorted(requirements, key=str.lower)


@functools.cache
def _installed_distributions() -> dict[str, list[str]]:
    """Import name -> distribution names, read once per process: it scans every installed package,
    about a second here, and export, check_card and publish each ask for it."""
    return metadata.packages_distributions()


def pip_install_line() -> str:
    """The command the model card and `publish` give users: `pip install` and `hub_requirements()`."""
    return "pip install " + " ".join(hub_requirements())


def export_model(model_dir: str | Path, output_dir: str | Path, report_dir: str | Path | None = None,
                 repo_id: str = DEFAULT_REPO_ID, left_out_reports: list[str | Path] = ()) -> Path:
    """Writes the model folder to `output_dir` (replacing it) and returns its path.

    `left_out_reports` are evaluation folders of models trained with the same recipe but without one
    corpus each (`train --exclude_corpora`): the card reports how they do on that whole corpus."""
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    model = SERForAudioClassification.from_pretrained(model_dir)
    feature_extractor = SERFeatureExtractor.from_pretrained(model_dir)
    report_dir = Path(report_dir) if report_dir else model_dir / "evaluation"
    report = _read_json(report_dir / "report.json")
    validation = _read_json(report_dir / "validation.json")
    left_out = dict(_left_out_corpus(Path(folder)) for folder in left_out_reports)

    with tempfile.TemporaryDirectory(dir=output_dir.parent if output_dir.parent.exists() else None) as tmp:
        staging = Path(tmp) / "model"
        model.save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        for name in ("split.json", "training.json"):
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, staging / name)
        training = _read_json(model_dir / "training.json")
        if report:
            (staging / "evaluation").mkdir()
            for name in EVALUATION_FILES:
                if (report_dir / name).is_file():
                    shutil.copy2(report_dir / name, staging / "evaluation" / name)
            for corpus, left_out_report in left_out.items():
                (staging / "evaluation" / LEFT_OUT_FILE.format(corpus=corpus)).write_text(
                    json.dumps(left_out_report, indent=2))
        model_card(model, report, training, repo_id, validation, left_out).save(staging / "README.md")
        missing = stale_code_files(staging)
        if missing:
            raise RuntimeError(f"save_pretrained did not write the code files {missing}")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        shutil.move(str(staging), str(output_dir))
    return output_dir


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _left_out_corpus(report_dir: Path) -> tuple[str, dict]:
    """The corpus a leave-one-corpus-out model was trained without, and its report."""
    report = _read_json(report_dir / "report.json")
    if report is None:
        raise InputError(f"{report_dir} has no report.json: run `python -m ser_model evaluate` on that model first")
    left_out = [corpus for corpus, how in report["held_out_by"].items() if how == "corpus"]
    if len(left_out) != 1:
        raise InputError(f"{report_dir}/report.json is not of a model trained without exactly one corpus "
                         f"(corpora held out whole: {left_out or 'none'})")
    return left_out[0], report


def model_card(model: SERForAudioClassification, report: dict | None, training: dict | None,
               repo_id: str, validation: dict | None = None, left_out: dict[str, dict] | None = None) -> ModelCard:
    config: SERConfig = model.config
    card_data = ModelCardData(
        language=_languages(report) or ["en"],
        license=LICENSE,
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["speech-emotion-recognition", "audio-classification", "densenet", "mfcc", "timm", "custom_code"],
        datasets=[CORPORA[c][0] for c in _corpora(report) if CORPORA.get(c, (None,))[0]] or None,
        metrics=["accuracy", "recall", "f1"],
        model_name=repo_id.split("/")[-1],
        eval_results=_eval_results(report) if report else None,
    )
    num_parameters = sum(p.numel() for p in model.parameters())
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE.read_text(),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        config=config,
        num_parameters=f"{num_parameters:,}",
        size_mb=f"{num_parameters * 4 / 1e6:.1f}",
        training_origin=_training_origin(training),
        split_description=_split_description(report),
        results_table=_results_table(report, ["fusion"]),
        comparison_table=_results_table(report, [m for m in (report or {}).get("results", {}) if m != "fusion"]),
        training_description=_training_description(training),
        weakest_classes=_weakest_classes(report),
        training_data=_training_data(report),
        citations="\n".join(f"- {CORPORA[c][3]}" for c in _corpora(report) if c in CORPORA),
        languages=", ".join(LANGUAGE_NAMES[code] for code in _languages(report)) or "English",
        robustness_table=_robustness_table(report),
        left_out_table=_left_out_table(left_out or {}),
        validation_tables=_validation_tables(validation),
        calibration=_calibration_sentence(report),
        pip_install=pip_install_line(),
    )


def _corpora(report: dict | None) -> list[str]:
    """The corpora the model was trained on (from its evaluation report; older reports name only the
    split's corpora, which were all trained on)."""
    if not report:
        return []
    return list(report.get("corpora_trained_on") or report["split"])


def _languages(report: dict | None) -> list[str]:
    """ISO codes of the training corpora's languages, English first."""
    codes = {CORPORA[c][1] for c in _corpora(report) if CORPORA.get(c, (None, None))[1]}
    return sorted(codes, key=lambda code: (code != "en", code))


def _training_origin(training: dict | None) -> str:
    """'trained from scratch on CPU in 32 minutes', or how it continued from another model."""
    if not training:
        return "trained on CPU in an unrecorded number of minutes"
    minutes = f"on CPU in {training['wall_seconds'] / 60:.0f} minutes"
    if training["arguments"]["init_model"]:
        return f"trained {minutes}, continuing from an earlier model of this project (see Training)"
    return f"trained from scratch {minutes}"


def _robustness_table(report: dict | None) -> str:
    robustness = (report or {}).get("robustness")
    if not robustness:
        return "(not measured for this model)"
    rows = [f"On the {robustness['clips']} clips of the {robustness['corpus'].upper()} test actors:", "",
            "| condition | accuracy | same top emotion as the clean clip | refused as silent (counted wrong) |",
            "|---|---|---|---|"]
    rows += [f"| {name} | {r['accuracy']:.1%} | {r['agreement_with_clean']:.1%} | {r.get('refused', 0)} |"
             for name, r in robustness["conditions"].items()]
    return "\n".join(rows)


def _left_out_table(left_out: dict[str, dict]) -> str:
    if not left_out:
        return "(not measured for this model)"
    rows = ["| corpus left out of training | clips | speakers | accuracy | macro recall (UAR) | baseline UAR | "
            "fusion − baseline |", "|---|---|---|---|---|---|---|"]
    for corpus, report in left_out.items():
        fusion, baseline = report["results"]["fusion"][corpus], report["results"][BASELINE][corpus]
        rows.append(f"| {DISPLAY_NAMES.get(corpus, corpus)} | {fusion['clips']} | {fusion['speakers']} | "
                    f"{fusion['accuracy']:.1%} | {fusion['macro_recall']:.1%} | {baseline['macro_recall']:.1%} | "
                    f"{100 * (fusion['macro_recall'] - baseline['macro_recall']):+.1f} pts |")
    return "\n".join(rows)


def _validation_tables(validation: dict | None) -> str:
    """The recipe comparison on the validation speakers (`evaluate --validation-only`), without its headings."""
    if not validation:
        return "(no comparison was exported with this model)"
    lines = validation_table(validation["validation"], validation["held_out_by"])
    if validation.get("robustness"):
        lines += ["", *robustness_comparison_table(validation["robustness"])]
    # Each section's heading is followed by a blank line: dropping both leaves one blank between tables.
    kept = [line for i, line in enumerate(lines)
            if not line.startswith("#") and not (line == "" and i and lines[i - 1].startswith("#"))]
    return "\n".join(kept).strip()


def _calibration_sentence(report: dict | None) -> str:
    calibration = (report or {}).get("calibration")
    if not calibration:
        return "The probabilities are not calibrated (no temperature was fitted for this model)."
    return (f"The logits are divided by a temperature of {calibration['temperature']:.2f}, fitted on the validation "
            f"speakers, so that the probabilities mean what they say: the expected calibration error on the "
            f"{calibration['clips']} held-out test clips is {calibration['with_temperature']['ece']:.3f} "
            f"({calibration['without_temperature']['ece']:.3f} without it). See `evaluation/reliability.png`.")


def _training_data(report: dict | None) -> str:
    """'RAVDESS (two sentences read by professional actors; 14 speakers in training), ...'."""
    if not report:
        return "corpora not recorded (no evaluation report was exported)"
    parts = []
    for corpus, info in report["split"].items():
        speakers = len(info.get("speakers", {}).get("train") or [])
        if corpus not in _corpora(report):
            continue
        what = CORPORA.get(corpus, (None, None, "acted speech", ""))[2]
        parts.append(f"{corpus.upper()} ({what}; {speakers} speaker{'s' if speakers != 1 else ''} in training)")
    return ", ".join(parts)


def _eval_results(report: dict) -> list[EvalResult]:
    results = []
    for group, r in report["results"]["fusion"].items():
        if group == SPEAKER_INDEPENDENT:
            continue
        speakers = f"{r['speakers']} held-out speaker{'s' if r['speakers'] != 1 else ''}"
        dataset = {"speaker": f"{group.upper()} ({speakers})",
                   "corpus": f"{group.upper()} (a corpus left out of training, all {r['speakers']} speakers)",
                   }.get(r["held_out_by"], f"{group.upper()} (held-out words of a training speaker)")
        for metric_type, metric_name in (("accuracy", "Accuracy"), ("recall", "Unweighted average recall"),
                                         ("f1", "Macro F1")):
            key = {"accuracy": "accuracy", "recall": "macro_recall", "f1": "macro_f1"}[metric_type]
            results.append(EvalResult(task_type="audio-classification", task_name="Speech emotion recognition",
                                      dataset_type=group, dataset_name=dataset, dataset_split="test",
                                      metric_type=metric_type, metric_name=metric_name,
                                      metric_value=round(r[key], 4)))
    return results


def _split_description(report: dict | None) -> str:
    if not report:
        return "No evaluation report was exported with this model."
    lines = []
    for corpus, info in report["split"].items():
        test = info.get("speakers", {}).get("test") or []
        if report.get("held_out_by", {}).get(corpus) == "corpus":
            lines.append(f"{corpus.upper()}: left out of training altogether; all its clips are test clips.")
        elif info["held_out_by"] == "speaker":
            lines.append(f"{corpus.upper()}: {len(test)} test speaker{'s' if len(test) != 1 else ''} "
                         f"({', '.join(test)}), never in training or validation.")
        else:
            lines.append(f"{corpus.upper()}: held out by {info['held_out_by']} (its words in test are never heard in "
                         f"training, but the speaker is), so its figures are not speaker-independent.")
    return " ".join(lines)


def _weakest_classes(report: dict | None) -> str:
    """The two classes with the lowest recall on held-out speakers, as measured."""
    if not report or SPEAKER_INDEPENDENT not in report["results"]["fusion"]:
        return ""
    recalls = {label: value for label, value in report["results"]["fusion"][SPEAKER_INDEPENDENT]["per_class_recall"].items()
               if value is not None}
    weakest = sorted(recalls, key=recalls.get)[:2]
    return ("On held-out speakers the least reliable classes are " +
            " and ".join(f"{label} ({recalls[label]:.0%} recall)" for label in weakest) + " (see the confusion matrix).")


def _results_table(report: dict | None, models: list[str] | None, groups: list[str] | None = None) -> str:
    if not report:
        return "(no evaluation report)"
    rows = ["| model | test set | clips | speakers | accuracy | macro recall (UAR) | macro F1 |",
            "|---|---|---|---|---|---|---|"]
    for name, by_group in report["results"].items():
        if models and name not in models:
            continue
        for group, r in by_group.items():
            if groups and group not in groups:
                continue
            rows.append(f"| {name} | {group} ({r['held_out_by']}) | {r['clips']} | {r['speakers']} | "
                        f"{r['accuracy']:.1%} | {r['macro_recall']:.1%} | {r['macro_f1']:.1%} |")
    return "\n".join(rows)


def _training_description(training: dict | None) -> str:
    """The recipe in a paragraph, from the arguments that `training.json` records (`training.arguments.recipe`)."""
    if not training:
        return "No training record was exported with this model."
    args = training["arguments"]
    mixup = f", mixup (p={args['mixup_probability']})" if args["mixup_probability"] else ""
    channel = ", ".join(f"{name} p={args[key]}" for name, key in (
        ("lossy codec (MP3/Opus/Vorbis)", "codec_probability"), ("reverberation", "reverb_probability"),
        ("babble", "babble_probability"), ("telephone/narrow band", "narrow_band_probability"),
        ("level change", "level_probability")) if args[key])
    sampling = (f"{args['samples_per_epoch']} draws per epoch balanced over corpora (share ~ speakers ** "
                f"{args['corpus_balance_exponent']}) and speakers" if args["balanced_sampling"] else
                "clips drawn uniformly")
    loss = ("each clip scored over its own corpus' emotions (a corpus without disgust teaches little about "
            f"disgust: out-of-set weight {args['out_of_set_weight']})" if args["label_set_loss"]
            else "a plain 7-way loss")
    earlier = training.get("init_model_corpora")
    start = (("Continued from the weights of an earlier model of this project"
              + (f" trained on {' and '.join(c.upper() for c in earlier)} alone" if earlier else "")
              + f" (`--init_model {args['init_model']}`)") if args["init_model"] else "From scratch")
    average = (f" The weights evaluated and shipped are their moving average (decay {args['weight_average_decay']})."
               if args["weight_average_decay"] else "")
    return (
        f"{start} with `python -m ser_model train` (preset `{args['preset']}`, seed {args['seed']}): AdamW, "
        f"learning rate {args['learning_rate']}, batch {args['per_device_train_batch_size']}, "
        f"{args['lr_scheduler_type']} schedule, label smoothing {args['label_smoothing_factor']}, class-weighted "
        f"loss, {loss}; {sampling}. Augmentation: speed {args['speed_range']} (p={args['speed_probability']}), "
        f"white noise (p={args['noise_probability']}){', ' + channel if channel else ''}, random crops, "
        f"SpecAugment{mixup}. Early stopping on the validation speakers' macro recall, averaged over corpora "
        f"(patience {args['early_stopping_patience']}); best {training['best_validation_selection_macro_recall']:.3f} "
        f"after {training['epochs_run']:.0f} epochs, {training['wall_seconds'] / 60:.1f} minutes on "
        f"{training.get('device', 'CPU')}.{average}"
    )


def add_parser(commands) -> None:
    parser = commands.add_parser("export", help="build a complete model folder (weights, code, card, report)",
                                 description=__doc__.split("\n\n")[1])
    parser.add_argument("--model", required=True, help="trained model folder (e.g. runs/cpu-small/best)")
    parser.add_argument("--report", default=None, help="evaluation folder (default: MODEL/evaluation)")
    parser.add_argument("--output", default="model", help="folder to write (replaced; default: model)")
    parser.add_argument("--repo-id", default=DEFAULT_REPO_ID, help="Hub id the model card's snippet uses")
    parser.add_argument("--left-out-report", action="append", default=[], metavar="DIR",
                        help="evaluation folder of the same recipe trained without one corpus, e.g. "
                             "runs/loco-turev/best/evaluation: the card reports it (repeatable)")
    parser.set_defaults(run=_run)


def _run(args) -> int:
    folder = export_model(args.model, args.output, args.report, args.repo_id, args.left_out_report)
    print(f"model folder written to {folder}")
    return 0
