"""Latency of one decision on a 3-second clip: feature extraction + model forward, on the CPU, next to a
wav2vec2-base-sized audio classifier on the same clips.

    python bench/latency.py                  # batch 1 and 16, all cores
    python bench/latency.py --threads 2 --repeats 200
    python bench/latency.py --quick          # a quick check

Real RAVDESS clips are cropped (centred) or zero-padded to exactly 3.0 s, so every batch has the
same shape; synthetic noise stands in when the corpus is absent (speed does not depend on content).
Each batch size gets warm-up runs first, then timed runs, each on different clips.

The peer is `Wav2Vec2ForSequenceClassification(Wav2Vec2Config(num_labels=7))`, the default config
being wav2vec2-base's size (Baevski et al. 2020: 12 transformer layers of width 768, about 94 M
parameters), with random weights (speed does not depend on them), and its default
`Wav2Vec2FeatureExtractor`, so both sides are timed as "features + model". The peer is far slower, so
it gets fewer runs (`--peer-repeats`, `--peer-warmup`); both run with the same torch thread count.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
import torch
from _common import (add_common_arguments, add_run_count_arguments, check_threads_and_batch_sizes, count_parameters,
                     environment_lines, load_recognizer, percentile, ravdess_clips, resolve_model, resolve_run_counts,
                     run_script)

from ser_model.audio_io import AudioError, load_audio

CLIP_SECONDS = 3.0
# The goals (the README's Performance table has the figures): at most 30 ms per 3 s clip on 2 cores, and
# at least 10x faster than a typical peer, features + model, since speed on a small CPU is the reason
# to ship a small model.
GOAL_MS = 30.0
GOAL_CORES = 2
GOAL_SPEEDUP = 10.0
PEER_NAME = "wav2vec2-base-sized classifier"
# name: (full default, --quick default, help)
RUN_COUNTS = {
    "repeats": (100, 5, "timed runs per batch size, our model"),
    "warmup": (10, 1, "untimed runs per batch size, our model"),
    "peer_repeats": (20, 3, "timed runs per batch size, the peer"),
    "peer_warmup": (2, 1, "untimed runs per batch size, the peer"),
    "clips": (64, 16, "distinct clips to cycle through"),
}


def main(argv=None) -> int:
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    try:
        recognizer, model_line = load_recognizer(resolve_model(args.model))
    except (OSError, ValueError) as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 2
    sampling_rate = recognizer.sampling_rate
    clips, clips_line = three_second_clips(args.data, args.clips, sampling_rate)
    peer = None if args.no_peer else build_peer(sampling_rate)
    print_setup(args, model_line, peer, clips_line)

    ours = {batch_size: time_batches(recognizer.feature_extractor, recognizer.model, clips, sampling_rate,
                                     batch_size, args.warmup, args.repeats)
            for batch_size in args.batch_sizes}
    theirs = {} if peer is None else {
        batch_size: time_batches(*peer, clips, sampling_rate, batch_size, args.peer_warmup, args.peer_repeats)
        for batch_size in args.batch_sizes}
    print_timings(ours, theirs)
    if peer is not None:
        print_comparison(ours, theirs, recognizer.model, peer[1])
    print_goals(ours, theirs, args)
    return 0


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="default: %(default)s")
    parser.add_argument("--no-peer", action="store_true", help="time the shipped model only")
    add_run_count_arguments(parser, RUN_COUNTS)
    args = parser.parse_args(argv)
    resolve_run_counts(parser, args, RUN_COUNTS, minimum={"warmup": 0, "peer_warmup": 0})
    check_threads_and_batch_sizes(parser, args)
    return args


def print_setup(args, model_line: str, peer, clips_line: str) -> None:
    print("== latency: features + model, one 3.0 s clip ==")
    for line in environment_lines():
        print(line)
    print(f"model: {model_line}")
    if peer is not None:
        print(f"peer: {PEER_NAME}, Wav2Vec2ForSequenceClassification(Wav2Vec2Config(num_labels=7)) + "
              f"Wav2Vec2FeatureExtractor(), random weights; {count_parameters(peer[1]) / 1e6:.2f} M parameters")
    print(f"threads: {args.threads} (torch intra-op), the same for both")
    print(f"clips: {clips_line}")
    print(f"runs per batch size: {args.warmup} warm-up + {args.repeats} timed"
          + ("" if peer is None else f"; peer {args.peer_warmup} warm-up + {args.peer_repeats} timed")
          + (" (--quick: too few runs to report)" if args.quick else ""))
    print()


def print_timings(ours: dict, theirs: dict) -> None:
    """One row per model and batch size: the whole call's median and p90, and each stage's median."""
    header = (f"{'model':<5}  {'batch':>5}  {'median ms/batch':>15}  {'p90 ms/batch':>12}  {'ms/clip':>8}  "
              f"{'features ms':>11}  {'model ms':>8}")
    print(header)
    print("-" * len(header))
    for name, rows in (("ours", ours), ("peer", theirs)):
        for batch_size, (total, features, model) in rows.items():
            median = percentile(total, 50)
            print(f"{name:<5}  {batch_size:>5}  {median:>15.1f}  {percentile(total, 90):>12.1f}  "
                  f"{median / batch_size:>8.2f}  {percentile(features, 50):>11.1f}  {percentile(model, 50):>8.1f}")
    print("(features ms and model ms are medians of each stage; ms/clip is the median per batch / batch size)")
    print()


def print_goals(ours: dict, theirs: dict, args) -> None:
    goal = f"goal: <= {GOAL_MS:g} ms median at batch 1 on {GOAL_CORES} cores"
    if 1 not in ours:
        print(f"{goal}: n/a (batch size 1 was not measured)")
    else:
        median = percentile(ours[1][0], 50)
        verdict = "PASS" if median <= GOAL_MS else "FAIL"
        note = "" if args.threads == GOAL_CORES else f"; measured with {args.threads} threads, not {GOAL_CORES}"
        print(f"{goal}: {verdict} ({median:.1f} ms{note})")
    if theirs:
        ratios = {b: percentile(theirs[b][0], 50) / percentile(ours[b][0], 50) for b in args.batch_sizes}
        verdict = "PASS" if all(r >= GOAL_SPEEDUP for r in ratios.values()) else "FAIL"
        detail = ", ".join(f"batch {b}: {r:.1f}x" for b, r in ratios.items())
        print(f"goal: >= {GOAL_SPEEDUP:g}x faster than the {PEER_NAME} at every batch size: {verdict} ({detail})")


def build_peer(sampling_rate: int):
    """The peer's feature extractor and model: wav2vec2-base's size, random weights, inference mode."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    model = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(num_labels=7)).eval()
    feature_extractor = Wav2Vec2FeatureExtractor()
    if feature_extractor.sampling_rate != sampling_rate:
        raise ValueError(f"the peer expects {feature_extractor.sampling_rate} Hz audio, our model {sampling_rate} Hz")
    return feature_extractor, model


