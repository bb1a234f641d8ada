"""Waveform augmentation for training: speaker, room and channel variation that people's own
recordings bring and the acted corpora lack.

Each function takes and returns a mono float32 waveform at the model's rate, keeps its length
(except `change_speed` and `crop`, whose job is to change it) and draws its randomness from the
`numpy.random.Generator` it is given, so a seeded run is reproducible.

Lossy codecs are slow to run per draw (libsndfile's Opus encoder takes about 0.25 s per 3 s clip
on one core), so `encode_decode` is meant to be run once per clip before training
(`ser_model.data.train_data.codec_versions`) and the coded copy drawn from then on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import fftconvolve

# Lossy codecs libsndfile writes to memory (no FFmpeg needed), with the range of its compression
# level for each: 0 is the best quality, higher levels lower the bitrate. On a 3 s RAVDESS clip at
# 16 kHz, MP3 0.0-0.8 gives about 170-40 kbps, Opus 0.8-0.95 about 55-17 kbps, Vorbis 0.3-0.9 about
# 60-25 kbps. Opus reaches lowest because the Opus copies of nEMO, ASED and TurEV-DB that the model
# is trained on are about 23 kbps, and the channel augmentation should span what the model meets.
CODECS = {
    "mp3": ("MP3", "MPEG_LAYER_III", (0.0, 0.8)),
    "opus": ("OGG", "OPUS", (0.8, 0.95)),
    "vorbis": ("OGG", "VORBIS", (0.3, 0.9)),
}

# Telephone and narrowband channels: the audio is resampled to one of these rates and back, which
# removes everything above half of it (4 kHz for the 8 kHz telephone band).
NARROW_BAND_RATES = (8_000, 11_025, 12_000)


def encode_decode(waveform: np.ndarray, sampling_rate: int, codec: str, rng: np.random.Generator) -> np.ndarray:
    """The waveform after a round trip through a lossy codec at a random bitrate, same length.

    Args:
        waveform (`np.ndarray` of shape `(samples,)`): float audio in [-1, 1].
        sampling_rate (`int`): its rate in Hz.
        codec (`str`): a key of `CODECS`.
        rng (`np.random.Generator`): draws the compression level.
    """
    container, subtype, (low, high) = CODECS[codec]
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(waveform, -1.0, 1.0), sampling_rate, format=container, subtype=subtype,
             compression_level=float(rng.uniform(low, high)))
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    return fit_length(decoded, len(waveform))


def fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """Cuts or zero-pads `waveform` to `length` samples (codecs and resamplers add or drop a few)."""
    if len(waveform) >= length:
        return np.ascontiguousarray(waveform[:length], dtype=np.float32)
    return np.pad(waveform, (0, length - len(waveform))).astype(np.float32)


def change_speed(waveform: np.ndarray, sampling_rate: int, speed: float) -> np.ndarray:
    """Plays the clip `speed` times faster, raising the pitch with it (Ko et al. 2015): the clip is
    read as if recorded at `speed * sampling_rate` and resampled to `sampling_rate`."""
    return soxr.resample(waveform, sampling_rate * speed, sampling_rate, quality="QQ").astype(np.float32)


def crop(waveform: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random `length`-sample stretch of a longer clip; shorter clips are returned whole."""
    if len(waveform) <= length:
        return waveform
    start = int(rng.integers(0, len(waveform) - length + 1))
    return waveform[start:start + length]


