"""Evaluation that says how the model generalises: new speakers, new corpora, new channels.

`python -m ser_model evaluate --model DIR` reads the split saved with the model, classifies clips
the way users' audio is classified (`EmotionRecognizer.predict_waveform`, at the model's own
sampling rate), and writes `report.json`, `report.md`, `confusion_matrix.png` and
`reliability.png`:

- **Test, per corpus**: clips of speakers held out of training and validation. A corpus the model
  was trained without (`--exclude_corpora`, leave-one-corpus-out) is scored on all of its clips
  and marked `held_out_by: corpus`. Corpora split by speaker are also pooled ("speaker-independent");
  single-speaker TESS, held out by word, is reported on its own line.
- **Baselines**: an MFCC-statistics + SVM model and the frozen-encoder probe (`ser_model.evaluation.probe`:
  a logistic regression on a pretrained Whisper encoder's pooled hidden states), each trained on the
  same training clips (the corpora the model was trained on), C chosen on the same validation speakers;
  scored on the same test clips. The probe's encoder is `--probe-encoder`, by default the model's own
  `--speech_encoder` (from its `training.json`); a model trained without one gets no probe row.
- **Validation**: the model and each `--ablation` on the validation speakers, the figures recipes
  are chosen by; `--validation-only` scores just these, never touching the test speakers, and
  compares the models under every channel condition on those speakers too.
- **Robustness** (`ser_model.evaluation.robustness`): the RAVDESS test actors through codecs, a telephone
  band, babble, a room and a quiet microphone: accuracy and top-1 agreement with the clean clip.
- **Calibration**: expected calibration error on the test speakers with and without the model's
  temperature, and the reliability diagram.

The Markdown files are rendered from the JSON by `ser_model.evaluation.report`, as the model card is.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm.auto import tqdm

from ..training.calibration import reliability, reliability_figure
from ..data.corpora import Record, discover
from ..errors import InputError
from ..audio_io import AudioError
from ..serving.inference import EmotionRecognizer
from ..serving.prediction import Prediction
from ..metrics import classification_metrics, confusion_matrix, per_class_recall
from .probe import FrozenEncoderProbe, fit_choosing_c
from .report import BASELINE, BFLOAT16, FUSION, INT8, PROBE, SPEAKER_INDEPENDENT, markdown_report, validation_markdown
from .robustness import conditions, missing_conditions
from ..data.splits import apply_split, load_split, subsample_parts
from ..data.train_data import load_clips

logger = logging.getLogger(__name__)

ROBUSTNESS_CORPUS = "ravdess"


def evaluate_predictions(records: list[Record], predicted: list[str], labels: list[str],
                         held_out_by: dict[str, str]) -> dict:
    """Metrics per corpus and pooled over the corpora held out by speaker (or by corpus)."""
    label2id = {label: i for i, label in enumerate(labels)}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[record.corpus].append(i)
        if held_out_by.get(record.corpus) in ("speaker", "corpus"):
            groups[SPEAKER_INDEPENDENT].append(i)
    results = {}
    for group, indices in sorted(groups.items()):
        y_true = [label2id[records[i].label] for i in indices]
        y_pred = [label2id[predicted[i]] for i in indices]
        results[group] = {
            "held_out_by": "speaker" if group == SPEAKER_INDEPENDENT else held_out_by.get(group, "unknown"),
            "clips": len(indices),
            "speakers": len({records[i].speaker for i in indices}),
            **classification_metrics(y_true, y_pred, len(labels)),
            "per_class_recall": per_class_recall(y_true, y_pred, labels),
            "confusion_matrix": confusion_matrix(y_true, y_pred, len(labels)).tolist(),
        }
    return results


def predict_all(recognizer: EmotionRecognizer, waveforms: list[np.ndarray], desc: str) -> list[Prediction]:
    """The recognizer's prediction for each clip, with a progress bar."""
    return [recognizer.predict_waveform(w, recognizer.sampling_rate) for w in tqdm(waveforms, desc=desc, unit="clip")]


