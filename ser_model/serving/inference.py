"""Whole-file and long-audio inference, shared by the CLI, the app and the benchmarks.

Audio up to one window (`config.window_seconds`) gives one decision. Longer audio is cut into
windows of that length every `config.window_hop_seconds` (`windows.sliding_windows`); windows are
classified in batches and the overall prediction is the mean of the probabilities of the windows that
are not silent. Files are decoded as a stream and windows are classified as they fill, so memory does
not grow with the length of the audio.

`EmotionRecognizer.from_pretrained()` with no name loads the model bundled with the repository
(`ser_model.bundled_model()`); the CLI and the app also read `$SER_MODEL` (`ser_model.model_info.model_source`).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..audio_io import AudioError, check_duration, open_audio, silence_error, to_mono_16k, validate_waveform
from ..configuration import VOICE_LABELS, SERConfig, has_speech
from ..errors import InputError
from ..feature_extractor import SERFeatureExtractor
from ..model_info import bundled_model
from ..modeling import SERForAudioClassification
from .prediction import Prediction, WindowPrediction
from .signal_view import Envelope, SignalView
from .torch_thread import TorchThread
from ..windows import sliding_windows

# How serving runs the model: "bfloat16" is torch's bfloat16 autocast, where the CPU multiplies bfloat16
# in hardware (Intel AMX or AVX512-BF16). The Whisper encoder's matrix products are nearly all of a
# prediction's time, and there they ran 2.2 times as fast, with the same top emotion on every one of 144
# validation clips and probabilities within 0.02 (bench/latency.py --bfloat16). Elsewhere
# bfloat16 is emulated, and slower, so "auto" keeps float32 there; training and the evaluation report
# are float32.
PRECISIONS = ("auto", "float32", "bfloat16")

ProgressCallback = Callable[[float, float | None], None]
"""Called with (seconds processed, total seconds or None when unknown)."""


class EmotionRecognizer:
    """Feature extractor + model with the windowing that turns audio of any length into predictions.

    Args:
        model (`SERForAudioClassification`): the trained model.
        feature_extractor (`SERFeatureExtractor`): its feature extractor.
        batch_size (`int`, *optional*, defaults to 16): windows per forward pass on long audio.
        precision (`str`, *optional*, defaults to `"auto"`): one of `PRECISIONS`; `"auto"` is `"bfloat16"` on
            a CPU that multiplies bfloat16 in hardware (`native_bfloat16`) for a float model, else `"float32"`.
        torch_thread (`TorchThread`, *optional*): run every feature extraction and forward pass on this one
            thread, for a server that calls the recognizer from many (see `serving.torch_thread`).
    """

    def __init__(self, model: SERForAudioClassification, feature_extractor: SERFeatureExtractor, batch_size: int = 16,
                 precision: str = "auto", torch_thread: TorchThread | None = None):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.config: SERConfig = model.config
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.precision = _resolve_precision(precision, model, self.device)
        self._forward_lock = threading.Lock()
        self.torch_thread = torch_thread
        self.labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        self.window = self.config.window_samples
        self.hop = self.config.window_hop_samples

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, revision: str | None = None,
                        device: str | None = None, int8: bool = False, one_torch_thread: bool = False,
                        **kwargs) -> "EmotionRecognizer":
        """Loads a saved model folder or Hub id.

        Args:
            name_or_path (`str`, *optional*): a model folder or a Hub id such as `org/name`; defaults to
                the model bundled with the repository (`ser_model.bundled_model()`), from any folder.
            revision (`str`, *optional*): Hub branch, tag or commit to pin.
            device (`str`, *optional*): `"cpu"`, `"cuda"`, ...; defaults to the GPU when there is one.
            int8 (`bool`, *optional*, defaults to `False`): run the Whisper branch's linear layers in
                dynamic int8 (`quantize_whisper_branch`); CPU only.
            one_torch_thread (`bool`, *optional*, defaults to `False`): load the model and run every torch call
                on one thread of the recognizer's own (`serving.torch_thread`), for servers such as the app.
        """
        name_or_path = bundled_model() if name_or_path is None else name_or_path
        _check_source(name_or_path)

        def load() -> tuple[SERForAudioClassification, SERFeatureExtractor]:
            model = SERForAudioClassification.from_pretrained(name_or_path, revision=revision)
            model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            # The feature extractor builds its filters with torch: on the same thread, for the same reason.
            feature_extractor = SERFeatureExtractor.from_pretrained(name_or_path, revision=revision)
            return quantize_whisper_branch(model) if int8 else model, feature_extractor

        torch_thread = TorchThread() if one_torch_thread else None
        model, feature_extractor = torch_thread.run(load) if torch_thread else load()
        return cls(model, feature_extractor, torch_thread=torch_thread, **kwargs)

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
            max_seconds (`float`, *optional*): refuse longer files (checked from the header before decoding
                where the format records the duration, else while decoding).
            progress (`ProgressCallback`, *optional*): told how many seconds are done.
            keep_view (`bool`, *optional*, defaults to `False`): keep a `SignalView` for pictures.

        Returns:
            `Prediction`, whose `notices` name a WAV truncated before the end its header promises.
        """
        with open_audio(path, self.sampling_rate, max_seconds=max_seconds) as audio:
            if audio.duration is not None:
                # Worded as `load_audio` words it, so a file gets the same sentence on every path.
                check_duration(audio.duration, self.config.min_audio_seconds, subject=f"'{audio.name}'")
            prediction = self.predict_stream(audio.blocks, total_seconds=audio.duration, progress=progress,
                                             subject=f"The audio in '{audio.name}'", keep_view=keep_view)
        if audio.notice is not None:
            prediction.notices.append(audio.notice)
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
            envelope = Envelope()
            blocks = envelope.tap(blocks)

        def flush() -> None:
            for (start, w), (probabilities, voice) in zip(pending, self.classify([w for _, w in pending])):
                windows.append(WindowPrediction(start / sr, (start + len(w)) / sr, probabilities, voice))
            pending.clear()
            if progress is not None:
                progress(windows[-1].end, total_seconds)

        for start, window, num_samples in sliding_windows(blocks, self.window, self.hop):
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

    def _signal_view(self, envelope: Envelope, first_window: np.ndarray) -> SignalView:
        # A picture of what the model hears: a long file's first window may be silent, and is drawn all the same.
        features = self._on_torch_thread(self.feature_extractor, first_window, sampling_rate=self.sampling_rate,
                                         truncation=False, check_audio=False)
        log_mel, mfcc = features["input_values"][0], features["input_mfcc"][0]
        seconds, low, high = envelope.result(self.sampling_rate)
        return SignalView(seconds, low, high, log_mel, mfcc,
                          feature_seconds=log_mel.shape[1] * self.config.hop_length / self.sampling_rate)

    def classify(self, waveforms: list[np.ndarray]) -> list[tuple[dict[str, float], dict[str, float] | None]]:
        """What one forward pass says of each 16 kHz mono float32 clip (no windowing: each clip is one
        decision, whatever its length): its emotion probabilities, and how its voice sounds
        (`VOICE_LABELS` -> probability; None for a model without a voice head). The caller has refused
        audio without speech or too short (`predict_*`, the live session): it is not checked again."""
        return self._on_torch_thread(self._classify, waveforms)

    def _on_torch_thread(self, function, *args, **kwargs):
        return self.torch_thread.run(function, *args, **kwargs) if self.torch_thread else function(*args, **kwargs)

    @torch.inference_mode()
    def _classify(self, waveforms: list[np.ndarray]) -> list[tuple[dict[str, float], dict[str, float] | None]]:
        features = self.feature_extractor(waveforms, sampling_rate=self.sampling_rate, truncation=False,
                                          return_tensors="pt", check_audio=False)
        inputs = {k: v.to(self.device) for k, v in features.items()}
        with self._forward_lock, torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                enabled=self.precision == "bfloat16"):
            output = self.model(**inputs)
        probabilities = output.logits.float().softmax(dim=-1).cpu().numpy()
        emotions = [dict(zip(self.labels, map(float, row))) for row in probabilities]
        if getattr(output, "voice_logits", None) is None:
            return [(emotion, None) for emotion in emotions]
        voices = output.voice_logits.float().softmax(dim=-1).cpu().numpy()
        return [(emotion, dict(zip(VOICE_LABELS, map(float, row)))) for emotion, row in zip(emotions, voices)]


