"""`train --init_model DIR`: a run starts from the weights of a model trained before."""

import pytest
import torch

from ser_model import SERForAudioClassification
from ser_model.errors import InputError
from ser_model.training.warm_start import load_warm_start

from .conftest import tiny_config


def test_every_weight_of_the_saved_model_is_loaded_under_the_new_config(tmp_path):
    torch.manual_seed(0)
    trained = SERForAudioClassification(tiny_config())
    trained.save_pretrained(tmp_path)
    expected = trained.state_dict()
    torch.manual_seed(1)
    fresh = SERForAudioClassification(tiny_config()).state_dict()
    assert any(not torch.equal(t, expected[n]) for n, t in fresh.items() if t.is_floating_point())
    # Only the weights are taken: the new run's config (here its calibration temperature) stays its own.
    model = load_warm_start(tmp_path, tiny_config(calibration_temperature=2.0))
    assert model.config.calibration_temperature == 2.0
    assert model.state_dict().keys() == expected.keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


@pytest.mark.parametrize("saved", [tiny_config(growth_rate=8), tiny_config(voice_head=True),
                                   tiny_config(branches=["mel"], growth_rate=8)])
def test_another_architecture_is_refused_with_the_reason(tmp_path, saved):
    SERForAudioClassification(saved).save_pretrained(tmp_path)
    with pytest.raises(InputError, match="another architecture than this preset") as refused:
        load_warm_start(tmp_path, tiny_config())  # raises, so no half-loaded model is handed out
    assert "--preset and --model_overrides" in str(refused.value)


def test_a_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(InputError, match="no model.safetensors"):
        load_warm_start(tmp_path, tiny_config())
