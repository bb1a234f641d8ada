"""Long-audio inference: speed and peak memory of `EmotionRecognizer.predict_file` on 10 and 60 minutes.

    python bench/long_audio.py                   # 10 and 60 minutes
    python bench/long_audio.py --minutes 1 2     # a quick check
    python bench/long_audio.py --minutes 10 --surfaces   # also through the CLI and the app

Real speech (RAVDESS and TESS clips, alternating, cycling when they run out) is written incrementally
to a temporary 16 kHz PCM_16 WAV per length. Each file is then classified in a fresh Python process,
so each peak RSS belongs to one run; that process also reports its RSS after imports and model loading,
before predicting. Wall time covers `predict_file` only (decoding, windowing, features, model).

`--surfaces` also times each file the ways people send it: `python -m ser_model predict FILE` (the whole
command, and the same command on a 3 s clip, whose time is the start-up: the difference is the
classification), and the app's `/predict` through `gradio_client` on `python app.py` started once
(`_app_server.py`), the model already loaded. Both run with their own thread settings, as users get them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
import soundfile as sf
import torch
from _common import (add_common_arguments, environment_lines, load_recognizer, ravdess_clips, resolve_model,
                     run_script, tess_clips)
from tqdm import tqdm

from ser_model.audio_io import AudioError, audio_duration, load_audio

SAMPLING_RATE = 16_000
# Issue 24: at least 50 times real time on 2 idle cores, for predict_file, the CLI and the app alike.
GOAL_REAL_TIME = 50.0
GOAL_PEAK_BYTES = 1.5e9
GOAL_FLAT_FRACTION = 0.10
# Marks the child's result line on stdout, so nothing else printed there can be mistaken for it.
RESULT_PREFIX = "LONG_AUDIO_RESULT "


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.child is not None:
        return run_child(args)
    return run_parent(args)


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0],
                        help="lengths of audio to classify, in minutes (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="windows per forward pass (default: EmotionRecognizer's own)")
    parser.add_argument("--surfaces", action="store_true",
                        help="also time each file through the CLI and through the app's /predict")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--random-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if any(m <= 0 for m in args.minutes):
        parser.error(f"every --minutes must be positive, got {args.minutes}")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def run_parent(args) -> int:
    # The children's progress bars share the terminal: print each line as soon as it is complete.
    sys.stdout.reconfigure(line_buffering=True)
    minutes = sorted(set(args.minutes))
    torch.set_num_threads(args.threads)
    # Loaded once here only to fail before writing an hour of audio when the model cannot be loaded.
    try:
        model = resolve_model(args.model)
        load_recognizer(model)
    except (OSError, ValueError) as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 2
    print("== long audio: predict_file, one fresh process per length ==")
    for line in environment_lines():
        print(line)
    print(f"threads per run: {args.threads}")

    results = []
    with tempfile.TemporaryDirectory(prefix="ser-bench-long-audio-") as folder:
        paths = [Path(folder) / f"speech_{m:g}min.wav" for m in minutes]
        print(f"audio: {write_speech_files(args.data, paths, [m * 60 for m in minutes])}")
        for m, path in zip(minutes, paths):
            result = predict_in_child(path, model, args)
            if result is None:
                print(f"error: the run on {m:g} minutes failed (see above)", file=sys.stderr)
                return 1
            results.append((m, result))
        print()
    print(f"model: {results[0][1]['model']}")
    print_table(results)
    print_goals(results)
    if args.surfaces:
        print()
        time_surfaces(args, minutes, model)
    return 0


def clip_paths(data_dir: Path) -> list[Path]:
    """RAVDESS and TESS clips alternating, so the file mixes speakers, corpora and emotions throughout."""
    ravdess, tess = ravdess_clips(data_dir), tess_clips(data_dir)
    mixed = itertools.chain.from_iterable(itertools.zip_longest(ravdess, tess))
    return [p for p in mixed if p is not None]


def clip_stream(data_dir: Path):
    """Endless waveforms: the real clips in turn, cycling; synthetic bursts when there are none."""
    paths = clip_paths(data_dir)
    if not paths:
        rng = np.random.default_rng(0)
        while True:
            # 3 s of amplitude-modulated noise, then 0.5 s of silence: a stand-in with speech-like pauses.
            t = np.arange(3 * SAMPLING_RATE) / SAMPLING_RATE
            burst = 0.1 * rng.standard_normal(len(t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            yield np.concatenate([burst, np.zeros(SAMPLING_RATE // 2)]).astype(np.float32)
    for path in itertools.cycle(paths):
        try:
            yield load_audio(path, SAMPLING_RATE)
        except AudioError as error:
            print(f"skipping a clip: {error}", file=sys.stderr)


def write_speech_files(data_dir: Path, paths: list[Path], seconds: list[float]) -> str:
    """Writes every file in one pass over the clips, clip by clip, so no file is ever held in memory."""
    targets = [round(s * SAMPLING_RATE) for s in seconds]
    written = [0] * len(paths)
    clips_used = 0
    writers = [sf.SoundFile(p, "w", samplerate=SAMPLING_RATE, channels=1, subtype="PCM_16", format="WAV")
               for p in paths]
    try:
        with tqdm(total=round(max(seconds)), unit="s", desc="writing audio", file=sys.stderr) as bar:
            clips = clip_stream(data_dir)
            while written[-1] < targets[-1]:
                clip = next(clips)
                clips_used += 1
                for i, writer in enumerate(writers):
                    if written[i] < targets[i]:
                        part = clip[:targets[i] - written[i]]
                        writer.write(part)
                        written[i] += len(part)
                bar.update(round(written[-1] / SAMPLING_RATE) - bar.n)
    finally:
        for writer in writers:
            writer.close()
    source = (f"real speech from {data_dir} (RAVDESS + TESS)" if clip_paths(data_dir)
              else f"synthetic noise bursts (no RAVDESS or TESS clips under {data_dir})")
    return f"{source}, {clips_used} clips, 16 kHz PCM_16 WAV in a temporary folder"


def predict_in_child(path: Path, model: str | None, args) -> dict | None:
    """Runs this script on `path` in a new interpreter; its progress bar goes straight to the terminal."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--threads", str(args.threads)]
    command += ["--random-model"] if model is None else ["--model", model]
    if args.batch_size is not None:
        command += ["--batch-size", str(args.batch_size)]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        sys.stderr.write(completed.stdout)
        return None
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def run_child(args) -> int:
    """Loads the model, classifies one file and prints its measurements as one JSON line."""
    torch.set_num_threads(args.threads)
    kwargs = {} if args.batch_size is None else {"batch_size": args.batch_size}
    load_start = time.perf_counter()
    try:
        recognizer, model_line = load_recognizer(None if args.random_model else args.model, **kwargs)
    except (OSError, ValueError) as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 2
    load_seconds = time.perf_counter() - load_start
    memory_before = current_memory_bytes()
    peak_before = peak_rss_bytes()

    with tqdm(total=round(audio_duration(args.child)), unit="s", desc=f"predicting {args.child.name}", file=sys.stderr,
              bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s audio [{elapsed}<{remaining}]") as bar:
        def progress(done: float, total: float | None) -> None:
            bar.update(done - bar.n)

        start = time.perf_counter()
        prediction = recognizer.predict_file(args.child, progress=progress)
        wall = time.perf_counter() - start

    result = {
        "model": model_line,
        "audio_seconds": prediction.duration,
        "wall_seconds": wall,
        "load_seconds": load_seconds,
        "windows": len(prediction.windows),
        "scored_windows": sum(w.probabilities is not None for w in prediction.windows),
        "batch_size": recognizer.batch_size,
        "rss_before_bytes": memory_before["VmRSS"],
        "anon_before_bytes": memory_before["RssAnon"],
        "file_before_bytes": memory_before["RssFile"],
        "peak_before_bytes": peak_before,
        "peak_bytes": peak_rss_bytes(),
        "label": prediction.label,
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def current_memory_bytes() -> dict[str, int]:
    """This process's resident memory now (not its peak): VmRSS, and its RssAnon and RssFile parts."""
    memory = dict.fromkeys(("VmRSS", "RssAnon", "RssFile"), 0)
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in memory:
            memory[name] = int(value.split()[0]) * 1024
    return memory


def peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS; these benchmarks target Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_surfaces(args, minutes: list[float], model: str | None) -> None:
    """The CLI and the app on files of each length, against the same real-time goal."""
    from gradio_client import Client, handle_file
    from _app_server import running_app

    if model is None:
        print("surfaces: skipped (no trained model to serve)")
        return
    with tempfile.TemporaryDirectory(prefix="ser-bench-surfaces-") as folder:
        folder = Path(folder)
        paths = [folder / f"speech_{m:g}min.wav" for m in minutes]
        short = folder / "speech_3s.wav"
        write_speech_files(args.data, [short] + paths, [3.0] + [m * 60 for m in minutes])  # shortest first
        cli = [sys.executable, "-m", "ser_model", "predict", "--model", model, "--format", "json", "--quiet"]

        def cli_seconds(path: Path) -> float:
            start = time.perf_counter()
            subprocess.run(cli + [str(path)], check=True, stdout=subprocess.DEVNULL, cwd=_common.REPO_ROOT)
            return time.perf_counter() - start

        start_up = cli_seconds(short)
        print(f"CLI (python -m ser_model predict): start-up and a 3 s clip {start_up:.1f} s")
        for m, path in zip(minutes, paths):
            wall = cli_seconds(path)
            factor = m * 60 / (wall - start_up)
            print(f"  {m:g} min: {wall:.1f} s in all, {wall - start_up:.1f} s classifying: {factor:.0f}x real time "
                  f"(goal >= {GOAL_REAL_TIME:g}x: {'PASS' if factor >= GOAL_REAL_TIME else 'FAIL'})")
        with running_app(folder, model) as url:
            client = Client(url, verbose=False)
            client.predict(handle_file(str(short)), api_name="/predict")  # warm-up
            print("app (/predict through gradio_client, model loaded):")
            for m, path in zip(minutes, paths):
                start = time.perf_counter()
                client.predict(handle_file(str(path)), api_name="/predict")
                wall = time.perf_counter() - start
                factor = m * 60 / wall
                print(f"  {m:g} min: {wall:.1f} s, upload included: {factor:.0f}x real time "
                      f"(goal >= {GOAL_REAL_TIME:g}x: {'PASS' if factor >= GOAL_REAL_TIME else 'FAIL'})")


def print_table(results) -> None:
    header = (f"{'minutes':>7}  {'windows':>7}  {'scored':>6}  {'load s':>6}  {'wall s':>6}  {'x real time':>11}  "
              f"{'RSS before MB':>13}  {'peak MB':>7}  {'peak - before MB':>16}")
    print(header)
    print("-" * len(header))
    for minutes, r in results:
        print(f"{minutes:>7g}  {r['windows']:>7}  {r['scored_windows']:>6}  {r['load_seconds']:>6.1f}  "
              f"{r['wall_seconds']:>6.1f}  {real_time_factor(r):>11.0f}  {r['rss_before_bytes'] / 1e6:>13.0f}  "
              f"{r['peak_bytes'] / 1e6:>7.0f}  {(r['peak_bytes'] - r['rss_before_bytes']) / 1e6:>16.0f}")
    print("(wall s: predict_file only; load s: building or loading the model; scored: windows with speech; "
          f"batch size {results[0][1]['batch_size']}; MB = 1e6 bytes)")
    first = results[0][1]
    print(f"(RSS before = after imports and model loading: {first['anon_before_bytes'] / 1e6:.0f} MB anonymous + "
          f"{first['file_before_bytes'] / 1e6:.0f} MB file-backed, mostly mapped torch/timm libraries)")
    print()


def real_time_factor(result: dict) -> float:
    return result["audio_seconds"] / result["wall_seconds"]


def print_goals(results) -> None:
    slowest_minutes, slowest = min(results, key=lambda mr: real_time_factor(mr[1]))
    factor = real_time_factor(slowest)
    print(f"goal: >= {GOAL_REAL_TIME:g}x real time: {'PASS' if factor >= GOAL_REAL_TIME else 'FAIL'} "
          f"(slowest {factor:.0f}x, on {slowest_minutes:g} min)")

    largest_minutes, largest = max(results, key=lambda mr: mr[1]["peak_bytes"])
    peak = largest["peak_bytes"]
    print(f"goal: peak memory < {GOAL_PEAK_BYTES / 1e9:g} GB: {'PASS' if peak < GOAL_PEAK_BYTES else 'FAIL'} "
          f"(highest {peak / 1e6:.0f} MB, on {largest_minutes:g} min)")

    (short_minutes, short), (long_minutes, long) = results[0], results[-1]
    goal = (f"goal: flat in length ({long_minutes:g} min peak within {100 * GOAL_FLAT_FRACTION:g}% of "
            f"{short_minutes:g} min peak)")
    if len(results) < 2:
        print(f"{goal}: n/a (needs two lengths)")
    else:
        change = long["peak_bytes"] / short["peak_bytes"] - 1
        verdict = "PASS" if abs(change) <= GOAL_FLAT_FRACTION else "FAIL"
        print(f"{goal}: {verdict} ({100 * change:+.1f}%)")


if __name__ == "__main__":
    run_script(main)
