"""Whole-file and long-audio inference, shared by the CLI, the app and the benchmarks.

Audio up to one window (`config.window_seconds`) gives one decision. Longer audio is cut into
windows of that length every `config.window_hop_seconds`, the last one aligned to the end so that
every window is full length; windows are classified in batches and the overall prediction is the
mean of the probabilities of the windows that are not silent. Files are decoded as a stream and
windows are classified as they fill, so memory does not grow with the length of the audio.

`EmotionRecognizer.from_pretrained()` with no name loads the model bundled with the repository
(`ser_model.bundled_model()`); the CLI and the app also read `$SER_MODEL` (`ser_model.cli.model_source`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..audio_io import (AudioError, audio_duration, check_duration, silence_error, stream_audio,
                        to_mono_16k, truncation_notice, validate_waveform)
from ..configuration import VOICE_LABELS, SERConfig, has_speech, seconds_to_samples
from ..errors import InputError
from ..feature_extractor import SERFeatureExtractor
from ..model_info import bundled_model
from ..modeling import SERForAudioClassification

# A `SignalView` keeps between this many and twice as many min/max pairs of the waveform: a picture
# is about a thousand pixels wide, so that draws any length of audio without visible loss.
ENVELOPE_POINTS = 4000
# torch's intra-op threads for serving (the app, the CLI) unless OMP_NUM_THREADS says otherwise. One
# prediction is a series of small convolutions: split over two threads, each waits for the other at
# every operation, which costs nothing on idle cores but on cores shared with other work (a training
# run, other requests) made a 3.5 s clip take 3.1 s instead of 38 ms (README, "Threads"). The app gets
# its parallelism from serving several requests at once, the CLI from `--workers`.
INFERENCE_THREADS = 1

ProgressCallback = Callable[[float, float | None], None]
"""Called with (seconds processed, total seconds or None when unknown)."""


@dataclass
class WindowPrediction:
    """One window of the timeline; `probabilities` is None for a silent window, `voice` (how the voice
    sounds: `VOICE_LABELS` -> probability) None there and for models without a voice head."""

    start: float
    end: float
    probabilities: dict[str, float] | None
    voice: dict[str, float] | None = None

    @property
    def label(self) -> str | None:
        return None if self.probabilities is None else max(self.probabilities, key=self.probabilities.get)


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


@dataclass
class Prediction:
    """The overall emotion of a clip or file and, for long audio, its per-window timeline.

    `notices` are sentences about a result that stands but covers less than was asked (a truncated
    WAV); they travel with the result so that every surface can show them. `view` is kept only when
    asked (`keep_view=True`), for pictures, and is not part of `to_dict`. `voice` is whether the voice
    sounds female or male (mean over the spoken windows), from models with a voice head: a perception
    of the audio, never a fact about the person.
    """

    label: str
    probabilities: dict[str, float]
    duration: float
    windows: list[WindowPrediction] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    view: SignalView | None = None
    voice: dict[str, float] | None = None

    @property
    def voice_label(self) -> str | None:
        """"female" or "male" (how the voice sounds), or None without a voice head."""
        return None if self.voice is None else max(self.voice, key=self.voice.get)

    def to_dict(self, timeline: bool = True) -> dict:
        result = {"label": self.label, "probabilities": self.probabilities, "duration": round(self.duration, 3),
                  "warnings": list(self.notices)}
        if self.voice is not None:
            result["voice"] = self.voice
        if timeline:
            result["windows"] = [
                {"start": round(w.start, 3), "end": round(w.end, 3), "label": w.label, "probabilities": w.probabilities,
                 **({"voice": w.voice} if w.voice is not None else {})}
                for w in self.windows
            ]
        return result

    @classmethod
    def from_dict(cls, data: dict) -> "Prediction":
        """The inverse of `to_dict(timeline=True)`, for a prediction that travelled as JSON."""
        windows = [WindowPrediction(w["start"], w["end"], w["probabilities"], w.get("voice"))
                   for w in data.get("windows", [])]
        return cls(data["label"], data["probabilities"], data["duration"], windows, list(data.get("warnings", [])),
                   voice=data.get("voice"))


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
        self.hop = seconds_to_samples(self.config.window_hop_seconds, self.config.sampling_rate)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, revision: str | None = None,
                        device: str | None = None, int8: bool = False, **kwargs) -> "EmotionRecognizer":
        """Loads a saved model folder or Hub id.

        Args:
            name_or_path (`str`, *optional*): a model folder or a Hub id such as `org/name`; defaults to
                the model bundled with the repository (`ser_model.bundled_model()`), from any folder.
            revision (`str`, *optional*): Hub branch, tag or commit to pin.
            device (`str`, *optional*): `"cpu"`, `"cuda"`, ...; defaults to the GPU when there is one.
            int8 (`bool`, *optional*, defaults to `False`): run the speech encoder's linear layers in
                dynamic int8 (`quantize_speech_encoder`); CPU only.
        """
        name_or_path = bundled_model() if name_or_path is None else name_or_path
        _check_source(name_or_path)
        model = SERForAudioClassification.from_pretrained(name_or_path, revision=revision)
        feature_extractor = SERFeatureExtractor.from_pretrained(name_or_path, revision=revision)
        model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if int8:
            quantize_speech_encoder(model)
        return cls(model, feature_extractor, **kwargs)

    @staticmethod
    def load_labels(name_or_path: str | os.PathLike, revision: str | None = None) -> list[str]:
        """The labels of a saved model, in order, from its config alone (no weights are loaded)."""
        _check_source(name_or_path)
        config = SERConfig.from_pretrained(name_or_path, revision=revision)
        return [config.id2label[i] for i in range(config.num_labels)]

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    def predict_waveform(self, waveform: np.ndarray, sampling_rate: int, progress: ProgressCallback | None = None,
                         keep_view: bool = False) -> Prediction:
        """Predicts from samples in memory at any rate, mono or (frames, channels), int or float."""
        waveform = to_mono_16k(np.asarray(waveform), sampling_rate, self.sampling_rate)
        validate_waveform(waveform, self.sampling_rate, self.config.min_audio_seconds)
        return self.predict_stream([waveform], total_seconds=len(waveform) / self.sampling_rate, progress=progress,
                                   keep_view=keep_view)

    def predict_file(self, path: str | os.PathLike, max_seconds: float | None = None,
                     progress: ProgressCallback | None = None, keep_view: bool = False) -> Prediction:
        """Predicts from an audio file of any length, decoding it once, as a stream.

        Args:
            path (`str`): any format `ser_model.audio_io` reads.
            max_seconds (`float`, *optional*): refuse longer files (checked from the header before decoding).
            progress (`ProgressCallback`, *optional*): told how many seconds are done.
            keep_view (`bool`, *optional*, defaults to `False`): keep a `SignalView` for pictures.

        Returns:
            `Prediction`, whose `notices` name a WAV truncated before the end its header promises.
        """
        total = audio_duration(path)
        name = Path(path).name
        # Worded as `load_audio` words them, so a file gets the same sentence on every path.
        check_duration(total, self.config.min_audio_seconds, max_seconds, subject=f"'{name}'")
        prediction = self.predict_stream(stream_audio(path, self.sampling_rate), total_seconds=total,
                                         progress=progress, subject=f"The audio in '{name}'", keep_view=keep_view)
        notice = truncation_notice(path)
        if notice is not None:
            prediction.notices.append(notice)
        return prediction

    def predict_stream(self, blocks: Iterable[np.ndarray], total_seconds: float | None = None,
                       progress: ProgressCallback | None = None, subject: str = "The audio",
                       keep_view: bool = False) -> Prediction:
        """Predicts from consecutive blocks of 16 kHz mono float32 audio (the core of every path).

        A window without speech (`has_speech`: silence, hum or steady noise) is marked silent and left
        out of the overall mean: pauses in long recordings would otherwise pull the prediction towards
        whatever silence looks like. `subject` names the audio in error sentences (e.g. the file name).
        With `keep_view`, the envelope of the blocks and the features of the first window are kept
        as the prediction's `view`, in the same pass.
        """
        sr = self.sampling_rate
        windows: list[WindowPrediction] = []
        pending: list[tuple[int, np.ndarray]] = []
        num_samples = 0
        envelope, first_window = None, None
        if keep_view:
            envelope = _Envelope()
            blocks = envelope.tap(blocks)

        def flush() -> None:
            probabilities, voices = self.classify_with_voice([w for _, w in pending])
            for (start, w), probs, voice in zip(pending, probabilities, voices):
                windows.append(WindowPrediction(start / sr, (start + len(w)) / sr, probs, voice))
            pending.clear()
            if progress is not None:
                progress(windows[-1].end, total_seconds)

        for start, window, num_samples in _sliding_windows(blocks, self.window, self.hop):
            if start == 0:
                first_window = window
            if len(window) < self.window:
                # Only audio shorter than one window gives a short window: check it before the model sees it.
                check_duration(len(window) / sr, self.config.min_audio_seconds, subject=subject)
            if not has_speech(window, sr):
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
        view = None if envelope is None else self._signal_view(envelope, first_window)
        return Prediction(max(overall, key=overall.get), overall, num_samples / sr, windows, view=view,
                          voice=_mean_voice(windows))

    def _signal_view(self, envelope: "_Envelope", first_window: np.ndarray) -> SignalView:
        # A picture of what the model hears: a long file's first window may be silent, and is drawn all the same.
        features = self.feature_extractor(first_window, sampling_rate=self.sampling_rate, truncation=False,
                                          check_audio=False)
        log_mel, mfcc = features["input_values"][0], features["input_mfcc"][0]
        seconds, low, high = envelope.result(self.sampling_rate)
        return SignalView(seconds, low, high, log_mel, mfcc,
                          feature_seconds=log_mel.shape[1] * self.config.hop_length / self.sampling_rate)

    def classify_batch(self, waveforms: list[np.ndarray]) -> list[dict[str, float]]:
        """Emotion probabilities of each 16 kHz mono float32 clip, in one forward pass (no windowing:
        each clip is one decision, whatever its length)."""
        return self.classify_with_voice(waveforms)[0]

    @torch.inference_mode()
    def classify_with_voice(self, waveforms: list[np.ndarray]) -> tuple[list[dict[str, float]],
                                                                          list[dict[str, float] | None]]:
        """As `classify_batch`, plus how each clip's voice sounds (`VOICE_LABELS` -> probability; None for
        every clip of a model without a voice head)."""
        features = self.feature_extractor(waveforms, sampling_rate=self.sampling_rate, truncation=False,
                                          return_tensors="pt")
        device = next(self.model.parameters()).device
        output = self.model(**{k: v.to(device) for k, v in features.items()})
        probabilities = output.logits.float().softmax(dim=-1).cpu().numpy()
        emotions = [dict(zip(self.labels, map(float, row))) for row in probabilities]
        if getattr(output, "voice_logits", None) is None:
            return emotions, [None] * len(emotions)
        voices = output.voice_logits.float().softmax(dim=-1).cpu().numpy()
        return emotions, [dict(zip(VOICE_LABELS, map(float, row))) for row in voices]


def _mean_voice(windows: Sequence[WindowPrediction]) -> dict[str, float] | None:
    """How the voice sounds over the whole audio: the mean over the windows that have a voice."""
    voices = [w.voice for w in windows if w.voice is not None]
    if not voices:
        return None
    return {label: float(np.mean([v[label] for v in voices])) for label in VOICE_LABELS}


def quantize_speech_encoder(model: SERForAudioClassification) -> SERForAudioClassification:
    """Replaces the Whisper branch's linear layers, in place, by dynamically quantised int8 ones: weights
    stored in int8, activations quantised per batch. They hold nearly all of the encoder's compute; the
    convolutional front and the from-scratch branches stay in float32. The model must be on the CPU and is
    for inference only. A model without the Whisper branch is returned unchanged."""
    if "whisper" not in model.config.branches:
        return model
    if next(model.parameters()).device.type != "cpu":
        raise InputError("int8 runs on the CPU only: load the model with device='cpu'")
    with warnings.catch_warnings():
        # torch announces that this API moves to torchao; it works in the pinned torch, and torchao is
        # not among this project's packages.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.ao.quantization.quantize_dynamic(model.ser.whisper_encoder.encoder, {torch.nn.Linear},
                                               dtype=torch.qint8, inplace=True)
    return model.eval()


def set_inference_threads() -> int:
    """Sets torch's intra-op threads for serving to $OMP_NUM_THREADS when it is set, else to
    `INFERENCE_THREADS`, and returns the number: the one place the app and the CLI choose it."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(value) if value.isdigit() and int(value) > 0 else INFERENCE_THREADS
    torch.set_num_threads(threads)
    return threads


def _check_source(name_or_path: str | os.PathLike) -> None:
    """Plain sentences, at once, instead of transformers' errors for a missing folder or a name that is
    not `org/name`: transformers would take a bare name such as `model` for a Hub id and retry the
    network for about 20 s before failing."""
    name = str(name_or_path)
    if _looks_like_path(name):
        if not (Path(name).expanduser() / "config.json").is_file():
            raise OSError(f"No model folder at {name} (a folder with config.json and model.safetensors).")
    elif not _is_hub_id(name):
        raise InputError(f"'{name}' is neither a model folder in {Path.cwd()} nor a Hub id such as org/name.")


def _is_hub_id(name: str) -> bool:
    """`org/name`: a valid repository id with its owner. Bare names are the Hub's legacy ids (`gpt2`);
    a model of this kind always has an owner, so a bare name is a folder that is not here."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" in name


def _looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `org/name`; anything else, or anything that exists here, is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or Path(name).exists()


class _Envelope:
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


__all__ = ["INFERENCE_THREADS", "EmotionRecognizer", "Prediction", "Segment", "SignalView", "WindowPrediction",
           "merge_segments", "quantize_speech_encoder", "set_inference_threads", "window_spans"]