def _mean_voice(windows: Sequence[WindowPrediction]) -> dict[str, float] | None:
    """How the voice sounds over the whole audio: the mean over the windows that have a voice."""
    voices = [w.voice for w in windows if w.voice is not None]
    if not voices:
        return None
    return {label: float(np.mean([v[label] for v in voices])) for label in VOICE_LABELS}


def quantize_whisper_branch(model: SERForAudioClassification) -> SERForAudioClassification:
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


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Intel AMX or AVX512-BF16), as torch reports it."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def _resolve_precision(precision: str, model: SERForAudioClassification, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    # An int8 model (quantize_whisper_branch) keeps its float32 activations.
    quantized = any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
    return "bfloat16" if device.type == "cpu" and not quantized and native_bfloat16() else "float32"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_inference_threads() -> int:
    """Sets torch's intra-op threads for serving to $OMP_NUM_THREADS when it is set, else to every
    available core, and returns the number: the one place the app and the CLI choose it.

    Every core, because `EmotionRecognizer` runs one forward pass at a time (its lock): requests served
    side by side would otherwise split the cores between their thread pools, and threads that wait for
    each other at every operation on shared cores made a 3.5 s clip take 3.1 s instead of 38 ms
    (docs/performance.md, "Threads"). One long file gets both of 2 cores: 1.9 times as fast."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(value) if value.isdigit() and int(value) > 0 else available_cores()
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


__all__ = ["PRECISIONS", "EmotionRecognizer", "ProgressCallback", "available_cores", "native_bfloat16",
           "quantize_whisper_branch", "set_inference_threads"]
