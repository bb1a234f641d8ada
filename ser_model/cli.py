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
from contextlib import contextmanager
from pathlib import Path

from .audio_io import AUDIO_EXTENSIONS
from .errors import InputError
from .model_info import BUNDLED_MODEL, bundled_model

# What every command reports as one sentence: the project's input errors (bad audio, a corpus folder
# that is not one, a bad flag, a failed publish) and OS errors (a missing or unwritable path).
USER_ERRORS = (InputError, OSError)
FORMATS = ("table", "json", "csv")
# The format each `-o` extension names when `--format` is not given; a file without an extension gets
# the table. Any other extension is refused rather than guessed (a table written into out.xlsx).
OUTPUT_EXTENSIONS = {".json": "json", ".csv": "csv", ".txt": "table"}
# The commands and the modules that define them (`add_parser` and the command itself). Only the one
# that runs is imported: evaluation and training pull in scikit-learn and matplotlib, about a second
# that `predict` does not need.
COMMAND_MODULES = {"train": "ser_model.training.train", "evaluate": "ser_model.evaluation.evaluate",
                   "export": "ser_model.hub.export", "publish": "ser_model.hub.publish"}


def default_data_dir() -> str:
    """The corpora folder `train` and `evaluate` read when none is named: `$SER_DATA_DIR`, else the
    `shared/data` folder beside this repository's checkout (where the project's machines keep them)."""
    return os.environ.get("SER_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")


