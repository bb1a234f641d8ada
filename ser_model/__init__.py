"""Speech emotion recognition as a `transformers` model: a pretrained Whisper encoder fused with a DenseNet over
log-mel spectrograms and a small CNN over MFCCs, with a second head for how the voice sounds.

In the bundled model the Whisper base encoder is 20.6 M of the 22 M parameters and stays frozen; the mean and
standard deviation of each of its layers over real frames are pooled for the fusion head.

Importing the package registers the model with the Auto classes, so a saved folder loads with
`AutoModelForAudioClassification.from_pretrained(folder)` even without `trust_remote_code`, and
`save_pretrained` writes the `auto_map` and code files that let others load it with it.

The one exception is the command line, `python -m ser_model ...`: Python imports this package before
the CLI runs, and the CLI answers a mistyped argument or a missing file within a second, before torch
and transformers load (about five seconds). There the names below load on first use, and the CLI
registers the classes itself (`register_auto_classes`) before any command that saves a model.
"""

import sys
from importlib import import_module

# The package's names and the modules that define them.
_EXPORTS = {"EMOTIONS": ".configuration", "PRESETS": ".configuration", "SERConfig": ".configuration",
            "SERFeatureExtractor": ".feature_extractor", "SERForAudioClassification": ".modeling",
            "SERModel": ".modeling", "bundled_model": ".model_info"}


def register_auto_classes() -> None:
    """Registers the config, model and feature extractor with transformers' Auto classes, and for
    `save_pretrained`'s `auto_map`; running it again changes nothing."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

    from .configuration import SERConfig
    from .feature_extractor import SERFeatureExtractor
    from .modeling import SERForAudioClassification

    AutoConfig.register(SERConfig.model_type, SERConfig, exist_ok=True)
    AutoModelForAudioClassification.register(SERConfig, SERForAudioClassification, exist_ok=True)
    AutoFeatureExtractor.register(SERConfig, SERFeatureExtractor, exist_ok=True)
    SERConfig.register_for_auto_class()
    SERForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
    SERFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")


def __getattr__(name: str):
    """The package's names, loaded (and the classes registered) on first use where the CLI runs."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    register_auto_classes()
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def _started_as_cli() -> bool:
    """Whether this process is `python -m ser_model ...` (also as `torchrun` or `accelerate launch` start it)."""
    argv = getattr(sys, "orig_argv", [])
    return any(option == "-m" and module == __name__ for option, module in zip(argv, argv[1:]))


if not _started_as_cli():
    register_auto_classes()
    from .configuration import EMOTIONS, PRESETS, SERConfig
    from .feature_extractor import SERFeatureExtractor
    from .model_info import bundled_model
    from .modeling import SERForAudioClassification, SERModel

__all__ = ["EMOTIONS", "PRESETS", "SERConfig", "SERFeatureExtractor", "SERForAudioClassification", "SERModel",
           "bundled_model", "register_auto_classes"]
