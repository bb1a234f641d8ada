"""Starting a training run from a model this project trained before (`train --init_model DIR`).

Continuing from an earlier model keeps what it learned (e.g. of English acted speech) while the new
run's corpora add voices, languages and channels, and reaches a given validation score in fewer
epochs than random weights (README, Results). Only the weights are taken: the new run's config,
label-set loss and calibration are its own, and the architecture must match the chosen preset exactly.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from transformers.utils import logging as transformers_logging

from ..configuration import SERConfig
from ..errors import InputError
from ..modeling import SERForAudioClassification

WEIGHTS = "model.safetensors"


def load_warm_start(folder: str | Path, config: SERConfig) -> SERForAudioClassification:
    """The model of `config` with every weight loaded from the model saved in `folder`.

    Raises `InputError` with the reason when the folder has no weights or their layout differs
    (another preset, branch set or label set); then no model is returned, so none is half-loaded."""
    if not (Path(folder) / WEIGHTS).is_file():
        raise InputError(f"--init_model: no {WEIGHTS} in {folder}; pass a folder saved by this project's training")
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


@contextmanager
def _quiet_loading():
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


__all__ = ["load_warm_start"]