class MfccSvmBaseline:
    """The classic recipe: per-clip means and standard deviations of MFCCs and their deltas,
    standardised, into an RBF-kernel SVM with balanced class weights, with C chosen on the
    validation speakers. The MFCCs use the model's own front-end settings."""

    C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)

    def __init__(self, num_labels: int, config):
        self.num_labels = num_labels
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=config.sampling_rate, n_mfcc=config.n_mfcc,
            melkwargs={"n_fft": config.n_fft, "hop_length": config.hop_length, "n_mels": config.n_mels})
        self.model = None

    def features(self, waveforms: list[np.ndarray]) -> np.ndarray:
        rows = []
        with torch.no_grad():
            for w in waveforms:
                mfcc = self.mfcc(torch.from_numpy(w))
                delta = torchaudio.functional.compute_deltas(mfcc)
                rows.append(torch.cat([mfcc.mean(1), mfcc.std(1), delta.mean(1), delta.std(1)]).numpy())
        return np.stack(rows)

    def fit(self, train_x, train_y, validation_x, validation_y) -> float:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        def score(predicted):
            return classification_metrics(validation_y, predicted, self.num_labels)["macro_recall"]

        _, self.model, value = fit_choosing_c(
            lambda c: make_pipeline(StandardScaler(), SVC(C=c, class_weight="balanced")), self.C_GRID,
            train_x, train_y, validation_x, score)
        return value

    def predict(self, x) -> np.ndarray:
        return self.model.predict(x)


def evaluation_parts(records: list[Record], split, training: dict | None) -> tuple[dict, dict[str, str]]:
    """The parts to score and how each corpus was held out.

    The model's own training corpora give train and validation (for the baseline); their test
    parts are the test set. A corpus the model was trained without is held out whole: all its
    clips are test clips.
    """
    cfg = (training or {}).get("arguments", {})
    chosen, excluded = cfg.get("corpora"), set(cfg.get("exclude_corpora") or [])
    trained_on = [r for r in records if r.corpus not in excluded and (chosen is None or r.corpus in chosen)]
    parts = apply_split(trained_on, split)
    held_out_by = {corpus: info["held_out_by"] for corpus, info in split.corpora.items()}
    for corpus in sorted(excluded):
        whole = [r for r in records if r.corpus == corpus]
        parts["test"] += whole
        held_out_by[corpus] = "corpus" if whole else held_out_by.get(corpus, "unknown")
    return parts, held_out_by


def model_parts(model_dir: str, data_dir: str, split_path: str | None, max_clips_per_part: int | None):
    """The model's split (saved with it unless `split_path`), the parts to score and how each corpus was held out."""
    split = load_split(split_path or Path(model_dir) / "split.json")
    parts, held_out_by = evaluation_parts(discover(data_dir), split, _training_record(model_dir))
    if max_clips_per_part:
        parts = subsample_parts(parts, max_clips_per_part)
    return split, parts, held_out_by


def _training_record(model_dir: str) -> dict | None:
    """The model folder's `training.json`, or None for a model trained before it was written."""
    training_file = Path(model_dir) / "training.json"
    return json.loads(training_file.read_text()) if training_file.is_file() else None


def probe_encoder_for(model_dir: str, requested: str | None) -> str | None:
    """The encoder of the frozen-encoder probe: `requested`, else the `speech_encoder` the model was
    trained from; None, said in the log, when there is neither."""
    encoder = requested or ((_training_record(model_dir) or {}).get("arguments") or {}).get("speech_encoder")
    if not encoder:
        logger.info("frozen-encoder probe skipped: %s records no speech_encoder it was trained from, and no "
                    "--probe-encoder was given", model_dir)
    return encoder


