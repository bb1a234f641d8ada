"""The pretrained Whisper encoder that starts the fusion's speech branch (training only).

The Hub files never download anything: a saved model carries the encoder's weights in its own
`model.safetensors`. Training takes them once, from a Hub id (`openai/whisper-base`) or a folder in
the Hub's layout, through transformers' `WhisperForAudioClassification`, which reads both the Hub's
key names (`model.encoder.*`) and an encoder-only file (`encoder.*`); `WhisperEncoder.from_pretrained`
reads neither and would leave every weight random. The branch's sizes come from the checkpoint's
own config, so any Whisper checkpoint works (`openai/whisper-small` for more compute).
"""

from __future__ import annotations

import torch
from transformers import WhisperConfig, WhisperForAudioClassification

from ..errors import InputError
from ..modeling import SERForAudioClassification

# What a user with internet gets; a local folder in the Hub's layout works the same way.
DEFAULT_SPEECH_ENCODER = "openai/whisper-base"


def speech_encoder_config(name_or_path: str) -> WhisperConfig:
    """The `WhisperConfig` of a checkpoint, for `SERConfig(speech_encoder=...)`.

    Raises `InputError` when `name_or_path` holds no Whisper config."""
    try:
        # Not `from_pretrained`: on a folder without config.json it returns the default config.
        config_dict, _ = WhisperConfig.get_config_dict(name_or_path)
    except (OSError, ValueError) as error:
        raise InputError(f"--speech_encoder: no Whisper checkpoint at {name_or_path!r} ({error})") from error
    if config_dict.get("model_type") != "whisper":
        raise InputError(f"--speech_encoder: {name_or_path!r} holds no Whisper config.json "
                         f"(model_type {config_dict.get('model_type')!r})")
    config = WhisperConfig.from_dict(config_dict)
    # The saved model's config.json must not carry a path of the machine it was trained on.
    config.name_or_path = ""
    return config


def load_speech_encoder(model: SERForAudioClassification, name_or_path: str) -> int:
    """Copies the encoder weights of the Whisper checkpoint `name_or_path` into `model`'s Whisper
    branch; returns how many tensors. Loaded in float32: transformers keeps a float16 file in float16
    unless told otherwise.

    Raises `InputError` when the model has no Whisper branch, or the checkpoint's encoder has other
    sizes than the branch (the branch must be built from `speech_encoder_config(name_or_path)`)."""
    branch = model.ser.whisper_encoder
    if branch is None:
        raise InputError(f"--speech_encoder: the model's branches {model.config.branches} have no 'whisper'")
    try:
        pretrained, info = WhisperForAudioClassification.from_pretrained(name_or_path, dtype=torch.float32,
                                                                         output_loading_info=True)
    except OSError as error:
        raise InputError(f"--speech_encoder: cannot load the Whisper checkpoint {name_or_path!r} ({error})") from error
    # The classification head is missing from every Whisper checkpoint; a missing encoder weight
    # would be a random one.
    random = sorted(key for key in info["missing_keys"] if key.startswith("encoder."))
    if random:
        raise InputError(f"--speech_encoder: {name_or_path!r} lacks encoder weights, e.g. {random[0]}")
    weights = pretrained.encoder.state_dict()
    own = branch.encoder.state_dict()
    differ = sorted(k for k in own if k not in weights or own[k].shape != weights[k].shape)
    if differ or own.keys() != weights.keys():
        raise InputError(f"--speech_encoder: the encoder of {name_or_path!r} does not fit the model's Whisper branch "
                         f"(e.g. {(differ or sorted(own.keys() ^ weights.keys()))[0]}); build the model's config with "
                         "speech_encoder_config() of the same checkpoint")
    branch.encoder.load_state_dict(weights)
    return len(weights)


def freeze_speech_encoder(model: SERForAudioClassification, trainable_layers: int) -> None:
    """Stops the gradient of the Whisper branch's encoder but for its top `trainable_layers` layers (0:
    all frozen, -1: none); the final LayerNorm trains with the top layer. The branch's layer weights
    train in every case: they choose what the head hears."""
    encoder = model.ser.whisper_encoder.encoder
    layers = len(encoder.layers)
    trained = layers if trainable_layers == -1 else min(trainable_layers, layers)
    encoder.requires_grad_(trainable_layers == -1)
    for layer in encoder.layers[layers - trained:]:
        layer.requires_grad_(True)
    encoder.layer_norm.requires_grad_(trained > 0)


def is_speech_encoder_parameter(name: str) -> bool:
    """Whether the parameter `name` of an `SERForAudioClassification` is one of the pretrained encoder's,
    which train at their own learning rate."""
    return name.startswith("ser.whisper_encoder.encoder.")


__all__ = ["DEFAULT_SPEECH_ENCODER", "freeze_speech_encoder", "is_speech_encoder_parameter", "load_speech_encoder",
           "speech_encoder_config"]
