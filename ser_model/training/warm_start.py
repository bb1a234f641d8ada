"""Starting a training run from a model this project trained before (`train --init_model DIR`).

Continuing from an earlier model keeps what it learned (e.g. of English acted speech) while the new
run's corpora add voices, languages and channels, and reaches a given validation score in fewer
epochs than random weights (docs/experiments.md). Only the weights are taken: the new run's config,
label-set loss and calibration are its own.

Either the architecture matches the chosen preset exactly, and every weight is taken; or the new
model adds branches (e.g. the Whisper encoder beside a mel+MFCC model) or the voice head, and then
the branches both share are taken whole while the new branches and the heads start afresh (the
fusion head's input grows with a branch, so none of the old head fits). Anything else is refused,
so no branch is ever half-loaded.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from safetensors.torch import load_file
from transformers.utils import logging as transformers_logging

from ..configuration import SERConfig
from ..errors import InputError
from ..modeling import SERForAudioClassification

WEIGHTS = "model.safetensors"


def load_warm_start(folder: str | Path, config: SERConfig) -> SERForAudioClassification:
    """The model of `config` with every weight loaded from the model saved in `folder`, or, when `config`
    adds branches or the voice head to the saved model, with the weights of the branches both share.

    Raises `InputError` with the reason when the folder has no weights or their layout differs
    (another preset or label set, or fewer branches); then no model is returned, so none is half-loaded."""
    if not (Path(folder) / WEIGHTS).is_file():
        raise InputError(f"--init_model: no {WEIGHTS} in {folder}; pass a folder saved by this project's training")
    saved = SERConfig.from_pretrained(folder)
    if set(saved.branches) < set(config.branches) or (config.voice_head and not saved.voice_head
                                                      and saved.branches == config.branches):
        return _load_shared_branches(folder, saved, config)
    with _quiet_loading():  # the sentence below replaces transformers' table of mismatched tensors
        model, info = SERForAudioClassification.from_pretrained(folder, config=config, output_loading_info=True,
                                                                ignore_mismatched_sizes=True)
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    reshaped = sorted(name for name, *_ in info["mismatched_keys"])
    if missing or unexpected or reshaped:
        first = (missing or unexpected or reshaped)[0]
        raise InputError(f"--init_model: the model in {folder} has another architecture than this preset "
                         f"({len(missing)} tensors missing, {len(unexpected)} unexpected, {len(reshaped)} of another "
                         f"shape, e.g. {first}); pass the same --preset and --model_overrides it was trained with")
    return model


def _load_shared_branches(folder: str | Path, saved: SERConfig, config: SERConfig) -> SERForAudioClassification:
    """A new model of `config` whose branches that the saved model has too are its weights; the other
    branches and the heads keep their fresh initialisation (the caller loads a pretrained encoder)."""
    model = SERForAudioClassification(config)
    shared = tuple(f"ser.{branch}_encoder." for branch in saved.branches)
    weights = {name: tensor for name, tensor in load_file(str(Path(folder) / WEIGHTS)).items()
               if name.startswith(shared)}
    own = model.state_dict()
    wrong = sorted(name for name, tensor in weights.items() if name not in own or own[name].shape != tensor.shape)
    if wrong:
        raise InputError(f"--init_model: the {'+'.join(saved.branches)} branches in {folder} have another architecture "
                         f"than this preset (e.g. {wrong[0]}); pass the same --preset and --model_overrides they "
                         "were trained with")
    missing = sorted(name for name in own if name.startswith(shared) and name not in weights)
    if missing:
        raise InputError(f"--init_model: {folder} lacks {len(missing)} weights of its own branches, e.g. {missing[0]}")
    model.load_state_dict(weights, strict=False)
    return model


def freeze_branches(model: SERForAudioClassification, branches: list[str], folder: str | Path | None) -> None:
    """Stops the gradient of the `branches` that `load_warm_start` took from the model in `folder`; the trainer
    also runs them in inference mode (`SERTrainer.frozen_branches`), so their BatchNorm statistics stay too.

    Raises `InputError` when there is no such folder or it lacks one of them: frozen fresh weights learn nothing."""
    if not branches:
        return
    if folder is None:
        raise InputError(f"freeze_branches {' '.join(branches)} needs --init_model: the frozen branches keep its "
                         "weights, and fresh ones would learn nothing")
    lacking = sorted(set(branches) - set(SERConfig.from_pretrained(folder).branches)
                     | set(branches) - set(model.config.branches))
    if lacking:
        raise InputError(f"freeze_branches: the {'+'.join(lacking)} branch is not in both {folder} and the model "
                         f"to train ({'+'.join(model.config.branches)})")
    for branch in branches:
        model.ser.branch_encoder(branch).requires_grad_(False)


@contextmanager
def _quiet_loading():
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


__all__ = ["freeze_branches", "load_warm_start"]
