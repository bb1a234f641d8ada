"""Feature extractor: 16 kHz mono audio -> normalised log-mel spectrogram and MFCCs, and Whisper's
log-mel for models with the Whisper branch.

One of the three Hub files: it imports nothing of the project but its siblings.
"""

import difflib
import inspect

import numpy as np
import torch
import torchaudio
from transformers import BatchFeature, SequenceFeatureExtractor, WhisperFeatureExtractor
from transformers.utils import logging

from .configuration import (FRONT_END_DEFAULTS, SERConfig, has_speech, seconds_to_samples, silence_message,
                            too_short_message)

logger = logging.get_logger(__name__)

# Floor inside the logarithm, so digital silence gives a finite value instead of -inf. With the
# level normalised to REFERENCE_RMS it sits about 80 dB below the speech, under 16-bit
# quantisation noise, whatever the recording level.
LOG_FLOOR = 1e-6
# Every clip is scaled to this RMS (-20 dBFS, a usual speech level) before any branch sees it, so that
# no branch depends on the recording level: the mel and MFCC branches' per-utterance normalisation
# removes gain, but their log floor does not move with it, and Whisper's log-mel is absolute (clamped
# 80 dB below its maximum, then shifted by a constant), so a clip 30 dB quieter was a different input.
REFERENCE_RMS = 0.1
# Keeps the per-utterance normalisation finite on constant input.
NORM_EPS = 1e-5
# What transformers writes into preprocessor_config.json besides the arguments (and then passes back to
# `__init__`): `feature_extractor_type` (`FeatureExtractionMixin.to_dict`), `feature_size` and
# `padding_side` (`SequenceFeatureExtractor`'s attributes), `auto_map` (`save_pretrained` of a class
# registered for `AutoFeatureExtractor`) and `processor_class` (`ProcessorMixin.save_pretrained`).
SAVED_KEYS = ("feature_extractor_type", "feature_size", "padding_side", "auto_map", "processor_class")


class SERFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns 16 kHz mono audio into the two inputs of [`SERForAudioClassification`]:

    - `input_values`: log-mel spectrogram, normalised per utterance by one mean and one standard
      deviation over all its bands and real frames. A scalar normalisation removes the recording
      gain but keeps the spectral tilt, which carries much of the arousal cue (e.g. angry speech
      has more high-frequency energy).
    - `input_mfcc`: MFCCs (DCT-II of the same log-mel spectrogram), with cepstral mean and variance
      normalisation per coefficient, the usual channel compensation for MFCCs.
    - `input_features` and `whisper_attention_mask`, only for a model with the Whisper branch
      (`whisper_num_mel_bins` set): Whisper's own log-mel (transformers' `WhisperFeatureExtractor`,
      100 frames per second) of each clip, computed on the clip alone and then padded, instead of on
      30 s of padding.

    Audio longer than `window_seconds` is truncated (set `truncation=False` to keep it whole); use
    `ser_model.serving` for windowed long-audio prediction. It never resamples: a wrong
    `sampling_rate` is an error, and `ser_model.audio_io` loads and resamples files. Audio shorter than
    `min_audio_seconds`, or without speech in what the model would see (`configuration.has_speech`:
    silence, hum or steady noise, at any level), is refused with the sentences the app and the CLI give,
    so that `pipeline("audio-classification", ...)` does not answer confidently on silence or a hum.

    Args (keyword-only; the front-end ones, `sampling_rate` to `min_audio_seconds`, default to
    `configuration.FRONT_END_DEFAULTS`, shared with `SERConfig`):
        sampling_rate (`int`, *optional*, defaults to 16000): sampling rate of the input in Hz.
        n_fft (`int`, *optional*, defaults to 400): FFT size and window length in samples.
        hop_length (`int`, *optional*, defaults to 160): hop between frames in samples.
        n_mels (`int`, *optional*, defaults to 64): mel bands.
        n_mfcc (`int`, *optional*, defaults to 40): MFCCs kept.
        f_min (`float`, *optional*, defaults to 20.0): lowest mel frequency in Hz.
        f_max (`float`, *optional*, defaults to 8000.0): highest mel frequency in Hz.
        window_seconds (`float`, *optional*, defaults to 4.0): longest audio for one decision.
        min_audio_seconds (`float`, *optional*, defaults to 0.25): shorter audio is refused. Feature
            extractors saved before this existed load with the default, the value every model so far used.
        normalize_level (`bool`, *optional*, defaults to `True`): scale each clip to `REFERENCE_RMS`
            first, in front of every branch, so the features do not depend on the recording level.
            Models trained before this existed save `False`, which scales only audio louder than full
            scale down to a peak of 1.
        whisper_num_mel_bins (`int`, *optional*): mel bins of the Whisper branch's encoder
            (`config.speech_encoder.num_mel_bins`); `None` for models without that branch.
        padding_value (`float`, *optional*, defaults to 0.0): value of padded frames.
        return_attention_mask (`bool`, *optional*, defaults to `True`): return the frame mask.
        **saved_keys: only the keys transformers saves beside these (`SAVED_KEYS`), so that
            `from_pretrained` loads what `save_pretrained` wrote; any other name is a `TypeError` that names it.
    """

    # Every input `__call__` returns; the last two only for a model with the Whisper branch. transformers reads
    # only the first (`pad`, the Trainer's length grouping): the main input, which every model has.
    model_input_names = ["input_values", "input_mfcc", "attention_mask", "input_features", "whisper_attention_mask"]

    def __init__(
        self,
        *,
        sampling_rate: int = FRONT_END_DEFAULTS["sampling_rate"],
        n_fft: int = FRONT_END_DEFAULTS["n_fft"],
        hop_length: int = FRONT_END_DEFAULTS["hop_length"],
        n_mels: int = FRONT_END_DEFAULTS["n_mels"],
        n_mfcc: int = FRONT_END_DEFAULTS["n_mfcc"],
        f_min: float = FRONT_END_DEFAULTS["f_min"],
        f_max: float = FRONT_END_DEFAULTS["f_max"],
        window_seconds: float = FRONT_END_DEFAULTS["window_seconds"],
        min_audio_seconds: float = FRONT_END_DEFAULTS["min_audio_seconds"],
        normalize_level: bool = True,
        whisper_num_mel_bins: int | None = None,
        padding_value: float = 0.0,
        return_attention_mask: bool = True,
        **saved_keys,
    ):
        # `from_pretrained` calls `cls(**preprocessor_config)`, so what transformers itself wrote there comes back
        # too; anything else is a misspelt argument, refused rather than kept and saved.
        unknown = sorted(set(saved_keys) - set(SAVED_KEYS))
        if unknown:
            raise TypeError(_unexpected_arguments_message(type(self), unknown))
        # Written by `to_dict` from the class name, which it names again at every save.
        saved_keys.pop("feature_extractor_type", None)
        feature_size = saved_keys.pop("feature_size", n_mels)
        if feature_size != n_mels:
            raise ValueError(f"feature_size must equal n_mels ({n_mels}), the bands of input_values, "
                             f"got {feature_size}")
        super().__init__(
            feature_size=n_mels,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **saved_keys,
        )
        if self.padding_side != "right":
            raise ValueError(f"padding_side must be 'right', where the frames are padded, got {self.padding_side!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.f_min = f_min
        self.f_max = f_max
        self.window_seconds = window_seconds
        self.min_audio_seconds = min_audio_seconds
        self.normalize_level = normalize_level
        # power=2 and a Hann window: the standard power mel spectrogram; "htk" mel scale as in Kaldi.
        self._mel_spectrogram = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sampling_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            f_min=self.f_min,
            f_max=self.f_max,
            n_mels=self.n_mels,
            power=2.0,
            center=True,
        )
        # Orthonormal DCT-II, as torchaudio.transforms.MFCC uses; shape (n_mels, n_mfcc).
        self._dct = torchaudio.functional.create_dct(self.n_mfcc, self.n_mels, norm="ortho")
        self.whisper_num_mel_bins = whisper_num_mel_bins
        # Whisper's own front end, with its own fixed frame (25 ms every 10 ms) and mel filters.
        self._whisper = (None if whisper_num_mel_bins is None else
                         WhisperFeatureExtractor(feature_size=whisper_num_mel_bins, sampling_rate=self.sampling_rate))

    @classmethod
    def from_config(cls, config: SERConfig) -> "SERFeatureExtractor":
        """The feature extractor that matches a model config's front end."""
        whisper_num_mel_bins = config.speech_encoder.num_mel_bins if "whisper" in config.branches else None
        return cls(**{name: getattr(config, name) for name in FRONT_END_DEFAULTS},
                   whisper_num_mel_bins=whisper_num_mel_bins)

    def to_dict(self) -> dict:
        output = super().to_dict()
        for private in ("_mel_spectrogram", "_dct", "_whisper"):
            output.pop(private, None)
        return output

    @property
    def window_samples(self) -> int:
        return seconds_to_samples(self.window_seconds, self.sampling_rate)

    def num_frames(self, num_samples: int) -> int:
        """Frames the centred STFT gives for `num_samples` samples."""
        return 1 + num_samples // self.hop_length

    def __call__(
        self,
        raw_speech: np.ndarray | list[float] | list[np.ndarray] | torch.Tensor,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = True,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        check_audio: bool = True,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            raw_speech (`np.ndarray`, `list[float]`, `list[np.ndarray]` or `torch.Tensor`):
                One clip (1-D) or a batch (2-D array or list of 1-D arrays) of mono float audio in [-1, 1].
            sampling_rate (`int`, *optional*):
                Sampling rate of `raw_speech`; must equal `self.sampling_rate`. Pass it: a mismatch is an error.
            padding (`bool` or `str`, *optional*, defaults to `"longest"`):
                `"longest"`/`True` pads to the longest clip of the batch, `"max_length"` to `max_length` samples.
            max_length (`int`, *optional*):
                Samples per clip for truncation and `"max_length"` padding; defaults to one window.
            truncation (`bool`, *optional*, defaults to `True`): cut clips longer than `max_length`.
            return_attention_mask (`bool`, *optional*): defaults to `self.return_attention_mask`.
            return_tensors (`str`, *optional*): `"pt"` or `"np"`; numpy arrays otherwise.
            check_audio (`bool`, *optional*, defaults to `True`): refuse a clip shorter than
                `min_audio_seconds` or without speech after truncation (a `ValueError` whose message is the
                app's sentence). Training passes `False`: it pads and crops clips itself and keeps a
                quiet augmented copy rather than stopping on it.

        Returns:
            [`BatchFeature`] with `input_values` (batch, n_mels, frames), `input_mfcc` (batch, n_mfcc, frames)
            and `attention_mask` (batch, frames), 1 on real frames and 0 on padding; with the Whisper
            branch also `input_features` (batch, whisper_num_mel_bins, whisper_frames) and
            `whisper_attention_mask` (batch, whisper_frames).
        """
        self._check_sampling_rate(sampling_rate)
        max_length = self.window_samples if max_length is None else max_length
        waveforms = self._checked_waveforms(raw_speech, max_length if truncation else None, check_audio)
        waveforms = [self._leveled(w) for w in waveforms]
        features = [self._features(w) for w in waveforms]
        frames = _padded_frames([mel.shape[1] for mel, _ in features], padding, self.num_frames(max_length))
        input_values, attention_mask = _pad_frames([mel for mel, _ in features], frames, self.padding_value)
        input_mfcc, _ = _pad_frames([mfcc for _, mfcc in features], frames, self.padding_value)
        data = {"input_values": input_values, "input_mfcc": input_mfcc, "attention_mask": attention_mask}
        if self._whisper is not None:
            data.update(self._whisper_features(waveforms, padding, max_length))
        if not (self.return_attention_mask if return_attention_mask is None else return_attention_mask):
            data = {name: value for name, value in data.items() if not name.endswith("attention_mask")}
        return BatchFeature(data, tensor_type=return_tensors)

    def _check_sampling_rate(self, sampling_rate: int | None) -> None:
        """A wrong rate is an error; a missing one a warning, since it cannot be checked."""
        if sampling_rate is None:
            logger.warning(
                f"No sampling_rate was passed to {type(self).__name__}; it expects {self.sampling_rate} Hz audio "
                "and cannot check it, so wrong-rate audio would give silently wrong predictions."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"{type(self).__name__} expects audio sampled at {self.sampling_rate} Hz, got {sampling_rate} Hz; "
                f"resample it first (ser_model.audio_io.load_audio does)."
            )

    def _checked_waveforms(self, raw_speech, max_length: int | None, check_audio: bool) -> list[np.ndarray]:
        """The clips as float32 arrays cut to `max_length` samples (when given), each refused if it is
        shorter than one analysis frame or not finite, and with `check_audio` if it is shorter than
        `min_audio_seconds` or silent."""
        waveforms = _as_list_of_waveforms(raw_speech)
        if max_length is not None:
            waveforms = [w[:max_length] for w in waveforms]
        for index, w in enumerate(waveforms):
            subject = "The audio" if len(waveforms) == 1 else f"Clip {index + 1} of {len(waveforms)}"
            seconds = w.shape[0] / self.sampling_rate
            if check_audio and seconds < self.min_audio_seconds:
                raise ValueError(too_short_message(subject, seconds, self.min_audio_seconds))
            if w.shape[0] < self.n_fft:
                raise ValueError(
                    f"Audio must be at least {self.n_fft} samples ({1000 * self.n_fft / self.sampling_rate:.0f} ms) "
                    f"long, got {w.shape[0]} samples."
                )
            if not np.isfinite(w).all():
                raise ValueError("Audio contains NaN or infinite samples.")
            if check_audio and not has_speech(w, self.sampling_rate):
                raise ValueError(silence_message(subject))
        return waveforms

    def _whisper_features(self, waveforms: list[np.ndarray], padding: bool | str, max_length: int) -> dict:
        """Whisper's log-mel of each clip, computed on its real samples and then padded, with its mask.
        Whisper's own batch call pads the audio first, so a clip's last frames and the maximum that
        normalises its log-mel would depend on the longest clip of the batch."""
        log_mels = [self._whisper_log_mel(w) for w in waveforms]
        # Whisper drops the centred STFT's last frame: n samples give n // hop_length frames.
        frames = _padded_frames([m.shape[1] for m in log_mels], padding, max_length // self._whisper.hop_length)
        input_features, mask = _pad_frames(log_mels, frames, self.padding_value)
        return {"input_features": input_features, "whisper_attention_mask": mask}

    def _whisper_log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """`WhisperFeatureExtractor`'s log-mel (whisper_num_mel_bins, frames) of one clip. Not cut at
        Whisper's 30 s: `truncation` has already cut it, or was turned off, and the model then refuses
        what its positions cannot hold."""
        return self._whisper(waveform, sampling_rate=self.sampling_rate, padding="longest",
                             truncation=False, return_tensors="np")["input_features"][0]

    def _leveled(self, waveform: np.ndarray) -> np.ndarray:
        """The clip at `REFERENCE_RMS` (with `normalize_level`), or else only kept within full scale."""
        if not self.normalize_level:
            return _within_full_scale(waveform)
        # Scaling in float64 also keeps the float32 power spectrum from overflowing on absurdly loud
        # input, which from peaks of about 1e17 made the features (and predictions) NaN.
        rms = np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))
        return (waveform * (REFERENCE_RMS / rms)).astype(np.float32) if rms > 0 else waveform

    def _features(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised log-mel (n_mels, frames) and MFCC (n_mfcc, frames) of one leveled clip."""
        with torch.no_grad():
            # pipeline(...) can hand over a read-only buffer, which torch.from_numpy warns about.
            samples = torch.from_numpy(np.require(waveform, requirements="W"))
            log_mel = torch.log(self._mel_spectrogram(samples) + LOG_FLOOR)
            mfcc = self._dct.T @ log_mel
            log_mel = (log_mel - log_mel.mean()) / (log_mel.std(correction=0) + NORM_EPS)
            mfcc = (mfcc - mfcc.mean(dim=1, keepdim=True)) / (mfcc.std(dim=1, keepdim=True, correction=0) + NORM_EPS)
        return log_mel.numpy(), mfcc.numpy()


def _unexpected_arguments_message(cls: type, unknown: list[str]) -> str:
    """The `TypeError` sentence for keyword arguments `cls.__init__` does not take, each with the nearest
    real argument where one is close (`n_mel`: did you mean `n_mels`?)."""
    arguments = [name for name, parameter in inspect.signature(cls.__init__).parameters.items()
                 if parameter.kind is parameter.KEYWORD_ONLY]
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, arguments, n=1)
        named.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"{cls.__name__} got unexpected keyword argument(s) {', '.join(named)}; "
            f"its arguments are {', '.join(arguments)}")


