"""`train --init-model DIR`: a run starts from the weights of a model trained before."""

import pytest
import torch

from ser_model import SERForAudioClassification
from ser_model.errors import InputError
from ser_model.training.warm_start import load_warm_start

from .conftest import tiny_config


def test_every_weight_of_the_saved_model_is_loaded(tmp_path):
    torch.manual_seed(0)
    trained = SERForAudioClassification(tiny_config())
    trained.save_pretrained(tmp_path)
    torch.manual_seed(1)
    fresh = SERForAudioClassification(tiny_config())
    expected = trained.state_dict()
    assert any(not torch.equal(t, expected[n]) for n, t in fresh.state_dict().items() if t.is_floating_point())
    count = load_warm_start(fresh, tmp_path)
    assert count == len(expected)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_another_architecture_is_refused_with_the_reason(tmp_path):
    SERForAudioClassification(tiny_config(growth_rate=8)).save_pretrained(tmp_path)
    model = SERForAudioClassification(tiny_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match="another architecture than this preset"):
        load_warm_start(model, tmp_path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing half-loaded


def test_a_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(InputError, match="no model.safetensors"):
        load_warm_start(SERForAudioClassification(tiny_config()), tmp_path)
