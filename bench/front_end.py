"""The audio front end: our feature extractor next to librosa, and decoding + resampling the corpora.

    python bench/front_end.py                # both parts, 200 clips per corpus
    python bench/front_end.py --quick        # a quick check

(a) Features. The model's `SERFeatureExtractor` (its `preprocessor_config.json`) against librosa
    computing the same features with the same settings, on the same 3-second clips as
    `latency.py`, per clip and per batch of 16: milliseconds per clip and librosa's time over ours.
    Both sides produce the model's two inputs, normalised the same way; the largest absolute
    difference between them is printed too, so the comparison is of equal work. Skipped, with a
    sentence, when librosa is not installed (`pip install -r requirements-dev.txt`).
(b) Decoding. `ser_model.audio_io.load_audio` (soundfile + soxr, what training and the CLI use) on
    a bounded sample of each corpus found by `ser_model.data.corpora.discover`: clips per second and
    seconds of audio per wall-clock second. The corpora on this machine are stored as 16 kHz FLAC,
    which needs no resampling, so each corpus is also re-created at its original rate and format
    (RAVDESS 48 kHz, TESS 24,414 Hz, 16-bit WAV) in a temporary folder and decoded + resampled from
    there: that is the work a user's own copy of the corpus costs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
import soundfile as sf
import soxr
import torch
from _common import (add_common_arguments, add_run_count_arguments, check_threads_and_batch_sizes, environment_lines,
                     load_feature_extractor, percentile, resolve_model, resolve_run_counts, run_script)
from latency import three_second_clips
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from ser_model.audio_io import AudioError, load_audio
from ser_model.data.corpora import discover
from ser_model.feature_extractor import LOG_FLOOR, NORM_EPS, REFERENCE_RMS

# name: (full default, --quick default, help)
RUN_COUNTS = {
    "repeats": (50, 5, "timed runs per batch size in part (a)"),
    "warmup": (5, 1, "untimed runs per batch size in part (a)"),
    "clips": (200, 20, "clips per corpus in part (b)"),
}
FEATURE_CLIPS = 64
# The rates the corpora are distributed at, which a user's own copy has: RAVDESS 48 kHz 16-bit WAV
# (Livingstone & Russo 2018), TESS 24,414 Hz 16-bit WAV (as its authors distribute it).
ORIGINAL_RATES = {"ravdess": 48_000, "tess": 24_414}


def main(argv=None) -> int:
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    try:
        feature_extractor, extractor_line = load_feature_extractor(resolve_model(args.model))
    except (OSError, ValueError) as error:
        print(f"error: cannot load the feature extractor: {error}", file=sys.stderr)
        return 2

    print("== front end: features (ours vs librosa), decoding + resampling ==")
    # numpy's BLAS (librosa's mel filterbank product) gets the same thread count as torch.
    with threadpool_limits(limits=args.threads):
        for line in environment_lines():
            print(line)
        print(f"threads: {args.threads} (torch intra-op and numpy's BLAS, via threadpoolctl)"
              + (" (--quick: too few runs to report)" if args.quick else ""))
        print()
        compare_features(feature_extractor, extractor_line, args)
        decode_throughput(args, feature_extractor.sampling_rate)
    return 0


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="part (a) (default: %(default)s)")
    add_run_count_arguments(parser, RUN_COUNTS)
    args = parser.parse_args(argv)
    resolve_run_counts(parser, args, RUN_COUNTS, minimum={"warmup": 0})
    check_threads_and_batch_sizes(parser, args)
    return args


# (a) features ------------------------------------------------------------------------------------

def compare_features(feature_extractor, extractor_line: str, args) -> None:
    print("-- (a) features: SERFeatureExtractor vs librosa, 3.0 s clips --")
    try:
        import librosa
    except ImportError:
        print("librosa is not installed, so the comparison with librosa is skipped "
              "(pip install -r requirements-dev.txt).")
        print()
        return
    fe = feature_extractor
    clips, clips_line = three_second_clips(args.data, FEATURE_CLIPS, fe.sampling_rate)
    print(f"ours: {extractor_line}: n_fft {fe.n_fft}, hop {fe.hop_length}, {fe.n_mels} mels "
          f"{fe.f_min:g}-{fe.f_max:g} Hz, {fe.n_mfcc} MFCCs (torchaudio)")
    print(f"librosa {librosa.__version__}: the same settings, {librosa_settings_line()}")
    print(f"clips: {clips_line}")
    print(f"runs per batch size: {args.warmup} warm-up + {args.repeats} timed, each side")
    print_feature_difference(librosa, fe, clips)
    print_feature_timings(librosa, fe, clips, args)


def print_feature_difference(librosa, fe, clips: list[np.ndarray]) -> None:
    """The largest difference between the two sides' features: a timing compares equal work only if it is small."""
    ours = fe(clips, sampling_rate=fe.sampling_rate, return_tensors="np")
    theirs = librosa_features(librosa, fe, np.stack(clips))
    mel_diff = float(np.abs(ours["input_values"] - theirs["input_values"]).max())
    mfcc_diff = float(np.abs(ours["input_mfcc"] - theirs["input_mfcc"]).max())
    print(f"largest absolute difference over the {len(clips)} clips (both normalised as the model's inputs, "
          f"unit standard deviation): log-mel {mel_diff:.2g}, MFCC {mfcc_diff:.2g}")
    print()


