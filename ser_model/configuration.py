"""Configuration of the speech emotion recognition model: a pretrained Whisper encoder, a DenseNet over log-mel
spectrograms and a small CNN over MFCCs, fused by one head, with an optional voice head.

This file is one of the three "Hub files" (with `feature_extractor.py` and `modeling.py`) that are
copied next to the weights, so it imports nothing but `transformers` and its siblings.
"""

import numpy as np
from transformers import PreTrainedConfig, WhisperConfig
from transformers.configuration_utils import SubConfigSpec

# The 7 emotions, in class-id order. RAVDESS "calm" is folded into neutral by the corpus readers.
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# How the voice sounds, the classes of the optional second head (`voice_head`). Perceived from the
# audio alone and trained from the corpora's speaker metadata: never a fact about the person.
VOICE_LABELS = ("female", "male")

# The audio front end: the fields `SERFeatureExtractor` takes from `SERConfig`, with their
# defaults. This dict is the one list of them: the config declares its fields from it and the
# feature extractor reads exactly these keys, so the two saved configs (config.json,
# preprocessor_config.json) cannot start from different numbers or drift apart.
# 25 ms windows with a 10 ms hop are the usual speech analysis frame (e.g. Kaldi, AST);
# 64 mel bands up to the 8 kHz Nyquist limit of 16 kHz audio. Shorter audio than `min_audio_seconds`
# is refused: a quarter second is about one syllable.
FRONT_END_DEFAULTS = {
    "sampling_rate": 16_000,
    "n_fft": 400,
    "hop_length": 160,
    "n_mels": 64,
    "n_mfcc": 40,
    "f_min": 20.0,
    "f_max": 8_000.0,
    "window_seconds": 4.0,
    "min_audio_seconds": 0.25,
}

# Whether audio holds speech, for what one decision hears (the feature extractor) and for each window of
# long audio (`ser_model.serving`). Decided on the levels of 25 ms frames every 10 ms
# within SPEECH_BAND_HZ, so that it depends neither on the recording level nor on rumble and mains
# hum below the band: speech alternates syllables, pauses and consonants, so its loud and quiet frames
# lie tens of dB apart at any gain, while a hum, a fan or steady noise keeps every frame within a few
# dB of the others. Audio is speech when
# - its loud frames (the SPEECH_LOUD_PERCENTILE-th percentile of frame levels) are above
#   DIGITAL_SILENCE_DB, far under one step of 16-bit PCM, where only digital silence lies; and
# - they lie at least SPEECH_SPREAD_DB above its quiet frames (the SPEECH_QUIET_PERCENTILE-th percentile).
# Measured with `python bench/speech_detector.py` on all 11,290 clips of the corpora: the spread is at
# least 15.5 dB, and 40 dB down RAVDESS's quietest clips' loud frames reach only -98 dBFS (fewer than
# two 16-bit steps); white, pink and brown noise, mains hum, hum under noise, zeros and dither spread
# 5.1 dB at most. Defined here, in a Hub file, so that a model loaded from the Hub refuses the same
# audio with the same sentences as the app and the CLI.
SPEECH_FRAME_SECONDS = 0.025
SPEECH_HOP_SECONDS = 0.010
# Voiced speech's energy lies above mains hum and room rumble and within the telephone band.
SPEECH_BAND_HZ = (150.0, 4000.0)
DIGITAL_SILENCE_DB = -110.0
SPEECH_LOUD_PERCENTILE = 95
SPEECH_QUIET_PERCENTILE = 10
SPEECH_SPREAD_DB = 10.0
# Frames analysed at once: bounds the memory of the check on hours of audio held in memory.
_FRAMES_PER_BLOCK = 4096