def evaluate(model_dir: str, data_dir: str, output_dir: str, ablations: dict[str, str] | None = None,
             split_path: str | None = None, max_clips_per_part: int | None = None,
             robustness: bool = True, cache_dir: str | None = None, probe_encoder: str | None = None,
             int8: bool = False, bfloat16: bool = False) -> dict:
    """Scores the model, the ablations and the baselines (see the module docstring) and writes the report.
    `max_clips_per_part` evaluates on a spread-out subset (smoke tests only); `cache_dir` keeps decoded
    clips as training does (`train_data.load_clips`), and the probe's features; `probe_encoder` is the
    probe's Whisper checkpoint (none: no probe; `probe_encoder_for` gives the default); `int8` adds the
    model with its speech encoder in int8 (`INT8`), `bfloat16` the model under bfloat16 autocast (`BFLOAT16`)."""
    split, parts, held_out_by = model_parts(model_dir, data_dir, split_path, max_clips_per_part)
    if not parts["test"]:
        raise InputError("the test part of the split is empty: there is nothing to evaluate on")
    recognizers = _recognizers(model_dir, ablations, int8, bfloat16)
    recognizer = recognizers[FUSION]

    def load(name):
        # The training run's cache of decoded clips, where one exists, saves decoding them again.
        return load_clips(parts[name], recognizer.sampling_rate, f"loading {name}", cache_dir)

    waves = {name: load(name) for name in ("test", "validation", "train")}
    test_predictions = predict_all(recognizer, waves["test"], FUSION)
    results = {FUSION: evaluate_predictions(parts["test"], [p.label for p in test_predictions], recognizer.labels,
                                            held_out_by)}
    results.update({name: scores(model, parts["test"], waves["test"], held_out_by, name)
                    for name, model in recognizers.items() if name != FUSION})
    results[BASELINE] = baseline_results(recognizer, parts, waves, held_out_by)
    probe = probe_results(probe_encoder, recognizer, parts, waves, held_out_by, cache_dir) if probe_encoder else None
    if probe:
        results[PROBE] = probe["test"]
    report = {
        "model": str(model_dir),
        "labels": recognizer.labels,
        "corpora_trained_on": sorted({r.corpus for r in parts["train"]}),
        "split": {corpus: {k: v for k, v in info.items() if k != "utterances"} for corpus, info in split.corpora.items()},
        "held_out_by": held_out_by,
        "results": results,
        "validation": {name: scores(model, parts["validation"], waves["validation"], held_out_by, f"{name} (validation)")
                       for name, model in recognizers.items()},
        "calibration": calibration_results(recognizer, parts["test"], test_predictions, held_out_by),
    }
    if probe:
        report["validation"][PROBE] = probe["validation"]
        report["probe"] = probe["probe"]
    voice = voice_results(parts["test"], test_predictions, held_out_by)
    if voice:
        report["voice"] = voice
    if robustness:
        report["robustness"] = robustness_on_test_actors(recognizer, parts["test"], waves["test"])
    write_report(report, Path(output_dir))
    return report


def _recognizers(model_dir: str, ablations: dict[str, str] | None, int8: bool = False,
                 bfloat16: bool = False) -> dict[str, EmotionRecognizer]:
    """The model under evaluation (`FUSION`) and each ablation in float32, the model's own precision, and
    with `int8` the model with its speech encoder quantised (`INT8`), with `bfloat16` the model under
    bfloat16 autocast as the app and the CLI serve it on CPUs that have it (`BFLOAT16`), by the name their
    rows carry."""
    recognizers = {name: EmotionRecognizer.from_pretrained(folder, precision="float32")
                   for name, folder in {FUSION: model_dir, **(ablations or {})}.items()}
    if int8:
        recognizers[INT8] = EmotionRecognizer.from_pretrained(model_dir, device="cpu", int8=True)
    if bfloat16:
        recognizers[BFLOAT16] = EmotionRecognizer.from_pretrained(model_dir, device="cpu", precision="bfloat16")
    return recognizers


def scores(recognizer: EmotionRecognizer, records: list[Record], waves: list[np.ndarray],
           held_out_by: dict[str, str], desc: str) -> dict:
    """The recognizer's metrics on these clips, per corpus and pooled (`evaluate_predictions`)."""
    predicted = [p.label for p in predict_all(recognizer, waves, desc)]
    return evaluate_predictions(records, predicted, recognizer.labels, held_out_by)


