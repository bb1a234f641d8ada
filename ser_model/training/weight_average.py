"""Exponential moving average of a model's weights during training (Polyak & Juditsky 1992).

With few speakers per corpus, the validation score of the raw weights jumps from one epoch to the
next (docs/experiments.md). The average over the last few hundred steps is a smoother, usually better
model (as timm's `ModelEmaV3` and Kaldi's model averaging use it), and it is the one that is
evaluated, checkpointed and shipped.
"""

from contextlib import contextmanager

import torch
from transformers import TrainerCallback


class WeightAverage(TrainerCallback):
    """Keeps `average = decay * average + (1 - decay) * weights` after every optimizer step.

    Buffers are averaged too (BatchNorm running statistics), except integer ones (the batch
    counters), which are copied. The first updates use a smaller decay, `(1 + n) / (10 + n)` after
    `n` updates (as TensorFlow's `ExponentialMovingAverage` with `num_updates`), so that the
    average does not remember the random initialisation.

    Args:
        decay (`float`): weight of the old average at each step, in (0, 1); 0.995 averages over
            roughly the last 200 steps.
    """

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.average: dict[str, torch.Tensor] | None = None
        self.updates = 0
        self._training: dict[str, torch.Tensor] | None = None  # the weights set aside while swapped in

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # A resumed run starts its average from the loaded checkpoint, which holds the average.
        self.average, self.updates = None, 0

    # Trainer evaluates and checkpoints right after `on_step_end` / `on_epoch_end` when the flow
    # callback (which runs first) has asked for it, then calls `on_evaluate` and `on_save`: the
    # average is swapped in on the first pair and the training weights back on the second.
    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.update(model)
        self._swap_in_if_due(control, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._swap_in_if_due(control, model)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not control.should_save:
            self._swap_back(model)

    def on_save(self, args, state, control, model=None, **kwargs):
        self._swap_back(model)

    def on_train_end(self, args, state, control, **kwargs):
        # Afterwards the model holds the best checkpoint (an average already): nothing to swap in.
        self.average = None

    def _swap_in_if_due(self, control, model) -> None:
        if control.should_evaluate or control.should_save:
            self._swap_in(model)

    def _swap_in(self, model) -> None:
        if self.average is not None and self._training is None:
            self._training = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
            model.load_state_dict(self.average)

    def _swap_back(self, model) -> None:
        if self._training is not None:
            model.load_state_dict(self._training)
            self._training = None

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        state = model.state_dict()
        if self.average is None:
            self.average = {name: tensor.detach().clone() for name, tensor in state.items()}
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, tensor in state.items():
            if tensor.is_floating_point():
                self.average[name].lerp_(tensor, 1.0 - decay)
            else:
                self.average[name].copy_(tensor)

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """Within the block the model holds the average; the training weights come back after it."""
        self._swap_in(model)
        try:
            yield
        finally:
            self._swap_back(model)