def print_feature_timings(librosa, fe, clips: list[np.ndarray], args) -> None:
    def ours(batch):
        return fe(batch, sampling_rate=fe.sampling_rate, return_tensors="np")

    def theirs(batch):
        return librosa_features(librosa, fe, np.stack(batch))

    header = (f"{'batch':>5}  {'ours ms/clip':>12}  {'(p90)':>7}  {'librosa ms/clip':>15}  {'(p90)':>7}  "
              f"{'librosa / ours':>14}")
    print(header)
    print("-" * len(header))
    for batch_size in args.batch_sizes:
        mine = time_calls(ours, clips, batch_size, args.warmup, args.repeats)
        other = time_calls(theirs, clips, batch_size, args.warmup, args.repeats)
        ours_ms, librosa_ms = percentile(mine, 50), percentile(other, 50)
        print(f"{batch_size:>5}  {ours_ms / batch_size:>12.2f}  {percentile(mine, 90) / batch_size:>7.2f}  "
              f"{librosa_ms / batch_size:>15.2f}  {percentile(other, 90) / batch_size:>7.2f}  "
              f"{librosa_ms / ours_ms:>13.1f}x")
    print("(ms per clip = median (p90) ms per batch / batch size; ours is called with a list of clips as the "
          "pipeline does, librosa with one (batch, samples) array; both return numpy arrays)")
    print()


def librosa_settings_line() -> str:
    return ("Hann window, centred with reflect padding, power 2, HTK mel scale without filter normalisation "
            "(torchaudio's defaults), natural log with the same floor, orthonormal DCT-II")


def librosa_features(librosa, fe, waveforms: np.ndarray) -> dict[str, np.ndarray]:
    """The model's inputs for a `(batch, samples)` array, computed with librosa.

    The settings are `SERFeatureExtractor`'s: torchaudio's `MelSpectrogram` defaults are a periodic
    Hann window, `center=True` with reflect padding and HTK mel filters without area normalisation,
    where librosa defaults to constant padding and Slaney filters, so those are set explicitly.
    """
    # The extractor's level step, or the two sides would compare different inputs: each clip scaled to
    # REFERENCE_RMS, or with `normalize_level=False` only louder-than-full-scale clips down to a peak of 1.
    if fe.normalize_level:
        rms = np.sqrt(np.mean(np.square(waveforms, dtype=np.float64), axis=-1, keepdims=True))
        waveforms = (waveforms * (REFERENCE_RMS / np.where(rms > 0, rms, REFERENCE_RMS))).astype(np.float32)
    else:
        waveforms = waveforms / np.maximum(np.abs(waveforms).max(axis=-1, keepdims=True), 1.0)
    mel = librosa.feature.melspectrogram(
        y=waveforms, sr=fe.sampling_rate, n_fft=fe.n_fft, hop_length=fe.hop_length, window="hann", center=True,
        pad_mode="reflect", power=2.0, n_mels=fe.n_mels, fmin=fe.f_min, fmax=fe.f_max, htk=True, norm=None,
    )
    log_mel = np.log(mel + LOG_FLOOR)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=fe.n_mfcc, dct_type=2, norm="ortho")
    # The feature extractor's normalisation: one mean and deviation per clip for the log-mel, per
    # coefficient over the frames for the MFCCs.
    mean = log_mel.mean(axis=(1, 2), keepdims=True)
    log_mel = (log_mel - mean) / (log_mel.std(axis=(1, 2), keepdims=True) + NORM_EPS)
    mfcc = (mfcc - mfcc.mean(axis=2, keepdims=True)) / (mfcc.std(axis=2, keepdims=True) + NORM_EPS)
    return {"input_values": log_mel.astype(np.float32), "input_mfcc": mfcc.astype(np.float32)}


def time_calls(function, clips, batch_size: int, warmup: int, repeats: int) -> list[float]:
    """Milliseconds per call of `function(batch)`, cycling through `clips` as `latency.py` does."""
    timings = []
    for run in range(warmup + repeats):
        batch = [clips[(run * batch_size + i) % len(clips)] for i in range(batch_size)]
        start = time.perf_counter()
        function(batch)
        if run >= warmup:
            timings.append(1000 * (time.perf_counter() - start))
    return timings


# (b) decoding ------------------------------------------------------------------------------------

def decode_throughput(args, sampling_rate: int) -> None:
    print(f"-- (b) decoding + resampling to {sampling_rate / 1000:g} kHz: ser_model.audio_io.load_audio, "
          f"up to {args.clips} clips per corpus --")
    try:
        records = discover(args.data)
    except ValueError as error:
        print(f"No corpus to decode, so part (b) is skipped: {error}.")
        return
    samples = sample_corpora(records, args.clips)
    print(f"corpora: {', '.join(f'{c} ({len(p)} of {n} clips)' for c, (p, n) in samples.items())} from {args.data}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ser-bench-front-end-") as folder:
        for corpus, (paths, _) in samples.items():
            rows += time_corpus(corpus, paths, sampling_rate, Path(folder) / corpus)
    print()
    print_decoding_table(rows)


