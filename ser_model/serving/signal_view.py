"""What a prediction heard, kept for its pictures: the waveform's envelope and the first window's features,
gathered while the audio streams through the model so that drawing them needs no second decoding."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

# A `SignalView` keeps between this many and twice as many min/max pairs of the waveform: a picture
# is about a thousand pixels wide, so that draws any length of audio without visible loss.
ENVELOPE_POINTS = 4000


@dataclass
class SignalView:
    """What a prediction heard, kept while it was made so that drawing it needs no second decoding.

    Args:
        envelope_seconds (`np.ndarray` of shape `(points,)`): start time of each envelope bin.
        envelope_low (`np.ndarray` of shape `(points,)`): the lowest sample in each bin.
        envelope_high (`np.ndarray` of shape `(points,)`): the highest sample in each bin.
        log_mel (`np.ndarray` of shape `(n_mels, frames)`): the model's log-mel input for the first window.
        mfcc (`np.ndarray` of shape `(n_mfcc, frames)`): the model's MFCC input for the first window.
        feature_seconds (`float`): the audio the features cover (the first window, or all of shorter audio).
    """

    envelope_seconds: np.ndarray
    envelope_low: np.ndarray
    envelope_high: np.ndarray
    log_mel: np.ndarray
    mfcc: np.ndarray
    feature_seconds: float


class Envelope:
    """Min/max of consecutive bins of samples, accumulated block by block: the waveform as a picture
    draws it, in memory that does not grow with the audio. Bins start one sample wide and double
    (neighbours merge) whenever there are more than twice `points`, so the length need not be known.
    """

    def __init__(self, points: int = ENVELOPE_POINTS):
        self.points = points
        self.bin = 1
        self.low = np.zeros(0, dtype=np.float32)
        self.high = np.zeros(0, dtype=np.float32)
        self.partial: tuple[float, float, int] | None = None  # (low, high, samples) after the last full bin

    def tap(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yields `blocks` unchanged, adding each to the envelope on the way."""
        for block in blocks:
            self.add(np.asarray(block, dtype=np.float32))
            yield block

    def add(self, block: np.ndarray) -> None:
        if self.partial is not None and len(block):
            take = min(self.bin - self.partial[2], len(block))
            self.partial = self._merge(self.partial, block[:take])
            block = block[take:]
            if self.partial[2] == self.bin:
                self._append(np.array([self.partial[0]]), np.array([self.partial[1]]))
                self.partial = None
        full = len(block) // self.bin * self.bin
        bins = block[:full].reshape(-1, self.bin)
        self._append(bins.min(axis=1), bins.max(axis=1))
        if full < len(block):
            self.partial = self._merge(None, block[full:])
        while len(self.low) > 2 * self.points:
            self._double()

    def result(self, sampling_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start of each bin in seconds, lows, highs); the last bin may be narrower."""
        low, high = self.low, self.high
        if self.partial is not None:
            low, high = np.append(low, self.partial[0]), np.append(high, self.partial[1])
        return np.arange(len(low)) * self.bin / sampling_rate, low, high

    def _append(self, low: np.ndarray, high: np.ndarray) -> None:
        self.low = np.concatenate([self.low, low.astype(np.float32)])
        self.high = np.concatenate([self.high, high.astype(np.float32)])

    @staticmethod
    def _merge(partial: tuple[float, float, int] | None, samples: np.ndarray) -> tuple[float, float, int]:
        low, high, count = partial or (np.inf, -np.inf, 0)
        return min(low, float(samples.min())), max(high, float(samples.max())), count + len(samples)

    def _double(self) -> None:
        """Merges neighbouring bins; an odd last bin starts the partial bin of the doubled width."""
        even = len(self.low) // 2 * 2
        if even < len(self.low):
            low, high, count = self.partial or (np.inf, -np.inf, 0)
            self.partial = (min(low, float(self.low[-1])), max(high, float(self.high[-1])), count + self.bin)
        self.low = self.low[:even].reshape(-1, 2).min(axis=1)
        self.high = self.high[:even].reshape(-1, 2).max(axis=1)
        self.bin *= 2


__all__ = ["ENVELOPE_POINTS", "Envelope", "SignalView"]