def evaluate_validation(model_dir: str, data_dir: str, output_dir: str, ablations: dict[str, str] | None = None,
                        split_path: str | None = None, cache_dir: str | None = None,
                        max_clips_per_part: int | None = None, robustness: bool = True,
                        probe_encoder: str | None = None, int8: bool = False, bfloat16: bool = False) -> dict:
    """Only the validation speakers, for the model, each ablation and the frozen-encoder probe (with a
    `probe_encoder`): comparing recipes this way never looks at the test speakers. With `robustness`,
    each model's decisions are also compared under every channel condition on the validation clips of
    the speaker-held-out corpora (the figures a channel augmentation recipe is chosen by). Writes
    `validation.json` and `validation.md`."""
    _, parts, held_out_by = model_parts(model_dir, data_dir, split_path, max_clips_per_part)
    records = parts["validation"]
    if not records:
        raise InputError("the validation part of the split is empty: there is nothing to score")
    recognizers = _recognizers(model_dir, ablations, int8, bfloat16)
    waves = load_clips(records, recognizers[FUSION].sampling_rate, "loading validation", cache_dir)
    validation = {name: scores(recognizer, records, waves, held_out_by, f"{name} (validation)")
                  for name, recognizer in recognizers.items()}
    probe = None
    if probe_encoder:
        train = load_clips(parts["train"], recognizers[FUSION].sampling_rate, "loading train", cache_dir)
        probe = probe_results(probe_encoder, recognizers[FUSION], parts, {"validation": waves, "train": train},
                              held_out_by, cache_dir)
        validation[PROBE] = probe["validation"]
    channels = {}
    if robustness:
        chosen = [i for i, r in enumerate(records) if held_out_by.get(r.corpus) == "speaker"]
        # Babble from every validation clip: the talkers are other speakers for nearly every clip.
        channels = robustness_results(recognizers, [waves[i] for i in chosen], [records[i].label for i in chosen],
                                      babble_clips=waves)
    report = {"model": str(model_dir), "ablations": ablations or {}, "held_out_by": held_out_by,
              "validation": validation, "robustness": channels}
    if probe:
        report["probe"] = probe["probe"]
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "validation.json").write_text(json.dumps(report, indent=2))
    (output / "validation.md").write_text(validation_markdown(report))
    return report


def baseline_results(recognizer, parts, waves, held_out_by) -> dict:
    """The MFCC+SVM baseline trained on the training clips of `waves`, C chosen on its validation clips:
    its results on the test clips."""
    labels = recognizer.labels
    baseline = MfccSvmBaseline(len(labels), recognizer.model.config)
    label_ids = {name: [labels.index(r.label) for r in parts[name]] for name in ("train", "validation")}
    baseline.fit(baseline.features(waves["train"]), label_ids["train"],
                 baseline.features(waves["validation"]), label_ids["validation"])
    predicted = [labels[i] for i in baseline.predict(baseline.features(waves["test"]))]
    return evaluate_predictions(parts["test"], predicted, labels, held_out_by)


def probe_results(encoder: str, recognizer, parts, waves, held_out_by, cache_dir) -> dict:
    """The frozen-encoder probe trained on the training clips of `waves`, C chosen on its validation
    clips: its results on each other part of `waves` ("validation", and "test" when there), and under
    "probe" its encoder, C and validation selection score."""
    labels = recognizer.labels
    probe = FrozenEncoderProbe(encoder, recognizer.model.config.window_seconds, len(labels), cache_dir)
    features = {name: probe.features(parts[name], clips, name) for name, clips in waves.items()}
    label_ids = {name: [labels.index(r.label) for r in parts[name]] for name in waves}
    selection = probe.fit(features["train"], label_ids["train"], features["validation"], label_ids["validation"],
                          parts["validation"], held_out_by)
    logger.info("frozen-encoder probe (%s): C=%g chosen on the validation speakers (selection score %.3f)",
                encoder, probe.c, selection)
    results = {name: evaluate_predictions(parts[name], [labels[i] for i in probe.predict(features[name])], labels,
                                          held_out_by)
               for name in waves if name != "train"}
    return {**results, "probe": {"encoder": encoder, "C": probe.c, "validation_selection_macro_recall": selection}}


