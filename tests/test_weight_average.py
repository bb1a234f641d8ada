"""The moving average of the weights: its arithmetic, and that it is what training evaluates and saves."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from ser_model import SERFeatureExtractor

from ser_model import SERForAudioClassification
from ser_model.data.corpora import LABELS, Record
from ser_model.data.train_data import ClipDataset, FeatureCollator
from ser_model.training.arguments import SERTrainingArguments, parse_arguments
from ser_model.training.trainer import SERTrainer
from ser_model.training.weight_average import WeightAverage

from .conftest import speechlike, tiny_config


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_the_average_moves_towards_the_weights_with_a_warm_up_decay():
    model = small_model()
    average = WeightAverage(decay=0.99)
    average.update(model)  # the first update only copies
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked.add_(5)
    average.update(model)
    decay = 2 / 11  # (1 + n) / (10 + n) after n = 1 update, well below 0.99
    assert torch.allclose(average.average["0.weight"], decay * start["0.weight"] + (1 - decay) * model[0].weight)
    assert torch.allclose(average.average["1.running_mean"], start["1.running_mean"] + (1 - decay) * 2.0)
    assert average.average["1.num_batches_tracked"].item() == 5  # integer buffers are copied, not averaged


def test_swapping_in_the_average_gives_the_training_weights_back():
    model = small_model()
    average = WeightAverage(decay=0.5)
    average.update(model)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    average.update(model)
    training_weights = model[0].weight.detach().clone()
    with average.swapped_in(model):
        assert torch.equal(model[0].weight, average.average["0.weight"])
        assert not torch.equal(model[0].weight, training_weights)
    assert torch.equal(model[0].weight, training_weights)


def test_decay_outside_the_open_unit_interval_is_refused():
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(decay=1.0)
    with pytest.raises(ValueError, match="weight_average_decay"):
        parse_arguments({"output_dir": "run", "weight_average_decay": 1.0})


class KeepsTheAverage(TrainerCallback):
    """Copies the running average after every step, as the checkpoint should hold it."""

    def __init__(self, weight_average: WeightAverage):
        self.weight_average = weight_average
        self.last = None

    def on_step_end(self, args, state, control, **kwargs):
        self.last = {k: v.clone() for k, v in self.weight_average.average.items()}


def test_checkpoints_and_evaluation_use_the_average_and_training_goes_on_from_the_raw_weights(tmp_path):
    config = tiny_config()
    extractor = SERFeatureExtractor.from_config(config)
    records = [Record(path=str(i), corpus="c", speaker="c:1", label=LABELS[i % 7], gender=None, utterance=str(i))
               for i in range(8)]
    clips = ClipDataset([speechlike(0.5, seed=i) for i in range(8)], records)
    args = SERTrainingArguments(output_dir=str(tmp_path), max_steps=4, save_strategy="steps", save_steps=4,
                                eval_strategy="steps", eval_steps=4, per_device_train_batch_size=4, learning_rate=0.05,
                                report_to="none", remove_unused_columns=False, use_cpu=True, disable_tqdm=True,
                                time_masks=0, freq_masks=0)
    torch.manual_seed(0)
    trainer = SERTrainer(model=SERForAudioClassification(config), args=args, train_dataset=clips, eval_dataset=clips,
                         data_collator=FeatureCollator(extractor, config.label2id), class_weights=torch.ones(7))
    average = WeightAverage(0.9)
    trainer.add_callback(average)
    probe = KeepsTheAverage(average)
    trainer.add_callback(probe)  # after the average's own callback, so it sees this step's update
    trainer.train()

    saved = load_file(tmp_path / "checkpoint-4" / "model.safetensors")
    raw = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(saved[k], probe.last[k]) for k in saved)
    assert not torch.equal(saved["head.classifier.weight"], raw["head.classifier.weight"]), \
        "the checkpoint holds the raw weights, or the raw weights did not come back after saving"

    # The evaluation during training scored the average: the same loss as the checkpoint loaded.
    during = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    trainer.model.load_state_dict(SERForAudioClassification.from_pretrained(tmp_path / "checkpoint-4").state_dict())
    assert trainer.evaluate()["eval_loss"] == pytest.approx(during[-1], rel=1e-5)
