"""`train --mel_init PATH`: pretrained DenseNet weights into the mel branch (no download needed)."""

import pytest
import torch
from timm.models.densenet import DenseNet

from ser_model import SERForAudioClassification
from ser_model.training.mel_init import load_mel_init

from .conftest import tiny_config


def imagenet_like_checkpoint(config, path, prefix=""):
    """A timm DenseNet of the model's layout with an RGB stem and a 1000-class head, saved as a
    torchvision-style file (`{"state_dict": ...}`), like the ImageNet checkpoints."""
    torch.manual_seed(5)
    network = DenseNet(growth_rate=config.growth_rate, block_config=tuple(config.block_config),
                       bn_size=config.bn_size, in_chans=3, num_classes=1000)
    state = {prefix + k: v for k, v in network.state_dict().items()}
    torch.save({"state_dict": state}, path)
    return network.state_dict()


def test_a_created_checkpoint_is_loaded_into_the_mel_branch(tmp_path):
    config = tiny_config()
    source = imagenet_like_checkpoint(config, tmp_path / "densenet.pth", prefix="module.")
    model = SERForAudioClassification(config)
    mfcc_before = {k: v.clone() for k, v in model.ser.mfcc_encoder.state_dict().items()}
    loaded = load_mel_init(model, str(tmp_path / "densenet.pth"))
    target = model.ser.mel_encoder.densenet.state_dict()
    assert set(loaded) == set(target)
    for name, tensor in target.items():
        if name == "features.conv0.weight":
            # RGB stem summed into the one spectrogram channel (timm's adapt_input_conv).
            assert torch.allclose(tensor, source[name].sum(dim=1, keepdim=True))
        else:
            assert torch.equal(tensor, source[name]), name
    assert all(torch.equal(v, mfcc_before[k]) for k, v in model.ser.mfcc_encoder.state_dict().items())


def test_a_checkpoint_of_another_layout_is_refused_with_the_reason(tmp_path):
    imagenet_like_checkpoint(tiny_config(growth_rate=6), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit"):
        load_mel_init(SERForAudioClassification(tiny_config()), str(tmp_path / "other.pth"))


def test_a_missing_file_or_a_model_without_mel_branch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="neither 'imagenet' nor an existing checkpoint"):
        load_mel_init(SERForAudioClassification(tiny_config()), str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="mel branch"):
        load_mel_init(SERForAudioClassification(tiny_config(branches=["mfcc"])), "imagenet")
