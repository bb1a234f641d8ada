"""Evaluation on held-out speakers, with a classic baseline and the single-branch ablations.

`python -m ser_model evaluate --model DIR` reads the split saved with the model, classifies every
test clip the way users' audio is classified (`EmotionRecognizer.predict_waveform`), and writes
`report.json`, `report.md` and `confusion_matrix.png`. In the same run and on the same test clips
it trains and scores an MFCC-statistics + SVM baseline, and scores any ablation models given, so
the report shows whether the fusion earns its place.

Corpora split by speaker are pooled into the headline "speaker-independent" figures; corpora that
could only be split by utterance (single-speaker TESS) are reported on their own lines.
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

from .audio_io import load_audio
from .corpora import Record, discover
from .inference import EmotionRecognizer
from .metrics import classification_metrics, confusion_matrix, per_class_recall
from .splits import apply_split, load_split, subsample_parts

logger = logging.getLogger(__name__)

SPEAKER_INDEPENDENT = "speaker-independent"


def evaluate_predictions(records: list[Record], predicted: list[str], labels: list[str],
                         held_out_by: dict[str, str]) -> dict:
    """Metrics per corpus and pooled over the corpora held out by speaker."""
    label2id = {label: i for i, label in enumerate(labels)}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[record.corpus].append(i)
        if held_out_by.get(record.corpus) == "speaker":
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


def model_predictions(model_dir: str, waveforms: list[np.ndarray], desc: str) -> tuple[list[str], list[str]]:
    """Predicted labels of a saved model, and its label order."""
    recognizer = EmotionRecognizer.from_pretrained(model_dir)
    predicted = [recognizer.predict_waveform(w, recognizer.sampling_rate).label
                 for w in tqdm(waveforms, desc=desc, unit="clip")]
    return predicted, recognizer.labels


class MfccSvmBaseline:
    """The classic recipe: per-clip means and standard deviations of 40 MFCCs and their deltas
    (160 numbers), standardised, into an RBF-kernel SVM with balanced class weights, with C chosen
    on the validation speakers."""

    C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)

    def __init__(self, num_labels: int, sampling_rate: int = 16_000, n_mfcc: int = 40):
        self.num_labels = num_labels
        self.mfcc = torchaudio.transforms.MFCC(sample_rate=sampling_rate, n_mfcc=n_mfcc,
                                               melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 64})
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

        best = (-1.0, None)
        for c in self.C_GRID:
            candidate = make_pipeline(StandardScaler(), SVC(C=c, class_weight="balanced")).fit(train_x, train_y)
            score = classification_metrics(validation_y, candidate.predict(validation_x),
                                           self.num_labels)["macro_recall"]
            if score > best[0]:
                best = (score, candidate)
        self.model = best[1]
        return best[0]

    def predict(self, x) -> np.ndarray:
        return self.model.predict(x)


def evaluate(model_dir: str, data_dir: str, output_dir: str, ablations: dict[str, str] | None = None,
             split_path: str | None = None, max_clips_per_part: int | None = None) -> dict:
    """Scores the model, the ablations and the baseline on the test part of the model's split.
    `max_clips_per_part` evaluates on a spread-out subset (smoke tests only)."""
    split = load_split(split_path or Path(model_dir) / "split.json")
    parts = apply_split(discover(data_dir), split)
    if max_clips_per_part:
        parts = subsample_parts(parts, max_clips_per_part)
    held_out_by = {corpus: info["held_out_by"] for corpus, info in split.corpora.items()}
    if not parts["test"]:
        raise ValueError("the test part of the split is empty: there is nothing to evaluate on")

    def load(name):
        return [load_audio(r.path, min_seconds=0.0) for r in tqdm(parts[name], desc=f"loading {name}", unit="clip")]

    test_waves = load("test")
    results, labels = {}, None
    for name, folder in {"fusion": model_dir, **(ablations or {})}.items():
        predicted, labels = model_predictions(folder, test_waves, desc=name)
        results[name] = evaluate_predictions(parts["test"], predicted, labels, held_out_by)

    baseline = MfccSvmBaseline(len(labels))
    label2id = {label: i for i, label in enumerate(labels)}
    train_x = baseline.features(load("train"))
    validation_x = baseline.features(load("validation"))
    baseline.fit(train_x, [label2id[r.label] for r in parts["train"]],
                 validation_x, [label2id[r.label] for r in parts["validation"]])
    predicted = [labels[i] for i in baseline.predict(baseline.features(test_waves))]
    results["mfcc_svm_baseline"] = evaluate_predictions(parts["test"], predicted, labels, held_out_by)

    report = {
        "model": str(model_dir),
        "labels": labels,
        "split": {corpus: {k: v for k, v in info.items() if k != "utterances"} for corpus, info in split.corpora.items()},
        "results": results,
    }
    write_report(report, Path(output_dir))
    return report


def write_report(report: dict, output_dir: Path) -> None:
    from .plots import confusion_figure

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2))
    (output_dir / "report.md").write_text(markdown_report(report))
    fusion = report["results"]["fusion"]
    figure = confusion_figure({f"{group} ({r['clips']} clips)": np.array(r["confusion_matrix"])
                               for group, r in fusion.items() if group != SPEAKER_INDEPENDENT},
                              report["labels"], "Fusion model on held-out test clips")
    figure.savefig(output_dir / "confusion_matrix.png", dpi=110)


def markdown_report(report: dict) -> str:
    results = report["results"]
    groups = list(next(iter(results.values())).keys())
    lines = ["# Evaluation on held-out test clips", "",
             "Speaker-independent rows pool the corpora split by speaker; a corpus split by utterance "
             "(single-speaker TESS) is held out by word and is NOT speaker-independent.", "",
             "| model | test set | held out by | clips | speakers | accuracy | macro recall (UAR) | macro F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, by_group in results.items():
        for group in groups:
            r = by_group[group]
            lines.append(f"| {name} | {group} | {r['held_out_by']} | {r['clips']} | {r['speakers']} | "
                         f"{r['accuracy']:.1%} | {r['macro_recall']:.1%} | {r['macro_f1']:.1%} |")
    lines += ["", "## Per-class recall of the fusion model", "",
              "| test set | " + " | ".join(report["labels"]) + " |", "|---" * (len(report["labels"]) + 1) + "|"]
    for group, r in results["fusion"].items():
        cells = ["–" if r["per_class_recall"][label] is None else f"{r['per_class_recall'][label]:.0%}"
                 for label in report["labels"]]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    return "\n".join(lines)


def add_parser(commands) -> None:
    parser = commands.add_parser("evaluate", help="score a model on its held-out test speakers",
                                 description=__doc__.split("\n\n")[1])
    parser.add_argument("--model", required=True, help="model folder with split.json")
    parser.add_argument("--data-dir", default=None, help="corpora folder (default: ../shared/data)")
    parser.add_argument("--output-dir", default=None, help="report folder (default: MODEL/evaluation)")
    parser.add_argument("--split", default=None, help="split JSON (default: MODEL/split.json)")
    parser.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR",
                        help="also score this model, e.g. mel_only=runs/mel/best (repeatable)")
    parser.set_defaults(run=_run)


def _run(args) -> int:
    from .training import DEFAULT_DATA_DIR

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ablations = dict(item.split("=", 1) for item in args.ablation)
    output_dir = args.output_dir or str(Path(args.model) / "evaluation")
    report = evaluate(args.model, args.data_dir or str(DEFAULT_DATA_DIR), output_dir, ablations, args.split)
    print(markdown_report(report).split("## Per-class")[0])
    print(f"report written to {output_dir}")
    return 0
