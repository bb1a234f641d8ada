"""Latency of one decision on a 3-second clip: feature extraction + model forward, on the CPU.

    python bench/latency.py                  # batch 1 and 16, all cores
    python bench/latency.py --threads 2 --repeats 200

Real RAVDESS clips are cropped (centred) or zero-padded to exactly 3.0 s, so every batch has the
same shape; synthetic noise stands in when the corpus is absent (speed does not depend on content).
Each batch size gets warm-up runs first, then `--repeats` timed runs, each on different clips.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
import torch
from _common import (add_common_arguments, environment_lines, load_recognizer, percentile, ravdess_clips,
                     resolve_model, run_script)

from ser_model.audio_io import AudioError, load_audio

CLIP_SECONDS = 3.0
GOAL_MS = 30.0
GOAL_CORES = 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=100, help="timed runs per batch size (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per batch size (default %(default)s)")
    parser.add_argument("--clips", type=int, default=64, help="distinct clips to cycle through (default %(default)s)")
    args = parser.parse_args(argv)
    for name in ("threads", "repeats", "clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0 or any(b < 1 for b in args.batch_sizes):
        parser.error("--warmup must be >= 0 and every batch size >= 1")

    torch.set_num_threads(args.threads)
    try:
        recognizer, model_line = load_recognizer(resolve_model(args.model))
    except (OSError, ValueError) as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 2
    sampling_rate = recognizer.sampling_rate
    clips, clips_line = three_second_clips(args.data, args.clips, sampling_rate)

    print("== latency: features + model, one 3.0 s clip ==")
    for line in environment_lines():
        print(line)
    print(f"model: {model_line}")
    print(f"clips: {clips_line}")
    print(f"runs: {args.warmup} warm-up + {args.repeats} timed per batch size")
    print()

    rows = []
    for batch_size in args.batch_sizes:
        total, features, model = time_batches(recognizer, clips, batch_size, args.warmup, args.repeats)
        rows.append((batch_size, total, features, model))

    header = (f"{'batch':>5}  {'median ms/batch':>15}  {'p90 ms/batch':>12}  {'ms/clip':>8}  "
              f"{'features ms':>11}  {'model ms':>8}")
    print(header)
    print("-" * len(header))
    for batch_size, total, features, model in rows:
        median = percentile(total, 50)
        print(f"{batch_size:>5}  {median:>15.1f}  {percentile(total, 90):>12.1f}  {median / batch_size:>8.2f}  "
              f"{percentile(features, 50):>11.1f}  {percentile(model, 50):>8.1f}")
    print("(features ms and model ms are medians of each stage; ms/clip is the median per batch / batch size)")
    print()

    batch_one = [total for batch_size, total, _, _ in rows if batch_size == 1]
    goal = f"goal: <= {GOAL_MS:g} ms median at batch 1 on {GOAL_CORES} cores"
    if not batch_one:
        print(f"{goal}: n/a (batch size 1 was not measured)")
    else:
        median = percentile(batch_one[0], 50)
        verdict = "PASS" if median <= GOAL_MS else "FAIL"
        note = "" if args.threads == GOAL_CORES else f"; measured with {args.threads} threads, not {GOAL_CORES}"
        print(f"{goal}: {verdict} ({median:.1f} ms{note})")
    return 0


def three_second_clips(data_dir, count: int, sampling_rate: int) -> tuple[list[np.ndarray], str]:
    """`count` RAVDESS clips spread over the actors, each exactly `CLIP_SECONDS` long; noise without data."""
    length = round(CLIP_SECONDS * sampling_rate)
    paths = ravdess_clips(data_dir)
    # Evenly spaced over the sorted list, so every actor and emotion is represented.
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, num=min(count, len(paths))).round().astype(int)]
    clips = []
    for path in chosen:
        try:
            clips.append(fit_length(load_audio(path, sampling_rate), length))
        except AudioError as error:
            print(f"skipping a clip: {error}", file=sys.stderr)
    if clips:
        return clips, f"{len(clips)} RAVDESS clips from {data_dir}, cropped/padded to {CLIP_SECONDS:g} s"
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(length)).astype(np.float32) for _ in range(count)]
    return clips, f"{count} synthetic noise clips of {CLIP_SECONDS:g} s (no RAVDESS clips under {data_dir})"


def fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """The centred `length` samples of `waveform`, zero-padded at the end when it is shorter."""
    if len(waveform) >= length:
        start = (len(waveform) - length) // 2
        return np.ascontiguousarray(waveform[start:start + length])
    return np.pad(waveform, (0, length - len(waveform)))


@torch.inference_mode()
def time_batches(recognizer, clips, batch_size: int, warmup: int, repeats: int):
    """Milliseconds per batch (total, features, model) for `repeats` timed runs after `warmup` untimed ones."""
    total, features_ms, model_ms = [], [], []
    sampling_rate = recognizer.sampling_rate
    for run in range(warmup + repeats):
        batch = [clips[(run * batch_size + i) % len(clips)] for i in range(batch_size)]
        start = time.perf_counter()
        features = recognizer.feature_extractor(batch, sampling_rate=sampling_rate, return_tensors="pt")
        middle = time.perf_counter()
        recognizer.model(**features).logits
        end = time.perf_counter()
        if run >= warmup:
            total.append(1000 * (end - start))
            features_ms.append(1000 * (middle - start))
            model_ms.append(1000 * (end - middle))
    return total, features_ms, model_ms


if __name__ == "__main__":
    run_script(main)
