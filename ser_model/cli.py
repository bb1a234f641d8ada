"""Command line: `python -m ser_model predict PATH...` and the project's other commands.

Every command turns expected failures (bad audio, missing files, bad arguments) into one sentence
on stderr and a non-zero exit status; tracebacks are for bugs only. Expected failures are the
project's `InputError` (bad audio is its subclass `AudioError`) and `OSError` (a missing model folder,
an unreadable or unwritable path); a plain `ValueError` is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .audio_io import AUDIO_EXTENSIONS
from .errors import InputError
from .model_info import BUNDLED_MODEL, bundled_model

# What every command reports as one sentence: the project's input errors (bad audio, a corpus folder
# that is not one, a bad flag, a failed publish) and OS errors (a missing or unwritable path).
USER_ERRORS = (InputError, OSError)
FORMATS = ("table", "json", "csv")


def model_source() -> tuple[str, str | None]:
    """The model the CLI and the app load when none is named: `$SER_MODEL` (a folder or Hub id) with
    `$SER_MODEL_REVISION`, else the bundled model (`model_info.BUNDLED_MODEL`), so that both run offline
    on a fresh clone."""
    return os.environ.get("SER_MODEL") or bundled_model(), os.environ.get("SER_MODEL_REVISION") or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ser_model", description="Speech emotion recognition.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_predict_parser(commands)
    # Imported here, not at the top, so that `import ser_model.cli` stays light.
    from .evaluation import evaluate
    from .hub import export, publish
    from .training import train

    train.add_parser(commands)
    evaluate.add_parser(commands)
    export.add_parser(commands)
    publish.add_parser(commands, default_model=str(BUNDLED_MODEL))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def add_predict_parser(commands) -> None:
    predict = commands.add_parser(
        "predict", help="classify the emotion of audio files",
        description="Classify the emotion in audio files and folders (searched recursively). Audio longer than "
                    "one model window is cut into overlapping windows; --timeline shows each one.",
    )
    predict.add_argument("paths", nargs="+", help="audio files or folders")
    predict.add_argument("--model", default=None,
                         help="model folder or Hub id (default: $SER_MODEL, else the bundled model/)")
    predict.add_argument("--revision", default=None, help="Hub revision to pin (default: $SER_MODEL_REVISION)")
    predict.add_argument("--format", choices=FORMATS, default=None,
                         help="output format (default: from the --output extension, .json or .csv, else table)")
    predict.add_argument("--timeline", action="store_true", help="also print the per-window predictions")
    predict.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    predict.add_argument("--max-seconds", type=float, default=None, help="refuse files longer than this")
    predict.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    predict.add_argument("--workers", type=int, default=1,
                         help="worker processes, each with its own model copy (default 1); under torchrun or "
                              "accelerate launch the files are split across the processes and this is per process")
    predict.set_defaults(run=run_predict)


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given, and the audio files inside folders (recursively, sorted); a path that does not
    exist is kept so that it is reported as that file's error."""
    files = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                print(f"warning: no audio files in folder {raw}", file=sys.stderr)
            files.extend(found)
        else:
            files.append(path)
    return files


def output_format(requested: str | None, output: str | None) -> str:
    """`--format` when given; else what the `--output` file's extension names (`.json`, `.csv`); else a table."""
    if requested:
        return requested
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    return suffix if suffix in ("json", "csv") else "table"


def run_predict(args: argparse.Namespace) -> int:
    from .serving import batch_predict
    from .serving.inference import EmotionRecognizer

    fmt = output_format(args.format, args.output)
    files = expand_paths(args.paths)
    if not files:
        raise InputError("There are no audio files to classify.")
    name, revision = model_source()
    model, revision = args.model or name, args.revision or revision
    # The labels come from the config alone: with --workers the model is loaded in the workers only.
    labels = EmotionRecognizer.load_labels(model, revision=revision)
    results = batch_predict.predict(files, model, revision, batch_size=args.batch_size, max_seconds=args.max_seconds,
                                    workers=args.workers)
    if not batch_predict.is_main_process():
        # The main process writes the merged results and gives the status: a launcher stops every
        # process as soon as one exits with an error, which could cut the writing short.
        return 0
    failures = sum(error is not None for _, _, error in results)
    print_notices(results)

    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        {"table": write_table, "json": write_json, "csv": write_csv}[fmt](
            results, labels, args.timeline, out)
    finally:
        if args.output:
            out.close()
    if failures:
        print(f"{failures} of {len(results)} files failed", file=sys.stderr)
    return 1 if failures else 0


def print_notices(results) -> None:
    """One `warning:` line on stderr per notice (a truncated WAV): the file was classified all the
    same, and stderr keeps the output, which may be a JSON or CSV file, data only."""
    for _, prediction, _ in results:
        for notice in prediction.notices if prediction else ():
            print(f"warning: {notice}", file=sys.stderr)


def write_table(results, labels, timeline, out) -> None:
    header = f"{'file':<40} {'emotion':<9} " + " ".join(f"{label:>{_column_width(label)}}" for label in labels)
    print(header, file=out)
    for path, prediction, error in results:
        name = _shorten(str(path), 40)
        if error:
            print(f"{name:<40} error: {error}", file=out)
            continue
        print(f"{name:<40} {prediction.label:<9} " + _percentages(prediction.probabilities, labels), file=out)
        if timeline and len(prediction.windows) > 1:
            for window in prediction.windows:
                span = f"  {window.start:8.1f}-{window.end:<8.1f}s"
                if window.probabilities is None:
                    print(f"{span:<40} {'(silent)':<9}", file=out)
                else:
                    print(f"{span:<40} {window.label:<9} " + _percentages(window.probabilities, labels), file=out)


def write_json(results, labels, timeline, out) -> None:
    records = [
        {"path": str(path), "error": error} if error else {"path": str(path), **prediction.to_dict(timeline)}
        for path, prediction, error in results
    ]
    json.dump(records, out, indent=2)
    print(file=out)


def write_csv(results, labels, timeline, out) -> None:
    writer = csv.writer(out)
    writer.writerow(["path", "start", "end", "label", *labels, "error"])
    for path, prediction, error in results:
        if error:
            writer.writerow([path, "", "", "", *[""] * len(labels), error])
            continue
        rows = [(0.0, prediction.duration, prediction.label, prediction.probabilities)]
        if timeline:
            rows += [(w.start, w.end, w.label or "silent", w.probabilities) for w in prediction.windows]
        for start, end, label, probabilities in rows:
            values = [f"{probabilities[l]:.4f}" for l in labels] if probabilities else [""] * len(labels)
            writer.writerow([path, f"{start:.2f}", f"{end:.2f}", label, *values, ""])


def _column_width(label: str) -> int:
    # "100.0%" and a space need 7 characters; a longer label ("surprise") widens its column rather than being cut.
    return max(7, len(label))


def _percentages(probabilities: dict[str, float], labels: Sequence[str]) -> str:
    return " ".join(f"{f'{100 * probabilities[label]:.1f}%':>{_column_width(label)}}" for label in labels)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
