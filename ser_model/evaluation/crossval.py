"""`python -m ser_model crossval`: a recipe judged on every speaker, and on every corpus it never heard.

Speaker folds (`--folds K`, `data.folds.speaker_folds`) put each speaker of every corpus in one
held-out fold (TESS's one speaker is folded by word); leave-one-corpus-out (`--loco`) holds out one
whole corpus per fold. For each fold a model is trained on the other folds and its predictions of the
held-out clips are kept (out-of-fold predictions); the report gives every fold's UAR and accuracy per
corpus, their mean and spread, the pooled figures of all out-of-fold predictions, and calibration
measured on predictions no model was trained on.

What is trained per fold (`--recipe`), each from the training arguments:
- `head`: the Whisper branch's head on the frozen encoder's statistics (`training.head_training`): a
  fold takes about a minute on 2 cores, since the encoder's pass over each clip and its augmented
  copies is computed once and cached (`training.encoder_statistics`);
- `probe`: the logistic-regression baseline on the same rows;
- `mel-mfcc`: the seed's mel and MFCC branches, trained from scratch on the audio by `training.train`
  for a fixed number of epochs (tens of minutes per fold on 2 cores).
Clips are scored as serving scores them: the mean of their windows' probabilities. `--fuse` combines
the predictions of several runs (`late_fusion`).

Every fold's predictions are saved as it ends, so an interrupted run continues where it stopped when
the same command is run again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..configuration import EMOTIONS
from ..data.corpora import Record, discover
from ..data.folds import DEFAULT_FOLDS, corpus_folds, fold_keys, speaker_folds
from ..errors import InputError
from ..training.arguments import argument_parser, given_flags, parse_arguments, suppress_defaults
from ..training.calibration import clip_probabilities, fit_temperature, reliability
from ..training.encoder_statistics import EncoderStatistics
from ..training.head_training import StatisticRows, train_head
from .evaluate import SPEAKER_INDEPENDENT, evaluate_predictions

logger = logging.getLogger(__name__)

RECIPES = ("head", "probe", "mel-mfcc")
# What a fold trains without a validation part: a fixed number of epochs, its last weights kept, the
# temperature left to the out-of-fold predictions. The model trained on every speaker has no validation
# speakers left either, so the folds measure exactly its recipe.
FIXED_LENGTH = {"eval_strategy": "no", "load_best_model_at_end": False, "calibrate": False}
# The probe's regularisation: the C its validation speakers chose in the bundled model's evaluation.
PROBE_C = 0.1


def statistic_rows(records: list[Record], encoder: EncoderStatistics, copies: int, args, groups: list[str],
                   load) -> StatisticRows:
    """Every clean window and `copies` augmented copies of every clip, from the cache or computed."""
    clean, owner = encoder.windows(records, load)
    settings = args.augmentation(encoder.config.window_samples, encoder.config.sampling_rate)
    augmented = [encoder.augmented(records, load, copy, settings, args.codec_probability, groups, args.seed)
                 for copy in range(copies)]
    return StatisticRows(clean, owner, augmented)


def mel_mfcc_logits(fold_dir: Path, records: list[Record], train: np.ndarray, test: np.ndarray, audio,
                    held_out_by: dict[str, str], values: dict) -> np.ndarray:
    """Logits of every window of the `test` clips (as serving cuts them) from the seed's mel and MFCC
    branches trained from scratch on the `train` clips (`training.train`, fixed length); `audio` gives
    every clip decoded and its codec copy. The run lives in `fold_dir` and resumes there."""
    from ..data.splits import Split, record_key, save_split
    from ..feature_extractor import SERFeatureExtractor
    from ..modeling import SERForAudioClassification
    from ..windows import sliding_windows
    from ..training.train import train as train_model

    clips, coded = audio
    fold_dir.mkdir(parents=True, exist_ok=True)
    split = Split({**{record_key(records[i]): "train" for i in train}, **{record_key(records[i]): "test" for i in test}},
                  corpora={c: {"held_out_by": h} for c, h in held_out_by.items()})
    save_split(split, fold_dir / "split.json")
    arguments = parse_arguments({**values, **FIXED_LENGTH, "branches": ["mel", "mfcc"], "output_dir": str(fold_dir),
                                 "split": str(fold_dir / "split.json")})
    best = train_model(*arguments, train_audio=([clips[i] for i in train],
                                                None if coded is None else [coded[i] for i in train]))
    model = SERForAudioClassification.from_pretrained(best).eval()
    extractor = SERFeatureExtractor.from_pretrained(best)
    config = model.config
    windows = [w for i in test for _, w, _ in sliding_windows([clips[i]], config.window_samples,
                                                              config.window_hop_samples)]
    logits = []
    with torch.inference_mode():
        for start in range(0, len(windows), 32):
            inputs = extractor(windows[start:start + 32], sampling_rate=extractor.sampling_rate, return_tensors="pt",
                               check_audio=False)
            logits.append(model(**inputs).logits.numpy())
    return np.concatenate(logits)


def fold_logits(rows: StatisticRows, records: list[Record], train: np.ndarray, test: np.ndarray, recipe: str,
                config, args) -> np.ndarray:
    """Logits of every clean window of the `test` clips from a model trained on the `train` clips by the
    Whisper-branch recipes (`head`, `probe`)."""
    train_rows, test_rows = rows.of_clips(train), rows.of_clips(test)
    train_records = [records[i] for i in train]
    if recipe == "head":
        return train_head(train_rows, train_records, config, args).logits(test_rows.clean)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    label2id = config.label2id
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, class_weight="balanced", max_iter=1000))
    probe.fit(train_rows.clean, [label2id[train_records[c].label] for c in train_rows.clean_owner])
    # Log-probabilities over all classes (a class no training clip has gets none), as logits.
    log_probs = np.full((len(test_rows.clean), len(label2id)), -30.0)
    log_probs[:, probe.classes_] = probe.predict_log_proba(test_rows.clean)
    return log_probs


def run_folds(output_dir: Path, rows: StatisticRows, records: list[Record], folds: np.ndarray, recipe: str,
              config, args, train_fold=None) -> tuple[np.ndarray, np.ndarray]:
    """Window logits of every clip from the model of the fold that held it out, and each window's clip;
    each fold's logits are saved in `output_dir` and read back instead of trained again. `train_fold(fold,
    train, test)` trains a fold of a recipe that does not learn from the rows (`mel-mfcc`)."""
    logits = np.zeros((len(rows.clean), config.num_labels), dtype=np.float32)
    for fold in tqdm(sorted(set(folds.tolist())), desc=f"folds ({recipe})", unit="fold"):
        saved = output_dir / f"fold-{fold}.npy"
        test = np.flatnonzero(folds == fold)
        windows = np.flatnonzero(np.isin(rows.clean_owner, test))
        if saved.is_file():
            logits[windows] = np.load(saved)
            continue
        train = np.flatnonzero(folds != fold)
        logits[windows] = (train_fold(fold, train, test) if train_fold else
                           fold_logits(rows, records, train, test, recipe, config, args))
        np.save(output_dir / f"fold-{fold}.partial.npy", logits[windows])
        (output_dir / f"fold-{fold}.partial.npy").replace(saved)
    return logits, rows.clean_owner


# The pooled row of a leave-one-corpus-out run: `evaluate_predictions` calls it speaker-independent, which
# it is, but what it measures is recordings of a corpus never heard. Its mean over folds is the mean over corpora.
UNSEEN_CORPORA = "every corpus unseen, pooled"


def summarize(records: list[Record], folds: np.ndarray, probabilities: np.ndarray, held_out_by: dict[str, str]) -> dict:
    """Per fold and pooled metrics per corpus, with the mean and standard deviation over folds."""
    labels = list(EMOTIONS)
    predicted = [labels[i] for i in probabilities.argmax(axis=1)]
    loco = set(held_out_by.values()) == {"corpus"}

    def evaluated(members) -> dict:
        results = evaluate_predictions([records[i] for i in members], [predicted[i] for i in members], labels,
                                       held_out_by)
        if loco and SPEAKER_INDEPENDENT in results:
            results[UNSEEN_CORPORA] = {**results.pop(SPEAKER_INDEPENDENT), "held_out_by": "corpus"}
        return results

    per_fold = {int(fold): _headline(evaluated(np.flatnonzero(folds == fold))) for fold in sorted(set(folds.tolist()))}
    pooled = evaluated(np.arange(len(records)))
    spread = {}
    for group in pooled:
        values = [f[group] for f in per_fold.values() if group in f]
        spread[group] = {metric: {"mean": float(np.mean([v[metric] for v in values])),
                                  "std": float(np.std([v[metric] for v in values])), "folds": len(values)}
                         for metric in ("macro_recall", "accuracy")}
    return {"pooled": pooled, "per_fold": per_fold, "over_folds": spread}


def _headline(results: dict) -> dict:
    return {group: {k: r[k] for k in ("macro_recall", "accuracy", "clips", "speakers")} for group, r in results.items()}


def calibration(records: list[Record], folds: np.ndarray, window_logits: np.ndarray, owner: np.ndarray) -> dict:
    """Temperature fitted on out-of-fold predictions, and the expected calibration error it gives on
    predictions it was not fitted on: for each fold, the temperature fitted on the other folds'
    predictions (so that neither the model nor its temperature saw the fold's clips)."""
    label_ids = np.array([EMOTIONS.index(r.label) for r in records])
    raw = clip_probabilities(window_logits, owner)
    calibrated = np.zeros_like(raw)
    temperatures = {}
    for fold in sorted(set(folds.tolist())):
        inside = np.isin(owner, np.flatnonzero(folds != fold))
        temperature = fit_temperature(window_logits[inside], label_ids[owner[inside]], owner[inside])
        temperatures[int(fold)] = temperature
        members = np.flatnonzero(folds == fold)
        windows = np.isin(owner, members)
        calibrated[members] = clip_probabilities(window_logits[windows], np.searchsorted(members, owner[windows]),
                                                 temperature)
    return {"temperature_all_folds": fit_temperature(window_logits, label_ids[owner], owner),
            "temperature_per_fold": temperatures,
            "ece_uncalibrated": reliability(raw, label_ids)["ece"],
            "ece_temperature_from_other_folds": reliability(calibrated, label_ids)["ece"]}


def crossval(args, data_dir: str, output_dir: Path, k: int, loco: bool, copies: int, recipe: str) -> dict:
    """Runs (or continues) a cross-validation and returns its report, also written to `output_dir`."""
    if recipe != "mel-mfcc":
        # A head's matrices are small: with two OpenMP threads per operation, a 2-core machine busy with other
        # work spent its time in the threads' barriers (a fold took 13 minutes; with one thread, one minute).
        torch.set_num_threads(1)
    # What is trained per fold: the Whisper branch's head.
    model_args, data_args, training_args = parse_arguments({**args, "branches": ["whisper"],
                                                            "output_dir": str(output_dir)})
    config = model_args.model_config()
    records = discover(data_dir)
    if data_args.corpora:
        records = [r for r in records if r.corpus in data_args.corpora]
    speaker_fold, described = speaker_folds(records, k, training_args.seed)
    folds, names = (corpus_folds(records) if loco else (speaker_fold, None))
    held_out_by = ({c: "corpus" for c in names} if loco else {c: d["held_out_by"] for c, d in described.items()})
    output_dir.mkdir(parents=True, exist_ok=True)
    setting = {"recipe": recipe, "loco": loco, "folds": len(set(folds)), "copies": copies,
               "arguments": dict(args)}
    _check_same_run(output_dir, setting)
    (output_dir / "folds.json").write_text(json.dumps({**setting, "corpora": names or described,
                                                       "fold_of_clip": fold_keys(records, folds)}, indent=1))
    encoder = EncoderStatistics(model_args.speech_encoder, config.window_seconds, config.window_hop_seconds,
                                data_args.cache_dir)
    # Babble comes from clips of the same corpus and speaker fold: no held-out voice in either kind of run.
    groups = [f"{r.corpus}/{f}" for r, f in zip(records, speaker_fold)]
    rows = statistic_rows(records, encoder, copies if recipe != "mel-mfcc" else 0, training_args, groups,
                          lambda: _decode(records, data_args, config.sampling_rate))
    train_fold = None
    if recipe == "mel-mfcc":  # the rows only lay out the windows; the branches learn from the audio
        audio = _decode_and_code(records, data_args, training_args, config.sampling_rate)

        def train_mel_mfcc(fold, train, test):
            return mel_mfcc_logits(output_dir / f"fold-{fold}-run", records, train, test, audio, held_out_by,
                                   {**args, "output_dir": str(output_dir)})
        train_fold = train_mel_mfcc
    window_logits, owner = run_folds(output_dir, rows, records, np.asarray(folds), recipe, config, training_args,
                                     train_fold)
    report = {**setting, **summarize(records, np.asarray(folds), clip_probabilities(window_logits, owner),
                                     held_out_by),
              "calibration": calibration(records, np.asarray(folds), window_logits, owner)}
    (output_dir / "crossval.json").write_text(json.dumps(report, indent=2))
    (output_dir / "crossval.md").write_text(report_markdown(report))
    np.savez(output_dir / "predictions.npz", window_logits=window_logits, owner=owner, folds=np.asarray(folds))
    return report


def _decode(records: list[Record], data_args, rate: int) -> list[np.ndarray]:
    from ..data.train_data import load_clips

    return load_clips(records, rate, "decoding clips", data_args.cache_dir)


def _decode_and_code(records: list[Record], data_args, args, rate: int) -> tuple[list[np.ndarray],
                                                                              list[np.ndarray] | None]:
    """Every clip decoded and, where the recipe draws codec copies, coded once for all folds."""
    from ..data.train_data import codec_versions

    clips = _decode(records, data_args, rate)
    coded = codec_versions(records, clips, rate, args.seed, data_args.cache_dir) if args.codec_probability else None
    return clips, coded


def _check_same_run(output_dir: Path, setting: dict) -> None:
    """Refuses to continue a run folder with other settings: its saved folds would be mixed in."""
    saved = output_dir / "folds.json"
    if saved.is_file():
        before = {k: v for k, v in json.loads(saved.read_text()).items() if k in setting}
        if before != setting:
            raise InputError(f"{output_dir} holds a cross-validation with other settings ({before}); "
                             "give another --output_dir or delete it")


def report_markdown(report: dict) -> str:
    """The report as a Markdown table: per corpus, the pooled out-of-fold figures and the folds' spread."""
    kind = "leave-one-corpus-out" if report["loco"] else f"{report['folds']}-fold speaker cross-validation"
    lines = [f"# {kind}: recipe `{report['recipe']}`, {report['copies']} augmented copies", "",
             "| corpus | held out by | clips | UAR (all folds' predictions) | accuracy | UAR per fold: mean ± sd |",
             "|---|---|---|---|---|---|"]
    for group, result in report["pooled"].items():
        spread = report["over_folds"][group]["macro_recall"]
        lines.append(f"| {group} | {result['held_out_by']} | {result['clips']} | {100 * result['macro_recall']:.1f} | "
                     f"{100 * result['accuracy']:.1f} | {100 * spread['mean']:.1f} ± {100 * spread['std']:.1f} |")
    c = report["calibration"]
    lines += ["", f"Expected calibration error: {c['ece_uncalibrated']:.3f} uncalibrated, "
                  f"{c['ece_temperature_from_other_folds']:.3f} with the temperature fitted on the other folds' "
                  f"predictions (fitted on all: {c['temperature_all_folds']:.2f}).", ""]
    return "\n".join(lines)


def add_parser(commands, default_data_dir: str | None = None) -> None:
    """`python -m ser_model crossval --output_dir DIR [--folds K | --loco] [training flags]`."""
    parser = commands.add_parser("crossval", help="cross-validate a recipe over speakers or corpora",
                                 description=__doc__.split("\n\n")[0], parents=[argument_parser(add_help=False)])
    suppress_defaults(parser)  # the training flags only; the options below keep their defaults
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help=f"speaker folds (default: {DEFAULT_FOLDS})")
    parser.add_argument("--loco", action="store_true", help="leave one corpus out instead of speaker folds")
    parser.add_argument("--copies", type=int, default=2, help="augmented copies of each clip (default: 2)")
    parser.add_argument("--recipe", choices=RECIPES, default="head", help="what each fold trains (default: head)")
    parser.add_argument("--fuse", nargs="+", metavar="RUN", help="instead of training, fuse the out-of-fold "
                        "predictions of these crossval output folders (same folds), weights fitted fold by fold")
    parser.set_defaults(run=_run, default_data_dir=default_data_dir)


def _run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    flags = given_flags(args)
    output_dir = flags.pop("output_dir", None)
    if not output_dir:
        raise InputError("output_dir is required: the folder for the folds' predictions, e.g. --output_dir runs/cv")
    flags.setdefault("data_dir", args.default_data_dir)
    if args.fuse:
        from .late_fusion import fuse, fusion_markdown

        print(fusion_markdown(fuse([Path(d) for d in args.fuse], flags["data_dir"], Path(output_dir))))
        return 0
    report = crossval(flags, flags["data_dir"], Path(output_dir), args.folds, args.loco, args.copies, args.recipe)
    print(report_markdown(report))
    return 0