def frame_levels_db(waveform, sampling_rate: int) -> np.ndarray:
    """Level in dBFS (`np.ndarray` of shape `(frames,)`) within `SPEECH_BAND_HZ` of each Hann-windowed
    25 ms frame every 10 ms of a mono float waveform; audio shorter than a frame is zero-padded to one."""
    samples = np.asarray(waveform, dtype=np.float64)
    frame = round(SPEECH_FRAME_SECONDS * sampling_rate)
    hop = round(SPEECH_HOP_SECONDS * sampling_rate)
    if len(samples) < frame:
        samples = np.pad(samples, (0, frame - len(samples)))
    frequencies = np.fft.rfftfreq(frame, 1.0 / sampling_rate)
    band = (frequencies >= SPEECH_BAND_HZ[0]) & (frequencies <= SPEECH_BAND_HZ[1])
    window = np.hanning(frame)
    # Parseval: the summed squared magnitudes over the frame's length are its mean power per sample,
    # and the window's mean square makes a steady sine read the same with or without the window.
    scale = 2.0 / (frame * np.sum(window ** 2))
    starts = np.arange(0, len(samples) - frame + 1, hop)
    levels = []
    for first in range(0, len(starts), _FRAMES_PER_BLOCK):
        block = starts[first:first + _FRAMES_PER_BLOCK, None] + np.arange(frame)
        power = np.square(np.abs(np.fft.rfft(samples[block] * window, axis=1)[:, band])).sum(axis=1) * scale
        levels.append(10 * np.log10(np.maximum(power, 1e-20)))
    return np.concatenate(levels)


def has_speech(waveform, sampling_rate: int) -> bool:
    """Whether a mono float waveform holds speech rather than silence or a steady sound such as hum or
    noise (see `SPEECH_SPREAD_DB`), with the same answer at any recording level."""
    levels = frame_levels_db(waveform, sampling_rate)
    loud, quiet = np.percentile(levels, [SPEECH_LOUD_PERCENTILE, SPEECH_QUIET_PERCENTILE])
    return bool(loud > DIGITAL_SILENCE_DB and loud - quiet >= SPEECH_SPREAD_DB)


def silence_message(subject: str = "The audio") -> str:
    """The one sentence for audio without speech (`has_speech`), whichever check finds it."""
    return f"{subject} is silent or a steady sound such as hum or noise, with no speech in it."


def too_short_message(subject: str, seconds: float, min_seconds: float) -> str:
    """The one sentence for audio shorter than `min_audio_seconds`, whichever check finds it."""
    return f"{subject} is too short: {seconds:.3f} s, while the minimum is {min_seconds:g} s."

# Named sizes of the model, as timm names its DenseNet variants by `growth_rate` and `block_config`.
# "cpu-small" is trained from scratch on 2 CPU cores in well under an hour; "densenet121" is the
# ImageNet DenseNet-121 layout (Huang et al. 2017) for machines with a GPU.
PRESETS = {
    "cpu-small": {
        "growth_rate": 16,
        "block_config": [4, 6, 8],
        "bn_size": 4,
        "mfcc_channels": [64, 128],
        "fusion_hidden_size": 128,
    },
    "densenet121": {
        "growth_rate": 32,
        "block_config": [6, 12, 24, 16],
        "bn_size": 4,
        "mfcc_channels": [128, 256],
        "fusion_hidden_size": 256,
    },
}

BRANCHES = ("mel", "mfcc", "whisper")
SPEECH_ENCODER_POOLINGS = ("concat", "weighted")

# Whisper's audio front end is fixed by its training (Radford et al. 2022): 16 kHz audio, a log-mel
# frame every 10 ms, and a stride-2 convolution before the transformer, so 50 positions per second.
WHISPER_SAMPLING_RATE = 16_000
WHISPER_POSITIONS_PER_SECOND = 50

# Fields that `SERConfig` stores as JSON gives them back (lists, floats).
_LIST_FIELDS = ("block_config", "mfcc_channels", "branches")
_OPTIONAL_LIST_FIELDS = ("speech_encoder_hidden_states",)
_FLOAT_FIELDS = ("f_min", "f_max", "window_seconds", "window_hop_seconds", "min_audio_seconds", "densenet_drop_rate",
                 "fusion_dropout", "calibration_temperature")


def densenet_downsampling(block_config) -> int:
    """How many times timm's DenseNet shrinks each axis: the stride-2 stem convolution and max pool
    (x4), then one 2x2 average pool per transition between blocks."""
    return 2 ** (len(block_config) + 1)


def seconds_to_samples(seconds: float, sampling_rate: int) -> int:
    """Samples in `seconds` of audio at `sampling_rate` (one rounding rule for config and feature extractor)."""
    return round(seconds * sampling_rate)


