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
from ..evaluation.report import (FUSION, SPEAKER_INDEPENDENT, calibration_sentence, left_out_table, markdown_report,
                                 recipe_comparison, results_table, robustness_table, validation_markdown,
                                 voice_table)
from ..feature_extractor import SERFeatureExtractor
from ..model_info import CORPORA, DISPLAY_NAMES, LANGUAGE_NAMES, corpus_languages
from ..modeling import SERForAudioClassification

PACKAGE = Path(__file__).resolve().parents[1]  # ser_model/, where the Hub files are
CODE_FILES = ("configuration.py", "feature_extractor.py", "modeling.py")
TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
# What the card's snippets name when the export is given no Hub id (`make export` writes the bundled
# model/, which is a folder, not yet a Hub repository): a placeholder no one can take for a real id.
PLACEHOLDER_REPO_ID = "<this folder's path, or its Hub id once published>"
# The card's title when there is no Hub id to take the name from.
DEFAULT_MODEL_NAME = "ser-densenet-fusion"
# Non-commercial because every corpus it can be trained on is (RAVDESS and nEMO CC BY-NC-SA, TESS and
# TurEV-DB CC BY-NC-ND), share-alike as RAVDESS and nEMO ask of adaptations.
LICENSE = "cc-by-nc-sa-4.0"
# The measured files of an evaluation folder, copied as they are; its Markdown is rendered again from the
# JSON by `evaluation.report`, so that the shipped report and the card always show the same tables.
EVALUATION_FILES = ("report.json", "validation.json", "confusion_matrix.png", "reliability.png")
# Where the report of a model trained without one corpus (leave-one-corpus-out) is kept in the
# evaluation folder, so that exporting the exported folder again keeps it on the card.
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
                 repo_id: str | None = None, left_out_reports: list[str | Path] = ()) -> Path:
    """Writes the model folder to `output_dir` (replacing it) and returns its path.

    `repo_id` is the Hub id the model card's snippets name (`PLACEHOLDER_REPO_ID` without one).

    `left_out_reports` are evaluation folders of models trained with the same recipe but without one
    corpus each (`train --exclude_corpora`): the card reports how they do on that whole corpus, with
    those already kept in `report_dir` (`LEFT_OUT_FILE`)."""
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    model = SERForAudioClassification.from_pretrained(model_dir)
    feature_extractor = SERFeatureExtractor.from_pretrained(model_dir)
    report_dir = Path(report_dir) if report_dir else model_dir / "evaluation"
    report = _read_json(report_dir / "report.json")
    validation = _read_json(report_dir / "validation.json")
    left_out = _left_out_reports(report_dir, left_out_reports)

    with tempfile.TemporaryDirectory(dir=output_dir.parent if output_dir.parent.exists() else None) as tmp:
        staging = Path(tmp) / "model"
        model.save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        for name in ("split.json", "training.json"):
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, staging / name)
        training = _read_json(model_dir / "training.json")
        if report:
            _write_evaluation(report_dir, staging / "evaluation", report, validation, left_out)
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


def _write_evaluation(report_dir: Path, folder: Path, report: dict, validation: dict | None,
                      left_out: dict[str, dict]) -> None:
    """The model folder's `evaluation/`: the measured files, the Markdown rendered from them, and the
    leave-one-corpus-out reports."""
    folder.mkdir()
    for name in EVALUATION_FILES:
        if (report_dir / name).is_file():
            shutil.copy2(report_dir / name, folder / name)
    (folder / "report.md").write_text(markdown_report(report))
    if validation:
        (folder / "validation.md").write_text(validation_markdown(validation))
    for corpus, left_out_report in left_out.items():
        (folder / LEFT_OUT_FILE.format(corpus=corpus)).write_text(json.dumps(left_out_report, indent=2))


def _left_out_reports(report_dir: Path, folders) -> dict[str, dict]:
    """The leave-one-corpus-out reports the card shows, by corpus: those kept in `report_dir` (an exported
    folder's `evaluation/`), then those of the evaluation `folders`, which replace a kept one of the same corpus."""
    kept = sorted(report_dir.glob(LEFT_OUT_FILE.format(corpus="*")))
    return dict(_left_out_corpus(path) for path in [*kept, *(Path(folder) / "report.json" for folder in folders)])