def voice_results(records: list[Record], predictions: list[Prediction], held_out_by: dict[str, str]) -> dict | None:
    """How often the voice head's "sounds female/male" matches the gender the corpus records for the
    speaker, per corpus and over the speaker-held-out corpora; None for a model without a voice head
    or test clips without any recorded gender."""
    known = [(r, p.voice_label) for r, p in zip(records, predictions) if r.gender and p.voice_label]
    if not known:
        return None
    by_corpus, speakers = defaultdict(list), defaultdict(set)
    for record, said in known:
        by_corpus[record.corpus].append(said == record.gender)
        speakers[record.corpus].add(record.speaker)
    result = {corpus: {"accuracy": float(np.mean(hits)), "clips": len(hits), "speakers": len(speakers[corpus])}
              for corpus, hits in sorted(by_corpus.items())}
    unheard = [hit for corpus, hits in by_corpus.items() if held_out_by.get(corpus) == "speaker" for hit in hits]
    if unheard:
        result["speaker_held_out"] = {"accuracy": float(np.mean(unheard)), "clips": len(unheard)}
    return result


def calibration_results(recognizer, records, predictions: list[Prediction], held_out_by) -> dict:
    """ECE on the clips of held-out speakers (and corpora), with the model's temperature and without.

    The probabilities at temperature 1 follow from the calibrated ones without running the model
    again: softmax(z / T) ** T is proportional to softmax(z)."""
    labels, temperature = recognizer.labels, recognizer.model.config.calibration_temperature
    chosen = [i for i, r in enumerate(records) if held_out_by.get(r.corpus) in ("speaker", "corpus")]
    calibrated = np.array([[predictions[i].probabilities[label] for label in labels] for i in chosen])
    truth = np.array([labels.index(records[i].label) for i in chosen])
    uncalibrated = calibrated ** temperature
    uncalibrated /= uncalibrated.sum(axis=1, keepdims=True)
    return {"temperature": temperature, "clips": len(chosen),
            "without_temperature": reliability(uncalibrated, truth),
            "with_temperature": reliability(calibrated, truth)}


def robustness_on_test_actors(recognizer, records: list[Record], waves: list[np.ndarray]) -> dict | None:
    """The robustness table of the report: the RAVDESS test actors, with babble drawn from the test
    clips of the other corpora (from the RAVDESS clips themselves where there are none)."""
    indices = [i for i, r in enumerate(records) if r.corpus == ROBUSTNESS_CORPUS]
    if not indices:
        return None
    others = [w for w, r in zip(waves, records) if r.corpus != ROBUSTNESS_CORPUS] or [waves[i] for i in indices]
    result = robustness_results({FUSION: recognizer}, [waves[i] for i in indices],
                                [records[i].label for i in indices], others)[FUSION]
    return {"corpus": ROBUSTNESS_CORPUS, **result}


def robustness_results(recognizers: dict, clips: list[np.ndarray], truth: list[str],
                       babble_clips: list[np.ndarray]) -> dict[str, dict]:
    """For each recognizer, name to result: accuracy, top-1 agreement with the clean clip and clips
    refused as silent under each condition (`robustness.conditions`), babble mixed from `babble_clips`.
    Each condition degrades the clips once for every recognizer: the codecs are the slow part."""
    tables, clean = {name: {} for name in recognizers}, {}
    for condition, channel in conditions(babble_clips).items():
        degraded = [channel(c) for c in tqdm(clips, desc=f"channel: {condition}", unit="clip")]
        for name, recognizer in recognizers.items():
            predicted = [_label_or_refused(recognizer, d) for d in tqdm(degraded, desc=f"{name}: {condition}",
                                                                        unit="clip")]
            clean.setdefault(name, predicted)
            tables[name][condition] = {
                "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])),
                "agreement_with_clean": float(np.mean([p == c for p, c in zip(predicted, clean[name])])),
                "refused": sum(p is None for p in predicted)}
    return {name: {"clips": len(clips), "conditions": table, "not_measured": missing_conditions()}
            for name, table in tables.items()}


