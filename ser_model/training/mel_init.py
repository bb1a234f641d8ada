"""Starting the mel branch from pretrained DenseNet weights (`train --mel_init`).

The original design of this model calls for a pretrained DenseNet over mel spectrograms: ImageNet
features transfer to spectrograms better than random ones (Palanisamy et al. 2020, "Rethinking CNN
models for audio classification"). Two sources:

- `"imagenet"`: timm's `densenet121.tv_in1k`, downloaded from the Hugging Face Hub (needs internet;
  use with the `densenet121` preset, whose layout it has).
- a path: a local timm or torchvision DenseNet checkpoint (a state dict, or a dict holding one under
  `state_dict` or `model`).

RGB stems are adapted to the one spectrogram channel by timm's `adapt_input_conv` (the channels'
weights summed), and the ImageNet classifier is dropped. The weights are loaded after the model is
built, as transformers' `from_pretrained` would re-initialise a backbone loaded in `__init__`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.models import create_model
from timm.models._manipulate import adapt_input_conv
from timm.models.densenet import _filter_torchvision_pretrained

from ..errors import InputError
from ..modeling import SERForAudioClassification

IMAGENET = "imagenet"
IMAGENET_MODEL = "densenet121.tv_in1k"
STEM = "features.conv0.weight"


def pretrained_state_dict(source: str) -> dict[str, torch.Tensor]:
    """The DenseNet weights named by `source` (`"imagenet"` or a checkpoint path), with timm's key names."""
    if source == IMAGENET:
        try:
            return create_model(IMAGENET_MODEL, pretrained=True, num_classes=0).state_dict()
        except Exception as e:  # noqa: BLE001 - the Hub client raises many kinds; all mean "no download"
            raise InputError(f"--mel_init imagenet could not download {IMAGENET_MODEL} from the Hugging Face Hub "
                             f"({type(e).__name__}); without internet pass a local checkpoint path instead") from e
    path = Path(source)
    if not path.is_file():
        raise InputError(f"--mel_init: {source!r} is neither 'imagenet' nor an existing checkpoint file")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    # DataParallel and wrapper prefixes, then torchvision's old layer names ("norm.1" -> "norm1").
    checkpoint = {k.removeprefix("module.").removeprefix("densenet."): v for k, v in checkpoint.items()}
    return _filter_torchvision_pretrained(checkpoint)


def load_mel_init(model: SERForAudioClassification, source: str) -> list[str]:
    """Loads pretrained DenseNet weights into the model's mel branch, in place.

    Returns:
        `list[str]`: the names of the mel-branch tensors that were loaded (all of them).

    Raises:
        `ValueError`: when the model has no mel branch, or the checkpoint does not fit its DenseNet
        (a missing tensor or another shape: another preset's layout), naming the first mismatch.
    """
    encoder = model.ser.mel_encoder
    if encoder is None:
        raise InputError("--mel_init needs a model with the mel branch")
    target = encoder.densenet.state_dict()
    weights = {k: v for k, v in pretrained_state_dict(source).items() if not k.startswith("classifier.")}
    if STEM in weights and weights[STEM].shape[1] != target[STEM].shape[1]:
        weights[STEM] = adapt_input_conv(target[STEM].shape[1], weights[STEM], base_chans=weights[STEM].shape[1])
    missing = [k for k in target if k not in weights]
    mismatched = [k for k in target if k in weights and weights[k].shape != target[k].shape]
    if missing or mismatched:
        name = (missing or mismatched)[0]
        got = "absent" if name in missing else tuple(weights[name].shape)
        raise InputError(f"--mel_init checkpoint does not fit this model's DenseNet ({len(missing)} tensors missing, "
                         f"{len(mismatched)} of another shape; e.g. {name}: model {tuple(target[name].shape)}, "
                         f"checkpoint {got}); choose the preset with its layout (densenet121 for ImageNet)")
    encoder.densenet.load_state_dict({k: weights[k] for k in target})
    return list(target)


__all__ = ["IMAGENET", "load_mel_init", "pretrained_state_dict"]