def sample_corpora(records, count: int) -> dict[str, tuple[list[Path], int]]:
    """Up to `count` files per corpus, and the corpus' number of files, by corpus name."""
    by_corpus = defaultdict(list)
    for record in records:
        by_corpus[record.corpus].append(Path(record.path))
    # Evenly spaced over each corpus' sorted files, so every speaker and emotion is represented.
    return {corpus: ([paths[i] for i in np.linspace(0, len(paths) - 1, num=min(count, len(paths)))
                      .round().astype(int)], len(paths))
            for corpus, paths in sorted(by_corpus.items())}


def time_corpus(corpus: str, paths: list[Path], sampling_rate: int, folder: Path) -> list[dict]:
    """The files as stored, then, where they are stored at another rate than the corpus is distributed
    at, copies at that rate written under `folder` (and removed afterwards)."""
    rows = [time_decoding(corpus, "as stored", paths, sampling_rate)]
    original = ORIGINAL_RATES.get(corpus)
    if original is not None and set(stored_rates(paths)) != {original}:
        copies = recreate_at_rate(paths, original, folder, corpus)
        rows.append(time_decoding(corpus, "original rate, WAV", copies, sampling_rate))
        for path in copies:
            path.unlink()
    return rows


def print_decoding_table(rows: list[dict]) -> None:
    header = (f"{'corpus':<8}  {'files':<18}  {'rate Hz':>12}  {'clips':>5}  {'audio s':>7}  {'wall s':>6}  "
              f"{'clips/s':>7}  {'audio s/wall s':>14}  {'median ms/clip':>14}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['corpus']:<8}  {row['files']:<18}  {row['rates']:>12}  {row['clips']:>5}  "
              f"{row['audio_seconds']:>7.1f}  {row['wall_seconds']:>6.2f}  {row['clips'] / row['wall_seconds']:>7.0f}  "
              f"{row['audio_seconds'] / row['wall_seconds']:>14.0f}  {percentile(row['per_clip_ms'], 50):>14.2f}")
    print("(wall s: load_audio alone, files already in the page cache: decoding, downmixing, resampling with soxr "
          "'HQ' and validation; audio s: seconds of audio returned; rate: the files' own, most common first)")
    print("(original rate, WAV: each clip upsampled to the corpus' distribution rate with soxr and written as 16-bit "
          "WAV beforehand, untimed; its content stops at 8 kHz, which does not change the speed)")
    failed = sum(row["failed"] for row in rows)
    if failed:
        print(f"({failed} clip(s) failed to load and are left out; see the messages above)")
    print()


def stored_rates(paths: list[Path]) -> list[int]:
    return [sf.info(str(path)).samplerate for path in paths]


def recreate_at_rate(paths: list[Path], rate: int, folder: Path, corpus: str) -> list[Path]:
    """Writes each clip resampled to `rate` as 16-bit WAV under `folder`, as the corpus is distributed."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for i, path in enumerate(tqdm(paths, desc=f"{corpus}: writing {rate} Hz WAVs", unit="clip", file=sys.stderr)):
        waveform, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
        upsampled = soxr.resample(waveform, source_rate, rate, quality="VHQ")
        copy = folder / f"{i:04d}_{path.stem}.wav"
        sf.write(str(copy), np.clip(upsampled, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
        copies.append(copy)
    return copies


def time_decoding(corpus: str, files: str, paths: list[Path], sampling_rate: int) -> dict:
    """Times `load_audio(path, sampling_rate)` per file; the files are read once beforehand so that the figure
    is decoding and resampling, not the disk."""
    for path in paths:
        path.read_bytes()
    rates = Counter(stored_rates(paths))
    per_clip_ms, audio_seconds, failed = [], 0.0, 0
    for path in tqdm(paths, desc=f"{corpus}: decoding {files}", unit="clip", file=sys.stderr):
        start = time.perf_counter()
        try:
            waveform = load_audio(path, sampling_rate, min_seconds=0.0)
        except AudioError as error:
            print(f"skipping a clip: {error}", file=sys.stderr)
            failed += 1
            continue
        per_clip_ms.append(1000 * (time.perf_counter() - start))
        audio_seconds += len(waveform) / sampling_rate
    return {
        "corpus": corpus,
        "files": files,
        "rates": "/".join(str(rate) for rate, _ in rates.most_common(2)) + ("/..." if len(rates) > 2 else ""),
        "clips": len(per_clip_ms),
        "audio_seconds": audio_seconds,
        "wall_seconds": sum(per_clip_ms) / 1000,
        "per_clip_ms": per_clip_ms,
        "failed": failed,
    }


if __name__ == "__main__":
    run_script(main)
