"""Live emotion while someone speaks: the microphone's chunks in, the current emotion out.

`LiveSession` holds one person's stream. Each chunk (a tenth of a second of audio, at the browser's
rate) is converted to 16 kHz mono by one resampler for the whole stream (`audio_io.StreamConverter`:
resampling each chunk apart would leave a seam at every boundary) and appended to a buffer that keeps
only the last model window; once a second the newest window (the last `config.window_seconds`, or all
there is at the start) is classified. Memory stays bounded however long someone talks: the audio
buffer is one window, and the timeline keeps the last `max_history_seconds` of windows, while the
whole-recording emotion is a running sum over every window ever classified. Given a `recording` file,
the session also appends everything it hears there (16 kHz 16-bit PCM, about 2 MB a minute, on disk
rather than in memory), so that the recording can be replayed and downloaded after Stop. No UI code
here: the app wires it to Gradio.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from ..audio_io import AudioError, StreamConverter
from ..configuration import has_speech, seconds_to_samples
from .inference import EmotionRecognizer
from .prediction import Prediction, WindowPrediction

# How often the newest window is classified, in seconds of new audio. Gradio 6.31's audio component
# sends the microphone every 0.1 s whatever `stream_every` says (its frontend sets it), and a person
# cannot follow ten updates a second, so chunks in between only fill the buffer.
CLASSIFY_EVERY_SECONDS = 1.0
# Timeline windows kept per session: 5 minutes of history at one window per second is 300 small
# dicts (about 100 kB); older windows drop off the timeline but still count in the overall emotion.
MAX_HISTORY_SECONDS = 300.0


@dataclass
class LiveSession:
    """One person's live stream.

    Args:
        sampling_rate (`int`): the model's sampling rate.
        window_samples (`int`): samples in one model window (the most audio kept).
        min_samples (`int`): the least audio worth classifying (the model's minimum duration).
        labels (`list[str]`): the model's labels, in order.
        max_history_seconds (`float`, *optional*, defaults to `MAX_HISTORY_SECONDS`): timeline kept.
        every_seconds (`float`, *optional*, defaults to `CLASSIFY_EVERY_SECONDS`): new audio between two decisions.
        recording (`str`, *optional*): a file to which every chunk is appended as raw 16-bit PCM at
            `sampling_rate` (`save_recording` turns it into a WAV); nothing is kept when None.
    """

    sampling_rate: int
    window_samples: int
    min_samples: int
    labels: list[str]
    max_history_seconds: float = MAX_HISTORY_SECONDS
    every_seconds: float = CLASSIFY_EVERY_SECONDS
    received_seconds: float = 0.0  # audio received, by the chunks' own rate (what paces the decisions)
    classified_at: float = 0.0  # received_seconds when the newest window was classified
    started: float = field(default_factory=time.monotonic)
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    total_samples: int = 0
    history: deque = field(default_factory=deque)
    probability_sums: np.ndarray | None = None
    spoken_windows: int = 0
    recording: str | None = None
    converter: StreamConverter = field(init=False)

    def __post_init__(self) -> None:
        self.converter = StreamConverter(self.sampling_rate)

    @classmethod
    def for_recognizer(cls, recognizer: EmotionRecognizer, **kwargs) -> "LiveSession":
        config = recognizer.config
        return cls(config.sampling_rate, config.window_samples,
                   max(1, seconds_to_samples(config.min_audio_seconds, config.sampling_rate)), list(recognizer.labels),
                   **kwargs)

    @property
    def seconds(self) -> float:
        """Audio received so far, in seconds."""
        return self.total_samples / self.sampling_rate

    def skipped_fraction(self) -> float:
        """Share of the time since the session started whose audio never arrived here: Gradio gives a
        stream only its newest chunk when the server is busy, and the page should say so."""
        elapsed = time.monotonic() - self.started
        return max(0.0, 1.0 - self.seconds / elapsed) if elapsed > 0 else 0.0

    def add_chunk(self, recognizer: EmotionRecognizer, samples: np.ndarray,
                  sampling_rate: int) -> WindowPrediction | None:
        """Appends a chunk and classifies the newest window once `every_seconds` of new audio has come
        (at once for the first window); None otherwise, or while there is too little audio.

        Args:
            recognizer (`EmotionRecognizer`): the loaded model (not kept: sessions stay small).
            samples (`np.ndarray` of shape `(num_samples,)` or `(num_samples, channels)`): int or float PCM.
            sampling_rate (`int`): the chunk's rate.
        """
        chunk = self.converter.convert(samples, sampling_rate)
        self.received_seconds += len(samples) / sampling_rate
        self.total_samples += len(chunk)
        self._record(chunk)
        self.buffer = np.concatenate([self.buffer, chunk])[-self.window_samples:]
        if len(self.buffer) < self.min_samples or len(chunk) == 0:
            return None
        # Paced by the audio received rather than by the resampler's output, which comes in uneven pieces
        # (7,829 samples, then 8,319, for 0.5 s chunks at 48 kHz); the tolerance absorbs float sums of 0.1 s.
        if self.history and self.received_seconds - self.classified_at < self.every_seconds - 1e-6:
            return None
        self.classified_at = self.received_seconds
        start = (self.total_samples - len(self.buffer)) / self.sampling_rate
        probabilities = None
        if has_speech(self.buffer, self.sampling_rate):
            # Same silence rule as files (ser_model.serving.inference): a silent window is shown, not classified.
            ((probabilities, _),) = recognizer.classify([self.buffer])  # the live page does not say how voices sound
            values = np.array([probabilities[label] for label in self.labels])
            self.probability_sums = values if self.probability_sums is None else self.probability_sums + values
            self.spoken_windows += 1
        window = WindowPrediction(start, self.seconds, probabilities)
        self.history.append(window)
        while self.history and self.history[0].end < self.seconds - self.max_history_seconds:
            self.history.popleft()
        return window

    def overall(self) -> dict[str, float] | None:
        """Mean probabilities over every non-silent window since the start; None before the first one."""
        if not self.spoken_windows:
            return None
        return dict(zip(self.labels, map(float, self.probability_sums / self.spoken_windows)))

    def prediction(self) -> Prediction | None:
        """The whole recording so far as a `Prediction`: the overall emotion, and the kept timeline."""
        overall = self.overall()
        if overall is None:
            return None
        return Prediction(max(overall, key=overall.get), overall, self.seconds, list(self.history))

    def _record(self, chunk: np.ndarray) -> None:
        if self.recording is not None:
            with open(self.recording, "ab") as out:
                out.write((np.clip(chunk, -1.0, 1.0) * 32767).astype("<i2").tobytes())

    def save_recording(self, path) -> str | None:
        """Writes what the session heard (its `recording`, with the resampler's last samples: the stream
        has ended) as a 16-bit WAV at `path` and removes the raw file; returns the WAV's path, or None
        when nothing was kept."""
        tail = self.converter.flush()
        self.total_samples += len(tail)
        self._record(tail)
        raw = Path(self.recording) if self.recording else None
        if raw is None or not raw.is_file() or raw.stat().st_size == 0:
            return None
        sf.write(path, np.fromfile(raw, dtype="<i2"), self.sampling_rate, subtype="PCM_16")
        raw.unlink()
        self.recording = None
        return str(path)


def read_chunk(path) -> tuple[np.ndarray, int]:
    """The samples and rate of one chunk the browser recorded (a short WAV file), channels last.

    Read directly rather than through `audio_io.load_audio`: a chunk is a tenth of a second, below
    the minimum a whole recording must last, and `LiveSession` converts and checks it itself.
    """
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError("The microphone sent audio that could not be read; please start again.") from error
    return samples, rate


__all__ = ["CLASSIFY_EVERY_SECONDS", "MAX_HISTORY_SECONDS", "LiveSession", "read_chunk"]