def _label_or_refused(recognizer: EmotionRecognizer, waveform: np.ndarray) -> str | None:
    """The top emotion, or None where the recognizer refuses the clip as a user's file would be refused
    (e.g. when it finds no speech in it): that counts as wrong."""
    try:
        return recognizer.predict_waveform(waveform, recognizer.sampling_rate).label
    except AudioError:
        return None


def write_report(report: dict, output_dir: Path) -> None:
    from ..serving.plots import confusion_figure

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2))
    (output_dir / "report.md").write_text(markdown_report(report))
    fusion = report["results"][FUSION]
    figure = confusion_figure({f"{group} ({r['clips']} clips)": np.array(r["confusion_matrix"])
                               for group, r in fusion.items() if group != SPEAKER_INDEPENDENT},
                              report["labels"], "Fusion model on held-out test clips")
    figure.savefig(output_dir / "confusion_matrix.png", dpi=110)
    calibration = report["calibration"]
    if calibration["clips"]:
        reliability_figure({"without temperature": calibration["without_temperature"],
                            f"temperature {calibration['temperature']:.2f}": calibration["with_temperature"]},
                           "Reliability on held-out speakers").savefig(output_dir / "reliability.png", dpi=110)


def add_parser(commands, default_data_dir: str | None = None) -> None:
    parser = commands.add_parser("evaluate", help="score a model on its held-out test speakers",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder with split.json")
    parser.add_argument("--data-dir", default=default_data_dir, required=default_data_dir is None,
                        help="corpora folder (default: %(default)s)")
    parser.add_argument("--output-dir", default=None, help="report folder (default: MODEL/evaluation)")
    parser.add_argument("--split", default=None, help="split JSON (default: MODEL/split.json)")
    parser.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR",
                        help="also score this model, e.g. mel_only=runs/mel/best (repeatable)")
    parser.add_argument("--no-robustness", action="store_true", help="skip the channel conditions (the robustness tables)")
    parser.add_argument("--validation-only", action="store_true",
                        help="score the model and ablations on the validation speakers only (to compare recipes "
                             "without looking at the test speakers); writes validation.json and validation.md")
    parser.add_argument("--cache-dir", default="runs/cache",
                        help="decoded clips and the probe's features kept between runs, shared with training "
                             "(empty to turn off)")
    parser.add_argument("--probe-encoder", default=None, metavar="NAME_OR_PATH",
                        help="Whisper checkpoint of the frozen-encoder probe, a Hub id or a folder (default: the "
                             "speech_encoder the model was trained from, per its training.json)")
    parser.add_argument("--no-probe", action="store_true", help="skip the frozen-encoder probe (the second baseline)")
    parser.add_argument("--int8", action="store_true", help=f"also score the model with its speech encoder's linear "
                        f"layers in dynamic int8 (the rows '{INT8}'; what quantisation costs)")
    parser.add_argument("--bfloat16", action="store_true", help=f"also score the model under bfloat16 autocast, as the "
                        f"app and the CLI serve it on CPUs with bfloat16 in hardware (the rows '{BFLOAT16}')")
    parser.set_defaults(run=_run)


def _run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ablations = dict(item.split("=", 1) for item in args.ablation)
    output_dir = args.output_dir or str(Path(args.model) / "evaluation")
    probe_encoder = None if args.no_probe else probe_encoder_for(args.model, args.probe_encoder)
    if args.validation_only:
        report = evaluate_validation(args.model, args.data_dir, output_dir, ablations, args.split, args.cache_dir or None,
                                     robustness=not args.no_robustness, probe_encoder=probe_encoder, int8=args.int8,
                                     bfloat16=args.bfloat16)
        print((Path(output_dir) / "validation.md").read_text())
        print(f"written to {output_dir}/validation.json and validation.md")
        return 0
    report = evaluate(args.model, args.data_dir, output_dir, ablations, args.split, robustness=not args.no_robustness,
                      cache_dir=args.cache_dir or None, probe_encoder=probe_encoder, int8=args.int8,
                      bfloat16=args.bfloat16)
    print(markdown_report(report).split("## Per-class")[0])
    print(f"report written to {output_dir}")
    return 0
