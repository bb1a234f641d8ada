"""Whole-file and long-audio inference, shared by the CLI, the app and the benchmarks.

Audio up to one window (`config.window_seconds`) gives one decision. Longer audio is cut into
windows of that length every `config.window_hop_seconds`, the last one aligned to the end so that
every window is full length; windows are classified in batches and the overall prediction is the
mean of the probabilities of the windows that are not silent. Files are decoded as a stream and
windows are classified as they fill, so memory does not grow with the length of the audio.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers.utils import cached_file

from ..audio_io import (SILENCE_PEAK, AudioError, audio_duration, check_duration, silence_error, stream_audio,
                       to_mono_16k, validate_waveform)
from ..configuration import SERConfig
from ..errors import InputError
from ..feature_extractor import SERFeatureExtractor
from ..modeling import SERForAudioClassification

# The bundled model: the default everywhere, so the app and CLI run offline on a fresh clone.
BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "model"

ProgressCallback = Callable[[float, float | None], None]
"""Called with (seconds processed, total seconds or None when unknown)."""


@dataclass
class WindowPrediction:
    """One window of the timeline; `probabilities` is None for a silent window."""

    start: float
    end: float
    probabilities: dict[str, float] | None

    @property
    def label(self) -> str | None:
        return None if self.probabilities is None else max(self.probabilities, key=self.probabilities.get)


@dataclass
class Prediction:
    """The overall emotion of a clip or file and, for long audio, its per-window timeline."""

    label: str
    probabilities: dict[str, float]
    duration: float
    windows: list[WindowPrediction] = field(default_factory=list)

    def to_dict(self, timeline: bool = True) -> dict:
        result = {"label": self.label, "probabilities": self.probabilities, "duration": round(self.duration, 3)}
        if timeline:
            result["windows"] = [
                {"start": round(w.start, 3), "end": round(w.end, 3), "label": w.label, "probabilities": w.probabilities}
                for w in self.windows
            ]
        return result

    @classmethod
    def from_dict(cls, data: dict) -> "Prediction":
        """The inverse of `to_dict(timeline=True)`, for a prediction that travelled as JSON."""
        windows = [WindowPrediction(w["start"], w["end"], w["probabilities"]) for w in data.get("windows", [])]
        return cls(data["label"], data["probabilities"], data["duration"], windows)


@dataclass
class Segment:
    """Consecutive windows with the same emotion, merged: the stretch of time they speak for, and
    the mean probability of that emotion over them. `label` is None for a silent stretch."""

    start: float
    end: float
    label: str | None
    confidence: float | None


def window_spans(windows: Sequence[WindowPrediction]) -> list[tuple[float, float]]:
    """The stretch of time each window speaks for, so that overlapping windows tile the audio.

    Windows overlap (4 s every 2 s, and the last one is aligned to the end), so each is given the
    time nearer to its centre than to any other window's: boundaries sit halfway between
    consecutive centres, the first span starts where the audio starts and the last ends where it
    ends. A 4.1 s file's windows 0-4 and 0.1-4.1 become 0-2.05 and 2.05-4.1.
    """
    if not windows:
        return []
    centres = [(w.start + w.end) / 2 for w in windows]
    bounds = [windows[0].start] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [windows[-1].end]
    return list(zip(bounds, bounds[1:]))


def merge_segments(windows: Sequence[WindowPrediction]) -> list[Segment]:
    """Consecutive windows (in time order) with the same top emotion, or all silent, as one segment each."""
    segments: list[Segment] = []
    confidences: list[list[float]] = []
    for window, (start, end) in zip(windows, window_spans(windows)):
        if segments and segments[-1].label == window.label:
            segments[-1].end = end
        else:
            segments.append(Segment(start, end, window.label, None))
            confidences.append([])
        if window.label is not None:
            confidences[-1].append(window.probabilities[window.label])
    for segment, values in zip(segments, confidences):
        segment.confidence = float(np.mean(values)) if values else None
    return segments


def model_source() -> tuple[str, str | None]:
    """The model to load: `SER_MODEL` (a folder or Hub id) and `SER_MODEL_REVISION`, else the bundled model."""
    return os.environ.get("SER_MODEL") or str(BUNDLED_MODEL), os.environ.get("SER_MODEL_REVISION") or None


class EmotionRecognizer:
    """Feature extractor + model with the windowing that turns audio of any length into predictions.

    Args:
        model (`SERForAudioClassification`): the trained model.
        feature_extractor (`SERFeatureExtractor`): its feature extractor.
        batch_size (`int`, *optional*, defaults to 16): windows per forward pass on long audio.
    """

    def __init__(self, model: SERForAudioClassification, feature_extractor: SERFeatureExtractor, batch_size: int = 16):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.config: SERConfig = model.config
        self.batch_size = batch_size
        self.labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        self.window = self.config.window_samples
        self.hop = round(self.config.window_hop_seconds * self.config.sampling_rate)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, revision: str | None = None,
                        device: str | None = None, **kwargs) -> "EmotionRecognizer":
        """Loads a saved model folder or Hub id (default: `model_source()`).

        Args:
            name_or_path (`str`, *optional*): a model folder or a Hub id such as `org/name`.
            revision (`str`, *optional*): Hub branch, tag or commit to pin.
            device (`str`, *optional*): `"cpu"`, `"cuda"`, ...; defaults to the GPU when there is one.
        """
        if name_or_path is None:
            name_or_path, revision = model_source()
        _check_source(name_or_path)
        model = SERForAudioClassification.from_pretrained(name_or_path, revision=revision)
        feature_extractor = SERFeatureExtractor.from_pretrained(name_or_path, revision=revision)
        model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(model, feature_extractor, **kwargs)

    @staticmethod
    def load_training_corpora(name_or_path: str | os.PathLike, revision: str | None = None) -> list[str] | None:
        """The corpora a saved model was trained on, from the `training.json` saved with it (or, for
        models saved before it named them, the corpora of its `split.json`); `None` when the folder
        or Hub repository holds neither."""

        for name, read in (("training.json", lambda data: data.get("corpora")),
                           ("split.json", lambda data: sorted(data.get("corpora", {})) or None)):
            path = cached_file(str(name_or_path), name, revision=revision, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False)
            corpora = read(json.loads(Path(path).read_text())) if path else None
            if corpora:
                return corpora
        return None

    @staticmethod
    def load_labels(name_or_path: str | os.PathLike, revision: str | None = None) -> list[str]:
        """The labels of a saved model, in order, from its config alone (no weights are loaded)."""
        _check_source(name_or_path)
        config = SERConfig.from_pretrained(name_or_path, revision=revision)
        return [config.id2label[i] for i in range(config.num_labels)]

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    def predict_waveform(self, waveform: np.ndarray, sampling_rate: int,
                         progress: ProgressCallback | None = None) -> Prediction:
        """Predicts from samples in memory at any rate, mono or (frames, channels), int or float."""
        waveform = to_mono_16k(np.asarray(waveform), sampling_rate, self.sampling_rate)
        validate_waveform(waveform, self.sampling_rate, self.config.min_audio_seconds)
        return self.predict_stream([waveform], total_seconds=len(waveform) / self.sampling_rate, progress=progress)

    def predict_file(self, path: str | os.PathLike, max_seconds: float | None = None,
                     progress: ProgressCallback | None = None) -> Prediction:
        """Predicts from an audio file of any length, decoding it as a stream.

        Args:
            path (`str`): any format `ser_model.audio_io` reads.
            max_seconds (`float`, *optional*): refuse longer files (checked from the header before decoding).
            progress (`ProgressCallback`, *optional*): told how many seconds are done.
        """
        total = audio_duration(path)
        name = Path(path).name
        # Worded as `load_audio` words them, so a file gets the same sentence on every path.
        check_duration(total, self.config.min_audio_seconds, max_seconds, subject=f"'{name}'")
        return self.predict_stream(stream_audio(path, self.sampling_rate), total_seconds=total, progress=progress,
                                   subject=f"The audio in '{name}'")

    def predict_stream(self, blocks: Iterable[np.ndarray], total_seconds: float | None = None,
                       progress: ProgressCallback | None = None, subject: str = "The audio") -> Prediction:
        """Predicts from consecutive blocks of 16 kHz mono float32 audio (the core of every path).

        A window with nothing louder than `SILENCE_PEAK` is marked silent and left out of the
        overall mean: pauses in long recordings would otherwise pull the prediction towards whatever
        silence looks like. `subject` names the audio in error sentences (e.g. the file name).
        """
        sr = self.sampling_rate
        windows: list[WindowPrediction] = []
        pending: list[tuple[int, np.ndarray]] = []
        num_samples = 0

        def flush() -> None:
            probabilities = self.classify_batch([w for _, w in pending])
            for (start, w), probs in zip(pending, probabilities):
                windows.append(WindowPrediction(start / sr, (start + len(w)) / sr, probs))
            pending.clear()
            if progress is not None:
                progress(windows[-1].end, total_seconds)

        for start, window, num_samples in _sliding_windows(blocks, self.window, self.hop):
            if len(window) < self.window:
                # Only audio shorter than one window gives a short window: check it before the model sees it.
                check_duration(len(window) / sr, self.config.min_audio_seconds, subject=subject)
            if np.abs(window).max() < SILENCE_PEAK:
                windows.append(WindowPrediction(start / sr, (start + len(window)) / sr, None))
                continue
            pending.append((start, window))
            if len(pending) == self.batch_size:
                flush()
        if pending:
            flush()

        if num_samples == 0:
            raise AudioError(f"{subject} is empty: it contains no samples.")
        spoken = [w.probabilities for w in windows if w.probabilities is not None]
        if not spoken:
            raise silence_error(subject)
        windows.sort(key=lambda w: w.start)
        overall = {label: float(np.mean([p[label] for p in spoken])) for label in self.labels}
        return Prediction(max(overall, key=overall.get), overall, num_samples / sr, windows)

    @torch.inference_mode()
    def classify_batch(self, waveforms: list[np.ndarray]) -> list[dict[str, float]]:
        """Emotion probabilities of each 16 kHz mono float32 clip, in one forward pass (no windowing:
        each clip is one decision, whatever its length)."""
        features = self.feature_extractor(waveforms, sampling_rate=self.sampling_rate, truncation=False,
                                          return_tensors="pt")
        device = next(self.model.parameters()).device
        logits = self.model(**{k: v.to(device) for k, v in features.items()}).logits
        probabilities = logits.float().softmax(dim=-1).cpu().numpy()
        return [dict(zip(self.labels, map(float, row))) for row in probabilities]


def _check_source(name_or_path: str | os.PathLike) -> None:
    """Plain sentences instead of transformers' errors for a missing folder or a malformed Hub id."""
    name = str(name_or_path)
    if _looks_like_path(name):
        if not (Path(name).expanduser() / "config.json").is_file():
            raise OSError(f"No model folder at {name} (a folder with config.json and model.safetensors).")
    elif not _is_hub_id(name):
        raise InputError(f"'{name}' is neither a model folder nor a Hub id such as org/name.")


def _is_hub_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `org/name`; anything else, or anything that exists here, is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or Path(name).exists()


def _sliding_windows(blocks: Iterable[np.ndarray], window: int, hop: int) -> Iterator[tuple[int, np.ndarray, int]]:
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


__all__ = ["BUNDLED_MODEL", "EmotionRecognizer", "Prediction", "Segment", "WindowPrediction", "merge_segments",
           "model_source", "window_spans"]
