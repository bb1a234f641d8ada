"""Helpers shared by the benchmark scripts: loading the model, finding real clips, describing the machine.

The benchmarks measure CPU inference (the goals are stated for 2 CPU cores), so models are loaded
on the CPU even where a GPU exists.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# A benchmark measures the checkout it sits in, not whichever copy of `ser_model` is installed:
# `python bench/x.py` puts bench/ on sys.path, so the repository root goes in front of it.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from transformers.utils import logging as transformers_logging  # noqa: E402

from ser_model import SERConfig, SERFeatureExtractor, SERForAudioClassification  # noqa: E402
from ser_model.cli import default_data_dir  # noqa: E402
from ser_model.model_info import BUNDLED_MODEL as MODEL_FOLDER  # noqa: E402
from ser_model.serving.inference import EmotionRecognizer, available_cores  # noqa: E402

# The bundled model and the corpora folder where the CLI and the tests find them (SER_DATA_DIR moves
# the corpora); the path is put on sys.path above, so these are this checkout's.
BUNDLED_MODEL = MODEL_FOLDER
DEFAULT_DATA_DIR = Path(default_data_dir())
# The preset the project trains by default; a random model of it stands in when model/ is missing.
DEFAULT_PRESET = "cpu-small"
# "Loading weights" bars would interleave with the benchmarks' own progress bars and tables.
transformers_logging.disable_progress_bar()
# CPU time other processes may use before the figures are flagged as unrepresentative.
BUSY_WARNING_FRACTION = 0.25


def add_common_arguments(parser, model: bool = True) -> None:
    """`--model` (unless `model` is False), `--threads` and `--data`."""
    if model:
        parser.add_argument("--model", default=None,
                            help="model folder or Hub id (default: $SER_MODEL, else the bundled model/; a randomly "
                                 f"initialised '{DEFAULT_PRESET}' model when model/ does not exist)")
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="torch intra-op threads (default: all cores, %(default)s here)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder holding ravdess/ and tess/ (default: $SER_DATA_DIR, else %(default)s)")


def add_run_count_arguments(parser, counts: dict[str, tuple[int, int, str]]) -> None:
    """`--quick` plus one option per run count: `counts` maps a name such as `repeats` to
    `(full default, --quick default, help)`. Resolve the values with `resolve_run_counts`."""
    parser.add_argument("--quick", action="store_true",
                        help="a quick check: the --quick defaults below (figures too few to report)")
    for name, (full, quick, text) in counts.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                            help=f"{text} (default {full}; {quick} with --quick)")


def resolve_run_counts(parser, args, counts: dict[str, tuple[int, int, str]], minimum: dict[str, int]) -> None:
    """Fills the run counts left unset with their full or `--quick` default and checks their minimum."""
    for name, (full, quick, _) in counts.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        lowest = minimum.get(name, 1)
        if getattr(args, name) < lowest:
            parser.error(f"--{name.replace('_', '-')} must be at least {lowest}, got {getattr(args, name)}")


def check_threads_and_batch_sizes(parser, args) -> None:
    """Ends with argparse's usage error when --threads or a --batch-sizes entry is below 1."""
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if any(b < 1 for b in args.batch_sizes):
        parser.error(f"every batch size must be at least 1, got {args.batch_sizes}")


def resolve_model(name_or_path: str | None) -> str | None:
    """`--model`, else `$SER_MODEL`, else the bundled model/; None (a random model) when model/ does not
    exist yet. A missing folder given explicitly is `EmotionRecognizer.from_pretrained`'s clear `OSError`."""
    chosen = name_or_path or os.environ.get("SER_MODEL")
    if chosen:
        return chosen
    return str(BUNDLED_MODEL) if BUNDLED_MODEL.is_dir() else None


def load_recognizer(model: str | None, **kwargs) -> tuple[EmotionRecognizer, str]:
    """Loads `model` (from `resolve_model`), or builds a random default-preset model when it is None.

    Returns the recognizer and a line describing what was loaded.
    """
    if model is None:
        config = SERConfig.from_preset(DEFAULT_PRESET)
        recognizer = EmotionRecognizer(SERForAudioClassification(config), SERFeatureExtractor.from_config(config),
                                       **kwargs)
        description = (f"random '{DEFAULT_PRESET}' model ({BUNDLED_MODEL} does not exist): weights are random, "
                       "which does not change the speed")
    else:
        recognizer = EmotionRecognizer.from_pretrained(model, device="cpu", **kwargs)
        description = str(model)
    return recognizer, f"{description}; {count_parameters(recognizer.model) / 1e6:.2f} M parameters"


def model_to_serve(name_or_path: str | None, workdir: Path) -> tuple[str, str]:
    """The model folder or Hub id an app server loads, and a line describing it.

    The server loads only saved models, so when model/ does not exist yet the random default-preset
    model is saved under `workdir`.
    """
    model = resolve_model(name_or_path)
    if model is not None:
        return model, model
    recognizer, line = load_recognizer(None)
    folder = workdir / "model"
    recognizer.model.save_pretrained(folder)
    recognizer.feature_extractor.save_pretrained(folder)
    return str(folder), line


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_feature_extractor(model: str | None) -> tuple[SERFeatureExtractor, str]:
    """The feature extractor of `model` (from `resolve_model`), or the default preset's when it is None."""
    if model is None:
        config = SERConfig.from_preset(DEFAULT_PRESET)
        return SERFeatureExtractor.from_config(config), f"'{DEFAULT_PRESET}' defaults ({BUNDLED_MODEL} does not exist)"
    return SERFeatureExtractor.from_pretrained(model), f"{model} (preprocessor_config.json)"


def ravdess_clips(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "ravdess").glob("Actor_*/*.flac"))


def tess_clips(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "tess").glob("*.flac"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_busy_fraction(interval: float = 1.0) -> float | None:
    """Share of all CPUs' time spent busy over `interval` seconds (from /proc/stat), None where unreadable."""

    def snapshot():
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = snapshot()
        time.sleep(interval)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return None if elapsed <= 0 else 1.0 - (idle1 - idle0) / elapsed


def environment_lines() -> list[str]:
    """The facts a figure depends on; also warns when other processes are using the CPU."""
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}",
        f"cpu: {cpu_model()}; {available_cores()} cores available (os.cpu_count() = {os.cpu_count()})",
        f"torch threads: {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op",
    ]
    busy = cpu_busy_fraction()
    if busy is not None:
        lines.append(f"cpu busy before start: {100 * busy:.0f}%")
        if busy > BUSY_WARNING_FRACTION:
            lines.append("WARNING: other processes are using the CPU; these figures are not representative")
    return lines


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def run_script(main) -> None:
    """Exits with `main()`'s status; Ctrl-C ends a benchmark with one line, not a traceback."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
