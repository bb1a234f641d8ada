"""Speech emotion recognition as a `transformers` model: a pretrained Whisper encoder fused with a DenseNet over
log-mel spectrograms and a small CNN over MFCCs, with a second head for how the voice sounds.

In the bundled model the Whisper base encoder is 20.6 M of the 22 M parameters and stays frozen; the mean and
standard deviation of each of its layers over real frames are pooled for the fusion head.

Importing the package registers the model with the Auto classes, so a saved folder loads with
`AutoModelForAudioClassification.from_pretrained(folder)` even without `trust_remote_code`, and
`save_pretrained` writes the `auto_map` and code files that let others load it with it.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

from .configuration import EMOTIONS, PRESETS, SERConfig
from .feature_extractor import SERFeatureExtractor
from .model_info import bundled_model
from .modeling import SERForAudioClassification, SERModel

AutoConfig.register(SERConfig.model_type, SERConfig, exist_ok=True)
AutoModelForAudioClassification.register(SERConfig, SERForAudioClassification, exist_ok=True)
AutoFeatureExtractor.register(SERConfig, SERFeatureExtractor, exist_ok=True)
SERConfig.register_for_auto_class()
SERForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
SERFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["EMOTIONS", "PRESETS", "SERConfig", "SERFeatureExtractor", "SERForAudioClassification", "SERModel",
           "bundled_model"]