def _within_full_scale(waveform: np.ndarray) -> np.ndarray:
    """Audio louder than full scale, which no decoded file is, scaled down to a peak of 1; absurdly loud
    input would otherwise overflow a float32 power spectrum."""
    peak = np.abs(waveform).max()
    return waveform / peak if peak > 1.0 else waveform


def _padded_frames(lengths: list[int], padding: bool | str, max_length_frames: int) -> int:
    """Frames of the batch: those of the longest clip (`lengths` in frames), or `max_length_frames`."""
    if padding == "max_length":
        return max_length_frames
    if padding in (True, "longest"):
        return max(lengths)
    raise ValueError(f"padding must be 'longest', 'max_length' or True, got {padding!r}")


def _pad_frames(features: list[np.ndarray], frames: int, padding_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip arrays of shape (channels, frames_i) as one (batch, channels, frames) array, each cut at
    `frames` or filled with `padding_value` beyond its own frames, and the (batch, frames) mask of
    the real frames."""
    batch = np.full((len(features), features[0].shape[0], frames), padding_value, dtype=np.float32)
    mask = np.zeros((len(features), frames), dtype=np.int32)
    for i, feature in enumerate(features):
        n = min(feature.shape[1], frames)
        batch[i, :, :n] = feature[:, :n]
        mask[i, :n] = 1
    return batch, mask


def _as_list_of_waveforms(raw_speech) -> list[np.ndarray]:
    """One clip or a batch of clips as a list of contiguous 1-D float32 arrays."""
    if isinstance(raw_speech, torch.Tensor):
        raw_speech = raw_speech.detach().cpu().numpy()
    if isinstance(raw_speech, np.ndarray):
        if raw_speech.ndim > 2:
            raise ValueError(f"Only mono audio is supported: expected 1-D or 2-D input, got shape {raw_speech.shape}")
        clips = [raw_speech] if raw_speech.ndim == 1 else list(raw_speech)
    elif isinstance(raw_speech, (list, tuple)) and raw_speech and isinstance(raw_speech[0], (list, tuple, np.ndarray, torch.Tensor)):
        clips = list(raw_speech)
    else:
        clips = [raw_speech]
    waveforms = []
    for clip in clips:
        if isinstance(clip, torch.Tensor):
            clip = clip.detach().cpu().numpy()
        waveform = np.ascontiguousarray(clip, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"Only mono audio is supported: each clip must be 1-D, got shape {waveform.shape}")
        if waveform.size == 0:
            raise ValueError("Audio is empty (0 samples).")
        waveforms.append(waveform)
    return waveforms


__all__ = ["SERFeatureExtractor"]
