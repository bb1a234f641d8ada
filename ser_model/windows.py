"""Sliding windows over a stream of audio blocks: how audio of any length becomes model windows, in memory
that does not grow with its length."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def sliding_windows(blocks: Iterable[np.ndarray], window: int, hop: int) -> Iterator[tuple[int, np.ndarray, int]]:
    """Yields (start sample, window samples, samples read so far) over a stream of blocks.

    Windows start every `hop` samples; audio no longer than one window is one window of its own
    length; otherwise a last window is aligned to the end when the regular ones miss the tail.
    Only the samples a future window can still need are kept.
    """
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # absolute index of buffer[0]
    next_start = 0
    covered = 0  # end of the last window yielded
    total = 0
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        total += len(block)
        while next_start + window <= total:
            offset = next_start - buffer_start
            yield next_start, buffer[offset:offset + window].copy(), total
            covered = next_start + window
            next_start += hop
        # A future regular window starts at next_start; the end-aligned one at (final total - window).
        keep_from = max(buffer_start, min(next_start, total - window))
        buffer = buffer[keep_from - buffer_start:]
        buffer_start = keep_from
    if total and covered < total:
        start = max(0, total - window)
        yield start, buffer[start - buffer_start:].copy(), total


__all__ = ["sliding_windows"]