def _left_out_corpus(report_file: Path) -> tuple[str, dict]:
    """The corpus a leave-one-corpus-out model was trained without, and its report."""
    report = _read_json(report_file)
    if report is None:
        raise InputError(f"{report_file.parent} has no {report_file.name}: run `python -m ser_model evaluate` on "
                         f"that model first")
    left_out = [corpus for corpus, how in report["held_out_by"].items() if how == "corpus"]
    if len(left_out) != 1:
        raise InputError(f"{report_file} is not of a model trained without exactly one corpus "
                         f"(corpora held out whole: {left_out or 'none'})")
    return left_out[0], report


def model_card(model: SERForAudioClassification, report: dict | None, training: dict | None,
               repo_id: str | None, validation: dict | None = None,
               left_out: dict[str, dict] | None = None) -> ModelCard:
    config: SERConfig = model.config
    model_name = repo_id.split("/")[-1] if repo_id else DEFAULT_MODEL_NAME
    card_data = ModelCardData(
        language=_languages(report) or ["en"],
        license=LICENSE,
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["speech-emotion-recognition", "audio-classification", "densenet", "mfcc", "timm", "custom_code",
              *(["whisper"] if "whisper" in config.branches else [])],
        datasets=_dataset_tags(report),
        metrics=["accuracy", "recall", "f1"],
        model_name=model_name,
        eval_results=_eval_results(report) if report else None,
    )
    num_parameters = sum(p.numel() for p in model.parameters())
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE.read_text(),
        model_name=model_name,
        repo_id=repo_id or PLACEHOLDER_REPO_ID,
        config=config,
        num_parameters=f"{num_parameters:,}",
        size_mb=f"{num_parameters * 4 / 1e6:.1f}",
        training_origin=_training_origin(training),
        speech_encoder=_speech_encoder_sentence(config, training),
        split_description=_split_description(report),
        results_table=_results_table(report, ["fusion"]),
        comparison_table=_results_table(report, [m for m in (report or {}).get("results", {}) if m != "fusion"]),
        training_description=_training_description(training),
        weakest_classes=_weakest_classes(report),
        training_data=_training_data(report),
        citations="\n".join(f"- {CORPORA[c][3]}" for c in _corpora(report) if c in CORPORA),
        languages=", ".join(LANGUAGE_NAMES[code] for code in _languages(report)) or "English",
        robustness_table=_robustness_table(report),
        voice_table=_voice_table(report),
        left_out_table=_left_out_table(left_out or {}),
        validation_tables=_validation_tables(validation),
        calibration=_calibration_sentence(report, training),
        pip_install=pip_install_line(),
    )


def _corpora(report: dict | None) -> list[str]:
    """The corpora the model was trained on (from its evaluation report; older reports name only the
    split's corpora, which were all trained on)."""
    if not report:
        return []
    return list(report.get("corpora_trained_on") or report["split"])


def _dataset_tags(report: dict | None) -> list[str] | None:
    """Every training corpus, for the card's `datasets:`: its Hub dataset id where it has one, else its name
    in lower case (ASED and TurEV-DB have no Hub dataset, and were trained on all the same)."""
    tags = [CORPORA[c][0] or DISPLAY_NAMES.get(c, c).lower() for c in _corpora(report) if c != "manifest"]
    return tags or None


def _languages(report: dict | None) -> list[str]:
    """ISO codes of the training corpora's languages, English first."""
    return corpus_languages(_corpora(report))


def _training_origin(training: dict | None) -> str:
    """'trained from scratch on CPU in 32 minutes', or how it continued from another model."""
    if not training:
        return "trained on CPU in an unrecorded number of minutes"
    minutes = f"on CPU in {training['wall_seconds'] / 60:.0f} minutes"
    if training["arguments"]["init_model"]:
        return f"trained {minutes}, continuing from an earlier model of this project (see Training)"
    return f"trained from scratch {minutes}"


def _speech_encoder_sentence(config: SERConfig, training: dict | None) -> str:
    """What the card says of the pretrained encoder inside the weights, with its credit and licence."""
    if "whisper" not in config.branches:
        return ""
    source = ((training or {}).get("arguments") or {}).get("speech_encoder") or "a Whisper checkpoint"
    name = Path(source).name if Path(source).name.startswith("whisper") else source
    encoder = config.speech_encoder
    pooling = {"concat": "the mean and standard deviation of each of its hidden states over real frames, "
                         "concatenated and standardised, feed the fusion",
               "weighted": "a learned softmax weighting of its hidden states is pooled like the other branches"}
    return (f"A third branch is a pretrained speech encoder, OpenAI Whisper's encoder ({name}: "
            f"{encoder.encoder_layers} layers, width {encoder.d_model}; Radford et al. 2022, MIT licence), run "
            f"on the window only; {pooling[config.speech_encoder_pooling]}. Its weights are inside this "
            "model's `model.safetensors`. ")


