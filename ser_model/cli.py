"""Command line: `python -m ser_model predict PATH...` and the project's other commands.

Every command turns expected failures (bad audio, missing files, bad arguments) into one sentence
on stderr and a non-zero exit status; tracebacks are for bugs only. Expected failures are the
project's `InputError` (bad audio is its subclass `AudioError`) and `OSError` (a missing model folder,
an unreadable or unwritable path); a plain `ValueError` is a bug and keeps its traceback.

`predict` checks its arguments and paths before it imports torch and transformers (about five seconds),
so a mistyped argument is answered at once: this module imports nothing heavy at its top.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from .audio_formats import AUDIO_EXTENSIONS
from .errors import InputError
from .model_info import BUNDLED_MODEL, model_source
from .serving.wording import describe, describe_voice, percent

# What every command reports as one sentence: the project's input errors (bad audio, a corpus folder
# that is not one, a bad flag, a failed publish) and OS errors (a missing or unwritable path).
USER_ERRORS = (InputError, OSError)
FORMATS = ("table", "json", "csv")
# The format each `-o` extension names when `--format` is not given; a file without an extension gets
# the table. Any other extension is refused rather than guessed (a table written into out.xlsx).
OUTPUT_EXTENSIONS = {".json": "json", ".csv": "csv", ".txt": "table"}
# A progress bar shows on a terminal once the work has taken this long (`--progress`: always, at once), so
# that a short run prints its result and nothing else.
PROGRESS_DELAY = 1.0
# The commands and the modules that define them (`add_parser` and the command itself). Only the one
# that runs is imported: evaluation and training pull in scikit-learn and matplotlib, about a second
# that `predict` does not need.
COMMAND_MODULES = {"train": "ser_model.training.train", "crossval": "ser_model.evaluation.crossval",
                   "evaluate": "ser_model.evaluation.evaluate", "export": "ser_model.hub.export",
                   "publish": "ser_model.hub.publish"}


def default_data_dir() -> str:
    """The corpora folder `train` and `evaluate` read when none is named: `$SER_DATA_DIR`, else the
    `shared/data` folder beside this repository's checkout (where the project's machines keep them)."""
    return os.environ.get("SER_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")


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

    from . import register_auto_classes

    register_auto_classes()  # the models these commands save name their code (`auto_map`)
    for name, module in COMMAND_MODULES.items():
        options = ({"default_model": str(BUNDLED_MODEL)} if name == "publish" else
                   {"default_data_dir": default_data_dir()} if name in ("train", "evaluate", "crossval") else {})
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
    predict.add_argument("--timeline", action="store_true",
                         help="also print the per-window predictions in the table (JSON and CSV always hold them)")
    predict.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    predict.add_argument("--max-seconds", type=float, default=None, help="refuse files longer than this")
    predict.add_argument("--output", "-o", default=None,
                         help="write to this file instead of stdout; its extension names the format unless "
                              f"--format is given: {_known_extensions()}")
    predict.add_argument("--verbose", action="store_true", help="also show the library's model-loading progress bars")
    shown = predict.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no progress bar")
    shown.add_argument("--progress", action="store_true",
                       help="a progress bar on stderr even where it is not a terminal, and at once (by default it "
                            f"shows on a terminal when the work takes more than {PROGRESS_DELAY:g} s)")
    predict.add_argument("--workers", type=int, default=1,
                         help="worker processes, each with its own model copy (default 1); under torchrun or "
                              "accelerate launch the files are split across the processes and this is per process")
    predict.set_defaults(run=run_predict)


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given, and the audio files inside folders (recursively, sorted).

    Raises:
        `InputError`: a path does not exist; one sentence names every such path as it was typed.
    """
    missing = [raw for raw in paths if not Path(raw).exists()]
    if missing:
        raise InputError(f"No such file or folder: {', '.join(repr(raw) for raw in missing)}.")
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


def check_predict_arguments(args: argparse.Namespace) -> tuple[str, list[Path]]:
    """The output format and the audio files of a `predict` command line, or the sentence that refuses it:
    everything that can be checked before the model (and torch) loads."""
    fmt = output_format(args.format, args.output)
    check_writable(args.output)
    for option, value in (("--workers", args.workers), ("--batch-size", args.batch_size)):
        if value < 1:
            raise InputError(f"{option} must be at least 1, got {value}.")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise InputError(f"--max-seconds must be positive, got {args.max_seconds:g}.")
    files = expand_paths(args.paths)
    if not files:
        raise InputError("There are no audio files to classify.")
    return fmt, files


def run_predict(args: argparse.Namespace) -> int:
    fmt, files = check_predict_arguments(args)
    # Only now, the arguments being sound: these import torch and transformers.
    from .serving import batch_predict
    from .serving.inference import EmotionRecognizer
    from .serving.prediction import write_csv, write_json

    name, revision = model_source()
    model, revision = args.model or name, args.revision or revision
    # The labels come from the config alone: with --workers the model is loaded in the workers only.
    labels = EmotionRecognizer.load_labels(model, revision=revision)
    with library_progress_bars(args.verbose):
        results = batch_predict.predict(files, model, revision, batch_size=args.batch_size,
                                        max_seconds=args.max_seconds, workers=args.workers,
                                        progress=False if args.quiet else True if args.progress else None,
                                        progress_delay=0.0 if args.progress else PROGRESS_DELAY)
    if not batch_predict.is_main_process():
        # The main process writes the merged results and gives the status: a launcher stops every
        # process as soon as one exits with an error, which could cut the writing short.
        return 0
    failures = sum(error is not None for _, _, error in results)
    print_notices(results)

    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        if fmt == "json":
            write_json(results, out)
        elif fmt == "csv":
            write_csv(results, labels, out)
        else:
            write_table(results, labels, args.timeline, out)
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


def write_table(results, labels: Sequence[str], timeline: bool, out) -> None:
    """A table for a person: each file's probabilities in percent and its decision in words (`wording.describe`,
    the rule of the app's page), with how the voice sounds where the model says it; with `timeline`, a row
    per window under each file longer than one window."""
    from .serving.prediction import SILENT, has_voice

    header = f"{'file':<40} " + " ".join(f"{label:>{_column_width(label)}}" for label in labels)
    print(header + "  emotion" + ("; voice" if has_voice(results) else ""), file=out)
    for path, prediction, error in results:
        name = _shorten(str(path), 40)
        if error:
            print(f"{name:<40} error: {error}", file=out)
            continue
        words = describe(prediction.probabilities)
        if prediction.voice is not None:
            words += f"; {describe_voice(prediction.voice)}"
        print(f"{name:<40} {_percentages(prediction.probabilities, labels)}  {words}", file=out)
        if timeline and len(prediction.windows) > 1:
            for window in prediction.windows:
                span = f"  {window.start:.1f}-{window.end:.1f} s"
                if window.probabilities is None:
                    print(f"{span:<40} {'':<{_numbers_width(labels)}}  {SILENT}", file=out)
                else:
                    print(f"{span:<40} {_percentages(window.probabilities, labels)}  {describe(window.probabilities)}",
                          file=out)


def _column_width(label: str) -> int:
    # ">99.9%" and a space need 7 characters; a longer label ("surprise") widens its column rather than being cut.
    return max(7, len(label))


def _numbers_width(labels: Sequence[str]) -> int:
    return sum(map(_column_width, labels)) + len(labels) - 1


def _percentages(probabilities: dict[str, float], labels: Sequence[str]) -> str:
    return " ".join(f"{percent(probabilities[label], 1):>{_column_width(label)}}" for label in labels)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