class SERConfig(PreTrainedConfig):
    r"""
    Configuration of [`SERForAudioClassification`]: the audio front end, up to three branches (a timm
    DenseNet over log-mel spectrograms, a small 1-D CNN over MFCCs, a pretrained Whisper speech encoder),
    the fusion head and the optional voice head. The bundled model has all three: its Whisper base encoder
    is 20.6 M of its 22 M parameters, frozen, and pools each layer's mean and standard deviation; models
    without the Whisper branch (`branches=["mel", "mfcc"]`, such as `model-mel-mfcc/`) still load.

    `window_hop_seconds` and `min_audio_seconds` steer the audio the network is given, not the network:
    long-audio inference (`ser_model.serving.inference`) cuts windows every `window_hop_seconds`, and the
    feature extractor refuses audio shorter than `min_audio_seconds`. They live here all the same because
    they belong to the trained model, not to one program: a model published on the Hub carries them, so
    the app, the CLI, `pipeline(...)` and anyone's own `EmotionRecognizer` treat its audio as it was
    evaluated.

    The fields are annotated class attributes on `PreTrainedConfig`, as in transformers' own configs
    (e.g. `ASTConfig`), but the class is not `@strict`: strict wraps every error in an exception that
    is not a `ValueError` (which the training command line turns into one sentence for the user), so
    `validate` checks the values itself.

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sampling rate in Hz the model expects; audio is resampled to it by the audio I/O layer.
        n_fft (`int`, *optional*, defaults to 400):
            FFT size and analysis window length in samples (25 ms at 16 kHz).
        hop_length (`int`, *optional*, defaults to 160):
            Hop between frames in samples (10 ms at 16 kHz).
        n_mels (`int`, *optional*, defaults to 64):
            Number of mel bands of the log-mel spectrogram (the DenseNet's input height).
        n_mfcc (`int`, *optional*, defaults to 40):
            Number of MFCCs (the MFCC CNN's input channels); at most `n_mels`.
        f_min (`float`, *optional*, defaults to 20.0):
            Lowest mel filter frequency in Hz.
        f_max (`float`, *optional*, defaults to 8000.0):
            Highest mel filter frequency in Hz; at most `sampling_rate / 2`.
        window_seconds (`float`, *optional*, defaults to 4.0):
            Length of audio behind one decision; longer audio is cut into windows of this length.
        window_hop_seconds (`float`, *optional*, defaults to 2.0):
            Step between the windows of long audio (half a window: every instant is seen twice).
        min_audio_seconds (`float`, *optional*, defaults to 0.25):
            Shorter audio is refused (by the feature extractor too): a quarter second is about one syllable.
        growth_rate (`int`, *optional*, defaults to 16):
            DenseNet growth rate `k`; the stem has `2 * k` channels (as in timm).
        block_config (`list[int]`, *optional*, defaults to `[4, 6, 8]`):
            Number of layers in each dense block.
        bn_size (`int`, *optional*, defaults to 4):
            Bottleneck width multiplier of each dense layer.
        densenet_drop_rate (`float`, *optional*, defaults to 0.0):
            Dropout after each dense layer.
        mfcc_channels (`list[int]`, *optional*, defaults to `[64, 128]`):
            Output channels of each Conv1d block of the MFCC branch.
        mfcc_kernel_size (`int`, *optional*, defaults to 5):
            Temporal kernel size of the MFCC convolutions (odd, so the frame count is kept).
        fusion_hidden_size (`int`, *optional*, defaults to 128):
            Width of the hidden layer of the fusion head.
        fusion_dropout (`float`, *optional*, defaults to 0.3):
            Dropout before each linear layer of the fusion head.
        branches (`list[str]`, *optional*, defaults to `["mel", "mfcc"]`):
            Which branches feed the head, among `"mel"`, `"mfcc"` and `"whisper"`; a single branch gives
            the ablation models.
        speech_encoder (`dict` or `WhisperConfig`, *optional*):
            Config of the Whisper encoder of the `"whisper"` branch (needed by it, ignored without it),
            kept inside config.json so that a saved model needs no other file. The training script takes
            it from a pretrained checkpoint (`ser_model.training.speech_encoder`).
        speech_encoder_hidden_states (`list[int]`, *optional*):
            Which hidden states of the encoder the branch weights and pools: 0 is the embeddings, `i` the
            output of layer `i` (the last one after the encoder's final LayerNorm). All of them by
            default; layers above the highest one listed are not run.
        speech_encoder_pooling (`str`, *optional*, defaults to `"concat"`):
            How the branch turns those hidden states into its embedding. `"concat"`: the mean and standard
            deviation of each hidden state over real positions, concatenated (what the frozen-encoder probe
            uses). `"weighted"`: a learned softmax weighting of the hidden states first, then one mean and
            standard deviation (as SUPERB weights the layers of pretrained speech encoders). On frozen
            whisper-base features of the validation speakers, the same head scored 71 with `"concat"` and
            66 with `"weighted"` (docs/experiments.md); `"weighted"` is the first three-branch model's.
        voice_head (`bool`, *optional*, defaults to `False`):
            Adds a second head on the same utterance embedding that tells whether the voice sounds female
            or male (`VOICE_LABELS`), trained jointly from the corpora's speaker metadata; its logits are
            `voice_logits` of the output. Off, the model is the emotion classifier alone.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear layers.
        calibration_temperature (`float`, *optional*, defaults to 1.0):
            The logits are divided by it, so that the probabilities are calibrated (Guo et al. 2017):
            fitted on the validation speakers after training (`ser_model.training.calibration`); 1 while training.
            Not named `temperature`, which transformers reserves for text generation.
    """

    model_type = "ser_fusion"
    # transformers builds `speech_encoder` from a dict (as saved in config.json) and serialises it nested.
    sub_configs_defaults = {"speech_encoder": SubConfigSpec(WhisperConfig, optional=True)}

    sampling_rate: int = FRONT_END_DEFAULTS["sampling_rate"]
    n_fft: int = FRONT_END_DEFAULTS["n_fft"]
    hop_length: int = FRONT_END_DEFAULTS["hop_length"]
    n_mels: int = FRONT_END_DEFAULTS["n_mels"]
    n_mfcc: int = FRONT_END_DEFAULTS["n_mfcc"]
    f_min: float = FRONT_END_DEFAULTS["f_min"]
    f_max: float = FRONT_END_DEFAULTS["f_max"]
    window_seconds: float = FRONT_END_DEFAULTS["window_seconds"]
    window_hop_seconds: float = 2.0
    min_audio_seconds: float = FRONT_END_DEFAULTS["min_audio_seconds"]
    growth_rate: int = 16
    block_config: list[int] | tuple[int, ...] = (4, 6, 8)
    bn_size: int = 4
    densenet_drop_rate: float = 0.0
    mfcc_channels: list[int] | tuple[int, ...] = (64, 128)
    mfcc_kernel_size: int = 5
    fusion_hidden_size: int = 128
    fusion_dropout: float = 0.3
    branches: list[str] | tuple[str, ...] = ("mel", "mfcc")
    speech_encoder: dict | WhisperConfig | None = None
    speech_encoder_hidden_states: list[int] | tuple[int, ...] | None = None
    speech_encoder_pooling: str = "concat"
    voice_head: bool = False
    initializer_range: float = 0.02
    calibration_temperature: float = 1.0

    def __post_init__(self, **kwargs):
        if self.id2label is None and "num_labels" not in kwargs:
            self.id2label = dict(enumerate(EMOTIONS))
            self.label2id = {label: i for i, label in enumerate(EMOTIONS)}
        # Stored as config.json reads them back (JSON has lists, not tuples), so that a config and
        # its saved copy compare equal.
        for name in _LIST_FIELDS:
            setattr(self, name, list(getattr(self, name)))
        for name in _OPTIONAL_LIST_FIELDS:
            if getattr(self, name) is not None:
                setattr(self, name, list(getattr(self, name)))
        for name in _FLOAT_FIELDS:
            setattr(self, name, float(getattr(self, name)))
        super().__post_init__(**kwargs)
        self.validate()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SERConfig":
        """Builds the config of a named size from `PRESETS`, with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    def validate(self) -> None:
        """Checks every field, at construction and again before saving (transformers calls `validate`
        in `save_pretrained`), and raises a `ValueError` that names the field, the rule and the value."""
        super().validate()
        positive = ("sampling_rate", "n_fft", "hop_length", "n_mels", "n_mfcc", "growth_rate", "bn_size",
                    "mfcc_kernel_size", "fusion_hidden_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("block_config", "mfcc_channels"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in values):
                raise ValueError(f"{name} must be a non-empty list of positive integers, got {values!r}")
        for name in ("densenet_drop_rate", "fusion_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.calibration_temperature > 0:
            raise ValueError(f"calibration_temperature must be positive, got {self.calibration_temperature!r}")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc must be at most n_mels ({self.n_mels}), got {self.n_mfcc}")
        if not 0.0 <= self.f_min < self.f_max:
            raise ValueError(f"f_min must be in [0, f_max={self.f_max}), got {self.f_min}")
        if self.f_max > self.sampling_rate / 2:
            raise ValueError(f"f_max must be at most sampling_rate / 2 = {self.sampling_rate / 2}, got {self.f_max}")
        if self.mfcc_kernel_size % 2 == 0:
            raise ValueError(f"mfcc_kernel_size must be odd to keep the frame count, got {self.mfcc_kernel_size}")
        if self.min_audio_seconds <= 0 or self.min_audio_seconds > self.window_seconds:
            raise ValueError(
                f"min_audio_seconds must be in (0, window_seconds={self.window_seconds}], got {self.min_audio_seconds}"
            )
        if not 0.0 < self.window_hop_seconds <= self.window_seconds:
            raise ValueError(
                f"window_hop_seconds must be in (0, window_seconds={self.window_seconds}], "
                f"got {self.window_hop_seconds}"
            )
        # One window must survive the DenseNet's downsampling.
        min_frames = densenet_downsampling(self.block_config)
        if self.n_mels < min_frames or self.window_seconds * self.sampling_rate / self.hop_length < min_frames:
            raise ValueError(
                f"block_config has {len(self.block_config)} blocks, which downsample by {min_frames}: "
                f"n_mels and the frames of one window must be at least that, got n_mels={self.n_mels}"
            )
        if not self.branches or any(b not in BRANCHES for b in self.branches) or len(set(self.branches)) != len(
            self.branches
        ):
            raise ValueError(f"branches must be a non-empty subset of {list(BRANCHES)}, got {self.branches!r}")
        if "whisper" in self.branches:
            self._validate_speech_encoder()

    def _validate_speech_encoder(self) -> None:
        if not isinstance(self.speech_encoder, WhisperConfig):
            raise ValueError(f"branches names 'whisper', so speech_encoder must be the WhisperConfig of its encoder, "
                             f"got {self.speech_encoder!r}")
        if self.sampling_rate != WHISPER_SAMPLING_RATE:
            raise ValueError(f"sampling_rate must be {WHISPER_SAMPLING_RATE} with the whisper branch, the rate Whisper "
                             f"was trained at, got {self.sampling_rate}")
        longest = self.speech_encoder.max_source_positions / WHISPER_POSITIONS_PER_SECOND
        if self.window_seconds > longest:
            raise ValueError(f"window_seconds must be at most {longest} s, the span of the speech encoder's "
                             f"positions, got {self.window_seconds}")
        if self.speech_encoder_pooling not in SPEECH_ENCODER_POOLINGS:
            raise ValueError(f"speech_encoder_pooling must be one of {list(SPEECH_ENCODER_POOLINGS)}, "
                             f"got {self.speech_encoder_pooling!r}")
        states = self.speech_encoder_hidden_states
        layers = self.speech_encoder.encoder_layers
        if states is not None and (not states or len(set(states)) != len(states)
                                   or any(not isinstance(i, int) or not 0 <= i <= layers for i in states)):
            raise ValueError(f"speech_encoder_hidden_states must be distinct indices from 0 (the embeddings) to "
                             f"{layers} (the last layer), got {states!r}")

    @property
    def window_samples(self) -> int:
        """Samples in one decision window."""
        return seconds_to_samples(self.window_seconds, self.sampling_rate)

    @property
    def window_hop_samples(self) -> int:
        """Samples between the starts of consecutive windows of longer audio."""
        return seconds_to_samples(self.window_hop_seconds, self.sampling_rate)


__all__ = ["BRANCHES", "EMOTIONS", "FRONT_END_DEFAULTS", "PRESETS", "SERConfig", "VOICE_LABELS",
           "densenet_downsampling", "frame_levels_db", "has_speech", "seconds_to_samples", "silence_message",
           "too_short_message"]