def print_comparison(ours: dict, theirs: dict, our_model, peer_model) -> None:
    header = f"{'batch':>5}  {'ours ms/clip':>12}  {'peer ms/clip':>12}  {'peer / ours':>11}"
    print(header)
    print("-" * len(header))
    for batch_size in ours:
        mine, other = percentile(ours[batch_size][0], 50), percentile(theirs[batch_size][0], 50)
        print(f"{batch_size:>5}  {mine / batch_size:>12.2f}  {other / batch_size:>12.2f}  {other / mine:>10.1f}x")
    ours_params, peer_params = count_parameters(our_model), count_parameters(peer_model)
    print(f"(medians of features + model; parameters: ours {ours_params / 1e6:.2f} M, peer {peer_params / 1e6:.2f} M, "
          f"{peer_params / ours_params:.0f}x as many)")
    print()


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
def time_batches(feature_extractor, model, clips, sampling_rate: int, batch_size: int, warmup: int, repeats: int):
    """Milliseconds per batch (total, features, model) for `repeats` timed runs after `warmup` untimed ones.

    Run `i` takes the next `batch_size` clips in turn, so every model sees the same batches in the same order.
    """
    total, features_ms, model_ms = [], [], []
    for run in range(warmup + repeats):
        batch = [clips[(run * batch_size + i) % len(clips)] for i in range(batch_size)]
        start = time.perf_counter()
        features = feature_extractor(batch, sampling_rate=sampling_rate, return_tensors="pt")
        middle = time.perf_counter()
        model(**features).logits
        end = time.perf_counter()
        if run >= warmup:
            total.append(1000 * (end - start))
            features_ms.append(1000 * (middle - start))
            model_ms.append(1000 * (end - middle))
    return total, features_ms, model_ms


if __name__ == "__main__":
    run_script(main)
