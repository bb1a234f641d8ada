"""The speech detector (`ser_model.configuration.has_speech`) on real speech and on sounds without speech.

    python bench/speech_detector.py                  # every clip of every corpus in ../shared/data
    python bench/speech_detector.py --per-corpus 200  # a sample of each corpus

Speech: every clip of the corpora, at its own level and turned down by 30 and 40 dB as a 16-bit
recording stores it (`augment.change_level`); each should be accepted. Not speech: digital zeros,
16-bit dither, white, pink and brown noise, 50 Hz mains hum with harmonics, hum under noise, at
several levels and lengths; each should be refused. Prints the share accepted per group and the
spread between loud and quiet frames (`SPEECH_SPREAD_DB` is the threshold), so a threshold can be
read off the distributions.
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
from _common import DEFAULT_DATA_DIR
from tqdm import tqdm

from ser_model.audio_io import load_audio
from ser_model.configuration import (SPEECH_LOUD_PERCENTILE, SPEECH_QUIET_PERCENTILE, SPEECH_SPREAD_DB,
                                     frame_levels_db, has_speech)
from ser_model.data.augment import change_level
from ser_model.data.corpora import discover

SAMPLING_RATE = 16_000
LEVELS_DB = (0.0, -30.0, -40.0)


def spread_db(waveform: np.ndarray) -> float:
    loud, quiet = np.percentile(frame_levels_db(waveform, SAMPLING_RATE), [SPEECH_LOUD_PERCENTILE,
                                                                            SPEECH_QUIET_PERCENTILE])
    return float(loud - quiet)


def coloured_noise(rng: np.random.Generator, samples: int, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent: 0 white, 1 pink, 2 brown; peak 1."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.maximum(np.fft.rfftfreq(samples), 1.0 / samples)
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n=samples)
    return noise / np.abs(noise).max()


def hum(samples: int, mains_hz: float = 50.0) -> np.ndarray:
    """Mains hum: the fundamental and its odd harmonics, as a transformer or a ground loop gives it; peak 1."""
    t = np.arange(samples) / SAMPLING_RATE
    tone = sum(np.sin(2 * np.pi * mains_hz * k * t) / k for k in (1, 3, 5, 7))
    return tone / np.abs(tone).max()


def sounds_without_speech(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Each kind of non-speech at peaks of -6, -26 and -46 dBFS and lengths of 1, 4 and 30 s (16-bit)."""
    rng = np.random.default_rng(seed)
    kinds: dict[str, list[np.ndarray]] = {}
    for seconds in (1, 4, 30):
        n = seconds * SAMPLING_RATE
        shapes = {"white noise": coloured_noise(rng, n, 0), "pink noise": coloured_noise(rng, n, 1),
                  "brown noise": coloured_noise(rng, n, 2), "50 Hz hum": hum(n), "60 Hz hum": hum(n, 60.0),
                  "hum under pink noise": 0.7 * hum(n) + 0.3 * coloured_noise(rng, n, 1)}
        for name, shape in shapes.items():
            kinds.setdefault(name, []).extend(change_level(0.5 * shape, gain) for gain in (0.0, -20.0, -40.0))
        kinds.setdefault("zeros", []).append(np.zeros(n, dtype=np.float32))
        kinds.setdefault("16-bit dither", []).append(rng.integers(-1, 2, n).astype(np.float32) / 32767)
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA_DIR, help="the corpora folder (default: %(default)s)")
    parser.add_argument("--per-corpus", type=int, default=None, help="clips per corpus (default: all)")
    args = parser.parse_args()

    records = discover(args.data)
    rng = np.random.default_rng(0)
    by_corpus: dict[str, list] = {}
    for record in records:
        by_corpus.setdefault(record.corpus, []).append(record)
    print(f"threshold: {SPEECH_SPREAD_DB:g} dB between the {SPEECH_LOUD_PERCENTILE}th and "
          f"{SPEECH_QUIET_PERCENTILE}th percentile of 25 ms frame levels")
    print(f"{'speech':<22}" + "".join(f"{f'{g:+.0f} dB accepted':>18}" for g in LEVELS_DB) + f"{'min spread':>12}"
          + f"{'1st pct':>10}")
    for corpus, chosen in sorted(by_corpus.items()):
        if args.per_corpus is not None and len(chosen) > args.per_corpus:
            chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), args.per_corpus, replace=False))]
        accepted = {gain: 0 for gain in LEVELS_DB}
        spreads = []
        for record in tqdm(chosen, desc=corpus, leave=False):
            clip = load_audio(record.path, SAMPLING_RATE, min_seconds=0.0)
            spreads.append(spread_db(clip))
            for gain in LEVELS_DB:
                accepted[gain] += has_speech(clip if gain == 0 else change_level(clip, gain), SAMPLING_RATE)
        print(f"{corpus + f' ({len(chosen)} clips)':<22}"
              + "".join(f"{accepted[g] / len(chosen):>18.1%}" for g in LEVELS_DB)
              + f"{min(spreads):>12.1f}{np.percentile(spreads, 1):>10.1f}")
    print(f"\n{'not speech':<22}{'accepted':>18}{'max spread':>12}")
    for name, sounds in sounds_without_speech().items():
        accepted = sum(has_speech(s, SAMPLING_RATE) for s in sounds)
        print(f"{f'{name} ({len(sounds)})':<22}{accepted / len(sounds):>18.1%}{max(map(spread_db, sounds)):>12.1f}")


if __name__ == "__main__":
    main()