def _voice_table(report: dict | None) -> str:
    voice = (report or {}).get("voice")
    return "\n".join(voice_table(voice)) if voice else "(this model has no voice head)"


def _robustness_table(report: dict | None) -> str:
    robustness = (report or {}).get("robustness")
    return "\n".join(robustness_table(robustness)) if robustness else "(not measured for this model)"


def _left_out_table(left_out: dict[str, dict]) -> str:
    return "\n".join(left_out_table(left_out, DISPLAY_NAMES)) if left_out else "(not measured for this model)"


def _validation_tables(validation: dict | None) -> str:
    """The recipe comparison on the validation speakers (`evaluate --validation-only`)."""
    if not validation:
        return "(no comparison was exported with this model)"
    return "\n".join(recipe_comparison(validation))


def _calibration_sentence(report: dict | None, training: dict | None) -> str:
    """How the test clips' calibration came out (the evaluation report), after why the temperature was
    or was not applied (the validation speakers' figures in the training record)."""
    calibration = (report or {}).get("calibration")
    if not calibration:
        return "The probabilities are not calibrated (no temperature was fitted for this model)."
    decision = _temperature_decision((training or {}).get("calibration"))
    return " ".join(filter(None, [calibration_sentence(calibration), decision, "See `evaluation/reliability.png`."]))


def _temperature_decision(fit: dict | None) -> str | None:
    """Why a temperature was (not) applied: training keeps the fitted one only where it lowers the
    validation speakers' expected calibration error (`training.calibration.choose_temperature`)."""
    if not fit:
        return None
    change = (f"the expected calibration error of the {fit['clips']} validation clips it was fitted on from "
              f"{fit['ece_before']:.3f} to {fit['ece_after']:.3f}")
    # Records written before the rule have no "applied": every fitted temperature was applied then.
    if not fit.get("applied", True):
        return (f"A temperature of {fit.get('fitted_temperature', fit['temperature']):.2f} fitted on the validation "
                f"speakers would have raised {change}, so none is applied.")
    if fit["ece_after"] < fit["ece_before"]:
        return f"On the validation speakers the temperature lowered {change}."
    return (f"On the validation speakers it raised {change}: this model was trained before training kept a "
            f"temperature only where it lowers that error.")


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


# The metrics the card's model-index carries for each test group: (Hub metric type, its name on the card,
# the key of `report.json`). `publish.check_card` compares the card with the report through the same list.
CARD_METRICS = (("accuracy", "Accuracy", "accuracy"), ("recall", "Unweighted average recall", "macro_recall"),
                ("f1", "Macro F1", "macro_f1"))


def _eval_results(report: dict) -> list[EvalResult]:
    """The model-index entries: each test group of the fusion model (the pooled group aside), by `CARD_METRICS`."""
    results = []
    for group, r in report["results"][FUSION].items():
        if group == SPEAKER_INDEPENDENT:
            continue
        speakers = f"{r['speakers']} held-out speaker{'s' if r['speakers'] != 1 else ''}"
        dataset = {"speaker": f"{group.upper()} ({speakers})",
                   "corpus": f"{group.upper()} (a corpus left out of training, all {r['speakers']} speakers)",
                   }.get(r["held_out_by"], f"{group.upper()} (held-out words of a training speaker)")
        for metric_type, metric_name, key in CARD_METRICS:
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


def _results_table(report: dict | None, models: list[str]) -> str:
    return "\n".join(results_table(report["results"], models)) if report else "(no evaluation report)"


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
    parser.add_argument("--repo-id", default=None,
                        help="Hub id the model card's snippets name (default: a placeholder saying so)")
    parser.add_argument("--left-out-report", action="append", default=[], metavar="DIR",
                        help="evaluation folder of the same recipe trained without one corpus, e.g. "
                             "runs/loco-turev/best/evaluation: the card reports it (repeatable)")
    parser.set_defaults(run=_run)


def _run(args) -> int:
    folder = export_model(args.model, args.output, args.report, args.repo_id, args.left_out_report)
    print(f"model folder written to {folder}")
    return 0