def narrow_band(waveform: np.ndarray, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A telephone or narrowband channel: resampled down to a rate from `NARROW_BAND_RATES` and back up."""
    rate = int(rng.choice(NARROW_BAND_RATES))
    low = soxr.resample(waveform, sampling_rate, rate, quality="HQ")
    return fit_length(soxr.resample(low, rate, sampling_rate, quality="HQ"), len(waveform))


def synthetic_room_response(sampling_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: the direct sound, then Gaussian noise decaying by 60 dB in `rt60`
    seconds, the statistical model of late reverberation (Polack 1988)."""
    length = max(1, int(rt60 * sampling_rate))
    t = np.arange(length) / sampling_rate
    response = rng.standard_normal(length) * np.exp(-6.908 * t / rt60)  # ln(1000) = 6.908: -60 dB at rt60
    # The tail starts a few milliseconds after the direct sound, as the first reflections do.
    response[: int(0.003 * sampling_rate)] = 0.0
    response *= 10 ** (rng.uniform(-12.0, 0.0) / 20) / (np.sqrt(np.sum(response ** 2)) + 1e-12)
    response[0] = 1.0
    return response.astype(np.float32)


def reverberate(waveform: np.ndarray, sampling_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """The clip played in a room of reverberation time `rt60` seconds, same length and peak level."""
    wet = fftconvolve(waveform, synthetic_room_response(sampling_rate, rt60, rng))[: len(waveform)]
    peak = np.abs(wet).max()
    return (wet * (np.abs(waveform).max() / peak) if peak > 0 else wet).astype(np.float32)


def mix_at_snr(waveform: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Adds `noise` (same length) scaled so that the signal-to-noise ratio is `snr_db`."""
    signal_power = float(np.mean(waveform ** 2)) + 1e-12
    noise_power = float(np.mean(noise ** 2)) + 1e-12
    return (waveform + noise * np.sqrt(signal_power / noise_power / 10 ** (snr_db / 10))).astype(np.float32)


def babble(length: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Several other speakers talking at once: the sum of random stretches of `others`, each looped
    to `length` samples and brought to the same power first."""
    total = np.zeros(length, dtype=np.float32)
    for other in others:
        looped = np.resize(other, length)  # repeats a short clip end to end
        looped = np.roll(looped, int(rng.integers(0, length)))
        total += looped / (np.sqrt(np.mean(looped ** 2)) + 1e-6)
    return total


def change_level(waveform: np.ndarray, gain_db: float) -> np.ndarray:
    """The clip `gain_db` louder (negative: quieter) as a 16-bit recording stores it: quiet
    recordings lose resolution, and that quantisation noise is what the model must learn to ignore."""
    scaled = np.clip(waveform * 10 ** (gain_db / 20), -1.0, 1.0)
    return (np.round(scaled * 32767.0) / 32767.0).astype(np.float32)


@dataclass
class AugmentationSettings:
    """Probabilities and ranges of each augmentation (filled from `SERTrainingArguments`).

    Args:
        window (`int`): samples per training crop.
        sampling_rate (`int`): the model's rate.
        speed_probability, speed_range: speed change (tempo and pitch together).
        reverb_probability, reverb_rt60: synthetic room, reverberation time range in seconds.
        babble_probability, babble_speakers, babble_snr_db: other training clips talking underneath.
        noise_probability, noise_snr_db: white noise.
        narrow_band_probability: telephone or narrowband channel.
        level_probability, level_db: gain change stored as 16-bit.
    """

    window: int
    sampling_rate: int
    speed_probability: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    reverb_probability: float = 0.0
    reverb_rt60: tuple[float, float] = (0.2, 0.8)
    babble_probability: float = 0.0
    babble_speakers: tuple[int, int] = (3, 6)
    babble_snr_db: tuple[float, float] = (5.0, 25.0)
    noise_probability: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    narrow_band_probability: float = 0.0
    level_probability: float = 0.0
    level_db: tuple[float, float] = (-40.0, 0.0)


class Augmenter:
    """Applies the augmentations of `AugmentationSettings` in the order sound meets them: the
    speaker (speed), the room (reverberation, other talkers, noise), then the channel (narrow band,
    recording level).

    It holds no generator of its own: every call draws from the one it is given, so a caller that
    derives a generator per item (`BalancedEpochs`) gets the same augmentation for that item in any
    process and in any order.

    Args:
        settings (`AugmentationSettings`): what to apply and how often.
        babble_pool (`list[np.ndarray]`): clips to draw other talkers from (the training clips).
    """

    def __init__(self, settings: AugmentationSettings, babble_pool: list[np.ndarray]):
        self.settings = settings
        self.babble_pool = babble_pool

    def __call__(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmented `waveform` (`np.ndarray` of shape `(samples,)`), at most `settings.window`
        samples long, with every random choice drawn from `rng` (`np.random.Generator`)."""
        s, rate = self.settings, self.settings.sampling_rate
        if rng.random() < s.speed_probability:
            waveform = change_speed(waveform, rate, rng.uniform(*s.speed_range))
        waveform = crop(waveform, s.window, rng)
        if rng.random() < s.reverb_probability:
            waveform = reverberate(waveform, rate, rng.uniform(*s.reverb_rt60), rng)
        if self.babble_pool and rng.random() < s.babble_probability:
            count = int(rng.integers(s.babble_speakers[0], s.babble_speakers[1] + 1))
            others = [self.babble_pool[i] for i in rng.integers(0, len(self.babble_pool), count)]
            waveform = mix_at_snr(waveform, babble(len(waveform), others, rng), rng.uniform(*s.babble_snr_db))
        if rng.random() < s.noise_probability:
            noise = rng.standard_normal(len(waveform)).astype(np.float32)
            waveform = mix_at_snr(waveform, noise, rng.uniform(*s.noise_snr_db))
        if rng.random() < s.narrow_band_probability:
            waveform = narrow_band(waveform, rate, rng)
        if rng.random() < s.level_probability:
            # Peak-normalise first so the gain range means the same for every corpus' recording level.
            waveform = change_level(waveform / (np.abs(waveform).max() + 1e-9), rng.uniform(*s.level_db))
        return waveform.astype(np.float32, copy=False)


__all__ = [
    "CODECS",
    "AugmentationSettings",
    "Augmenter",
    "babble",
    "change_level",
    "change_speed",
    "crop",
    "encode_decode",
    "mix_at_snr",
    "narrow_band",
    "reverberate",
    "synthetic_room_response",
]
