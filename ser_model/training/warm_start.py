"""Starting a training run from a model this project trained before (`train --init-model DIR`).

From scratch on 2 CPU cores, the multi-corpus recipe needs many epochs to reach, on unseen RAVDESS
actors, what the RAVDESS+TESS model already knows: after 10 of 25 epochs it called most clips of the
RAVDESS validation actors angry (29% macro recall, against 68.5% for that model). Continuing from the
earlier model keeps what it learned about English acted speech while the other corpora add voices,
languages and channels. Only the weights are taken (the new run's config, label-set loss and
calibration are its own), and the architecture must match the chosen preset exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import InputError

WEIGHTS = "model.safetensors"


def load_warm_start(model: torch.nn.Module, folder: str | Path) -> int:
    """Loads every weight of the model saved in `folder` into `model`; returns how many tensors.

    Raises `InputError` with the reason when the folder has no weights or their layout differs
    (another preset, branch set or label set)."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise InputError(f"--init-model: no {WEIGHTS} in {folder}; pass a folder saved by this project's training")
    weights = load_file(str(path))
    own = model.state_dict()
    missing, unexpected = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys())
    reshaped = sorted(k for k in own.keys() & weights.keys() if own[k].shape != weights[k].shape)
    if missing or unexpected or reshaped:
        first = (missing or unexpected or reshaped)[0]
        raise InputError(f"--init-model: the model in {folder} has another architecture than this preset "
                         f"({len(missing)} tensors missing, {len(unexpected)} unexpected, {len(reshaped)} of another "
                         f"shape, e.g. {first}); pass the same --preset and --model_overrides it was trained with")
    model.load_state_dict(weights)
    return len(weights)


__all__ = ["load_warm_start"]