def model_source() -> tuple[str, str | None]:
    """The model the CLI and the app load when none is named: `$SER_MODEL` (a folder or Hub id) with
    `$SER_MODEL_REVISION`, else the bundled model (`model_info.BUNDLED_MODEL`), so that both run offline
    on a fresh clone."""
    return os.environ.get("SER_MODEL") or bundled_model(), os.environ.get("SER_MODEL_REVISION") or None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m ser_model", description="Speech emotion recognition.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_predict_parser(commands)
    if _command(argv) != "predict":
        _add_other_parsers(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _command(argv: Sequence[str]) -> str | None:
    """The command named on the command line: its first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _add_other_parsers(commands) -> None:
    """Every command but `predict`, whose modules are imported only here (see `COMMAND_MODULES`)."""
    from importlib import import_module

    for name, module in COMMAND_MODULES.items():
        options = ({"default_model": str(BUNDLED_MODEL)} if name == "publish" else
                   {"default_data_dir": default_data_dir()} if name in ("train", "evaluate") else {})
        import_module(module).add_parser(commands, **options)


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
    predict.add_argument("--output", "-o", default=None,
                         help="write to this file instead of stdout; its extension names the format unless "
                              f"--format is given: {_known_extensions()}")
    predict.add_argument("--verbose", action="store_true", help="also show the library's model-loading progress bars")
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
    """`--format` when given; else what the `--output` file's extension names (`OUTPUT_EXTENSIONS`); else
    a table. An extension with no known format is refused, with the list of those known."""
    if requested:
        return requested
    suffix = Path(output).suffix.lower() if output else ""
    if not suffix:
        return "table"
    if suffix not in OUTPUT_EXTENSIONS:
        raise InputError(f"Cannot tell the output format from '{Path(output).name}': the known extensions are "
                         f"{_known_extensions()}; rename the file or give --format {'|'.join(FORMATS)}.")
    return OUTPUT_EXTENSIONS[suffix]


def _known_extensions() -> str:
    return ", ".join(f"{ext} ({fmt})" for ext, fmt in OUTPUT_EXTENSIONS.items())


def check_writable(output: str | None) -> None:
    """Refuses an output file that cannot be written, before any audio is classified."""
    if output is None:
        return
    path = Path(output)
    folder = path.parent
    if path.is_dir():
        raise InputError(f"Cannot write the results to {output}: it is a folder; name a file in it.")
    if not folder.is_dir():
        raise InputError(f"Cannot write the results to {output}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"Cannot write the results to {output}: permission denied.")


def run_predict(args: argparse.Namespace) -> int:
    from .serving import batch_predict
    from .serving.inference import EmotionRecognizer

    fmt = output_format(args.format, args.output)
    check_writable(args.output)
    files = expand_paths(args.paths)
    if not files:
        raise InputError("There are no audio files to classify.")
    name, revision = model_source()
    model, revision = args.model or name, args.revision or revision
    # The labels come from the config alone: with --workers the model is loaded in the workers only.
    labels = EmotionRecognizer.load_labels(model, revision=revision)
    with library_progress_bars(args.verbose):
        results = batch_predict.predict(files, model, revision, batch_size=args.batch_size,
                                        max_seconds=args.max_seconds, workers=args.workers)
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


@contextmanager
def library_progress_bars(shown: bool):
    """transformers' and huggingface_hub's progress bars ("Loading weights" at every model load) shown
    only when asked (`--verbose`): a one-file call prints its result and nothing else. Restored after,
    for callers of `main` in the same process; forked workers inherit the setting."""
    from transformers.utils import logging as transformers_logging

    was_shown = transformers_logging.is_progress_bar_enabled()
    (transformers_logging.enable_progress_bar if shown else transformers_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (transformers_logging.enable_progress_bar if was_shown else transformers_logging.disable_progress_bar)()


def print_notices(results) -> None:
    """One `warning:` line on stderr per notice (a truncated WAV): the file was classified all the
    same, and stderr keeps the output, which may be a JSON or CSV file, data only."""
    for _, prediction, _ in results:
        for notice in prediction.notices if prediction else ():
            print(f"warning: {notice}", file=sys.stderr)


def _has_voice(results) -> bool:
    """Whether the model said how the voices sound (it has a voice head): then tables get that column."""
    return any(prediction is not None and prediction.voice is not None for _, prediction, _ in results)


def _voice_cell(prediction) -> str:
    """'female 93%': how the voice sounds (a perception of the audio, not a fact about the person)."""
    return f"{prediction.voice_label} {prediction.voice[prediction.voice_label]:.0%}"


def write_table(results, labels, timeline, out) -> None:
    voice = _has_voice(results)
    header = f"{'file':<40} {'emotion':<9} " + " ".join(f"{label:>{_column_width(label)}}" for label in labels)
    print(header + ("  voice sounds" if voice else ""), file=out)
    for path, prediction, error in results:
        name = _shorten(str(path), 40)
        if error:
            print(f"{name:<40} error: {error}", file=out)
            continue
        print(f"{name:<40} {prediction.label:<9} " + _percentages(prediction.probabilities, labels)
              + (f"  {_voice_cell(prediction)}" if voice else ""), file=out)
        if timeline and len(prediction.windows) > 1:
            for window in prediction.windows:
                span = f"  {window.start:.1f}-{window.end:.1f} s"
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
    voice = _has_voice(results)
    writer.writerow(["path", "start", "end", "label", *labels, *(["voice_sounds_female"] if voice else []), "error"])
    for path, prediction, error in results:
        if error:
            writer.writerow([path, "", "", "", *[""] * len(labels), *([""] if voice else []), error])
            continue
        rows = [(0.0, prediction.duration, prediction.label, prediction.probabilities, prediction.voice)]
        if timeline:
            rows += [(w.start, w.end, w.label or "silent", w.probabilities, w.voice) for w in prediction.windows]
        for start, end, label, probabilities, sounds in rows:
            values = [f"{probabilities[l]:.4f}" for l in labels] if probabilities else [""] * len(labels)
            female = ([f"{sounds['female']:.4f}" if sounds else ""] if voice else [])
            writer.writerow([path, f"{start:.2f}", f"{end:.2f}", label, *values, *female, ""])


def _column_width(label: str) -> int:
    # "100.0%" and a space need 7 characters; a longer label ("surprise") widens its column rather than being cut.
    return max(7, len(label))


def _percentages(probabilities: dict[str, float], labels: Sequence[str]) -> str:
    return " ".join(f"{f'{100 * probabilities[label]:.1f}%':>{_column_width(label)}}" for label in labels)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
