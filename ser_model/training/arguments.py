"""The arguments of `python -m ser_model train`, the transformers way (as `run_audio_classification.py`).

Three dataclasses, parsed by `HfArgumentParser` from flags, from a JSON recipe file, or from a dict:

- `ModelArguments`: which model (a `SERConfig` preset, changed field by field) and its first weights;
- `DataArguments`: which corpora, how they are split, cached and cropped;
- `SERTrainingArguments`: `TrainingArguments` plus this task's sampling, loss, augmentation,
  early stopping, weight averaging and calibration.

Fields that `TrainingArguments` declares keep its names and help texts; the values this project
trains with are set once, in `TRAINING_DEFAULTS`, which `parse_arguments` applies under whatever
the flags, the recipe or the dict give. `recipe` turns parsed arguments back into one flat dict:
the record saved in `training.json`, which `parse_arguments` reads again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

from ..configuration import BRANCHES, PRESETS, SERConfig
from ..data.augment import AugmentationSettings
from ..errors import InputError
from .speech_encoder import DEFAULT_SPEECH_ENCODER, speech_encoder_config

# The validation score that picks the best checkpoint and stops training (`trainer.ValidationMetrics`).
SELECTION_METRIC = "selection_macro_recall"

# The project's values of fields that `TrainingArguments` declares, applied before any given value.
# The figures each one was measured with are in docs/experiments.md.
TRAINING_DEFAULTS = {
    "num_train_epochs": 25,  # an upper bound: early stopping usually ends sooner
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 32,
    "learning_rate": 2e-3,
    "weight_decay": 0.05,
    "warmup_steps": 0.05,  # below 1, a share of the training steps
    "lr_scheduler_type": "cosine",
    "label_smoothing_factor": 0.1,  # acted emotions overlap: softer targets generalise better
    # Evaluate and checkpoint every epoch, keep the best by the validation score, and stop early on it.
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "metric_for_best_model": SELECTION_METRIC,
    "greater_is_better": True,
    "logging_steps": 10,
    "report_to": "none",
    # The collator needs the waveform and the label set, which are no arguments of the model's forward.
    "remove_unused_columns": False,
    "disable_tqdm": False,
    "seed": 0,
}

# Removed arguments that older recipes and training.json records still carry, dropped on reading: mixup, off in
# every recipe, mixed the mel and MFCC inputs but not Whisper's.
RETIRED_ARGUMENTS = ("mixup_probability", "mixup_alpha")

def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class ModelArguments:
    """The model to train: a `SERConfig` preset with fields overridden, and where its first weights come from."""

    preset: str = field(default="cpu-small", metadata=_help(f"model size, one of {sorted(PRESETS)}"))
    branches: list[str] = field(default_factory=lambda: list(BRANCHES), metadata=_help(
        f"the branches of the fusion, among {list(BRANCHES)}; fewer give the ablation models"))
    speech_encoder: str = field(default=DEFAULT_SPEECH_ENCODER, metadata=_help(
        "the pretrained Whisper checkpoint of the whisper branch: a Hub id (openai/whisper-base, "
        "openai/whisper-small, ...) or a folder in the Hub's layout; its sizes come from its config"))
    voice_head: bool = field(default=True, metadata=_help(
        "also learn whether the voice sounds female or male, from the corpora's speaker metadata "
        "(clips without it give that head no loss)"))
    model_overrides: str = field(default="{}", metadata=_help(
        'SERConfig fields over the preset, as a JSON object, e.g. \'{"growth_rate": 24}\''))
    mel_init: str | None = field(default=None, metadata=_help(
        "start the mel DenseNet from 'imagenet' (timm densenet121.tv_in1k, needs internet and the densenet121 "
        "preset) or a local timm/torchvision checkpoint path"))
    init_model: str | None = field(default=None, metadata=_help(
        "start from the weights of a model folder this project trained (e.g. model-ravdess-tess) instead of "
        "random ones; it must have the architecture of this preset (ser_model.training.warm_start)"))

    def __post_init__(self):
        if self.branches is None:  # records written before the whisper branch: the config's own default
            self.branches = list(SERConfig().branches)
        if self.preset not in PRESETS:
            raise InputError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if isinstance(self.model_overrides, dict):  # a JSON recipe may give the object itself
            self.model_overrides = json.dumps(self.model_overrides)
        try:
            overrides = json.loads(self.model_overrides)
        except json.JSONDecodeError as e:
            raise InputError(f"model_overrides must be a JSON object, got {self.model_overrides!r}") from e
        if not isinstance(overrides, dict):
            raise InputError(f"model_overrides must be a JSON object, got {self.model_overrides!r}")
        if self.mel_init and self.init_model:
            raise InputError("mel_init and init_model both set the mel branch's first weights; pass one of them")
        # A bad model setting is refused before any data is read; the speech encoder's own config is
        # read (perhaps downloaded) only when the model is built.
        self.model_config(speech_encoder=False)

    def config_overrides(self) -> dict:
        """The `SERConfig` fields these arguments set over the preset."""
        return {**json.loads(self.model_overrides), "branches": self.branches, "voice_head": self.voice_head}

    def model_config(self, speech_encoder: bool = True) -> SERConfig:
        """The config of the model to train; with `speech_encoder=False`, the same without the whisper
        branch (checks every other field without reading the encoder's checkpoint)."""
        overrides = self.config_overrides()
        if "whisper" in self.branches:
            if speech_encoder:
                overrides["speech_encoder"] = speech_encoder_config(self.speech_encoder)
            else:
                overrides["branches"] = [b for b in self.branches if b != "whisper"] or ["mel"]
        try:
            return SERConfig.from_preset(self.preset, **overrides)
        except ValueError as error:  # the Hub file cannot import InputError; here the values came from flags
            raise InputError(str(error)) from error


@dataclass
class DataArguments:
    """The training data: corpora, their split, the decoded-clip cache and the crop length."""

    data_dir: str | None = field(default=None, metadata=_help(
        "folder holding the corpora (python -m ser_model train: $SER_DATA_DIR, else shared/data beside the checkout)"))
    corpora: list[str] | None = field(default=None, metadata=_help("only these corpora (default: every one found)"))
    exclude_corpora: list[str] = field(default_factory=list, metadata=_help(
        "leave these corpora out of training and validation (leave-one-corpus-out runs)"))
    split: str | None = field(default=None, metadata=_help("a saved split JSON to reuse instead of making one"))
    cache_dir: str | None = field(default=None, metadata=_help(
        "keep decoded clips and codec copies here for the next run (make train uses runs/cache); empty: none"))
    max_clips_per_part: int | None = field(default=None, metadata=_help(
        "at most this many clips per part of the split (smoke runs)"))
    train_crop_seconds: float = field(default=3.0, metadata=_help(
        "longest stretch of a clip per draw, a random one: pooling is length-independent, so crops shorter "
        "than the inference window teach the same and cost less"))

    def __post_init__(self):
        if self.train_crop_seconds <= 0:
            raise InputError(f"train_crop_seconds must be positive, got {self.train_crop_seconds}")


@dataclass
class SERTrainingArguments(TrainingArguments):
    """`TrainingArguments` with this task's sampling, loss, augmentation, early stopping, weight averaging
    and calibration; `SERTrainer` reads them from `self.args`. Build it with `parse_arguments`, which
    applies `TRAINING_DEFAULTS`. `output_dir` is required: nothing is written relative to the working
    directory unasked."""

    # Sampling (ser_model.data.train_data).
    samples_per_epoch: int = field(default=3000, metadata=_help("balanced draws per epoch"))
    balanced_sampling: bool = field(default=True, metadata=_help(
        "draw a corpus, then a speaker, then a clip, so that corpora with few voices and many clips do not "
        "dominate; off: every clip equally likely"))
    corpus_balance_exponent: float = field(default=0.5, metadata=_help(
        "corpus share ~ training speakers ** this: 0 equal corpora, 1 equal speakers"))
    # Loss (ser_model.training.trainer); label smoothing is TrainingArguments' label_smoothing_factor.
    label_set_loss: bool = field(default=True, metadata=_help(
        "score each clip over its corpus' label set, so that a corpus without a class does not teach that the "
        "class never occurs; off: a plain loss over every class"))
    out_of_set_weight: float = field(default=0.2, metadata=_help(
        "with the label-set loss, how much the classes outside a clip's set still count (0: not at all, 1: "
        "plain loss); above 0 a corpus still teaches a little that its clips are not of a class it lacks, "
        "without which the model calls them that class (docs/experiments.md)"))
    # Early stopping, weight averaging, calibration.
    early_stopping_patience: int = field(default=8, metadata=_help(
        "epochs without a better validation score before training stops"))
    weight_average_decay: float = field(default=0.995, metadata=_help(
        "evaluate, checkpoint and ship the moving average of the weights (ser_model.training.weight_average), "
        "whose validation score is steadier than the raw weights'; 0: off"))
    calibrate: bool = field(default=True, metadata=_help(
        "fit the temperature that calibrates the probabilities on the validation speakers"))
    # The pretrained speech encoder and the voice head.
    speech_encoder_trainable_layers: int = field(default=0, metadata=_help(
        "how many of the speech encoder's top layers are trained (0: frozen, -1: all); a frozen encoder keeps "
        "what 680,000 hours taught it about voices, and costs no backward pass through it"))
    freeze_branches: list[str] = field(default_factory=list, metadata=_help(
        "branches kept exactly as --init_model gave them, BatchNorm statistics included (e.g. mel mfcc), so "
        "that only the new branch and the heads learn; on the bundled recipe it scored 1 to 3 points lower on "
        "the validation speakers than training them on (docs/experiments.md)"))
    speech_encoder_learning_rate: float = field(default=1e-4, metadata=_help(
        "learning rate of the speech encoder's trained layers: lower than the rest, so that the few speakers "
        "here do not wash out what pretraining learned"))
    voice_loss_weight: float = field(default=0.2, metadata=_help(
        "weight of the voice head's loss beside the emotion loss; small, since the voice is the easier task"))
    # Waveform augmentation (ser_model.data.augment). The probabilities leave a good share of the draws free
    # of room and channel effects: trained on mostly degraded clips, the model mistakes clean clips for a
    # brighter class (docs/experiments.md).
    speed_probability: float = field(default=0.5, metadata=_help("chance of a speed change"))
    speed_range: list[float] = field(default_factory=lambda: [0.9, 1.1], metadata=_help("speed factors, low high"))
    noise_probability: float = field(default=0.2, metadata=_help("chance of white noise"))
    noise_snr_db: list[float] = field(default_factory=lambda: [10.0, 40.0], metadata=_help(
        "white noise SNR in dB, low high"))
    codec_probability: float = field(default=0.3, metadata=_help(
        "chance of the clip's MP3/Opus/Vorbis copy; every clip gets one, made once and cached"))
    reverb_probability: float = field(default=0.15, metadata=_help("chance of a synthetic room"))
    reverb_rt60: list[float] = field(default_factory=lambda: [0.2, 0.8], metadata=_help(
        "room reverberation time RT60 in seconds, low high"))
    babble_probability: float = field(default=0.1, metadata=_help("chance of babble from other training clips"))
    babble_snr_db: list[float] = field(default_factory=lambda: [5.0, 25.0], metadata=_help(
        "babble SNR in dB, low high"))
    narrow_band_probability: float = field(default=0.1, metadata=_help("chance of a telephone or narrow band"))
    level_probability: float = field(default=0.3, metadata=_help("chance of a quieter 16-bit recording"))
    level_db: list[float] = field(default_factory=lambda: [-40.0, 0.0], metadata=_help(
        "level change in dB, low high"))
    # Feature augmentation (ser_model.training.trainer).
    time_masks: int = field(default=2, metadata=_help(
        "SpecAugment time masks per clip, the same seconds in every branch's input"))
    time_mask_frames: int = field(default=20, metadata=_help("longest time mask, in frames"))
    freq_masks: int = field(default=2, metadata=_help(
        "SpecAugment masks per clip over each input's own bands: mel bands, MFCCs and Whisper's mel bins"))
    freq_mask_bands: int = field(default=8, metadata=_help("widest frequency mask, in bands or coefficients"))

    PROBABILITIES = ("speed_probability", "noise_probability", "codec_probability", "reverb_probability",
                     "babble_probability", "narrow_band_probability", "level_probability", "label_smoothing_factor",
                     "out_of_set_weight", "voice_loss_weight")

    def __post_init__(self):
        if not self.output_dir:
            raise InputError("output_dir is required: the folder for the checkpoints and the best model, "
                             "e.g. --output_dir runs/cpu-small")
        for name in self.PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise InputError(f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}")
        if self.speech_encoder_trainable_layers < -1:
            raise InputError(f"speech_encoder_trainable_layers must be -1 (all), 0 (frozen) or a number of top layers, "
                             f"got {self.speech_encoder_trainable_layers}")
        unknown = sorted(set(self.freeze_branches) - set(BRANCHES))
        if unknown:
            raise InputError(f"freeze_branches must name branches among {list(BRANCHES)}, got {unknown}")
        if self.samples_per_epoch <= 0:
            raise InputError(f"samples_per_epoch must be positive, got {self.samples_per_epoch}")
        self._fit_the_machine()
        super().__post_init__()

    def _fit_the_machine(self) -> None:
        """Settings that follow from the machine rather than the recipe."""
        # Under torchrun on a machine without a GPU, accelerate only sets up data parallelism when told to
        # use the CPU (otherwise every process would train alone); gloo is PyTorch's CPU backend.
        if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.cuda.is_available():
            self.use_cpu, self.ddp_backend = True, self.ddp_backend or "gloo"
        self.dataloader_pin_memory = self.dataloader_pin_memory and torch.cuda.is_available()  # pinning needs CUDA
        if self.data_seed is None:  # the training sampler's order follows the run's seed
            self.data_seed = self.seed

    def augmentation(self, window: int, sampling_rate: int) -> AugmentationSettings:
        """The waveform augmentation settings, from the fields of the same names."""
        names = {f.name for f in dataclasses.fields(AugmentationSettings)} - {"window", "sampling_rate"}
        values = {n: tuple(v) if isinstance(v := getattr(self, n), list) else v for n in names if hasattr(self, n)}
        return AugmentationSettings(window=window, sampling_rate=sampling_rate, **values)


ARGUMENT_CLASSES = (ModelArguments, DataArguments, SERTrainingArguments)
Arguments = tuple[ModelArguments, DataArguments, SERTrainingArguments]


def argument_parser(**kwargs) -> HfArgumentParser:
    """One flag per field of the three argument classes (`--name` or `--name-with-dashes`)."""
    return HfArgumentParser(ARGUMENT_CLASSES, **kwargs)


def parse_arguments(values: Mapping) -> Arguments:
    """The three argument objects from `values` (field name -> value, as in a JSON recipe); every field
    not given takes `TRAINING_DEFAULTS`, else its declared default. A bad value is an `InputError`; so is a
    recipe that asks for mixup, which no longer exists (`RETIRED_ARGUMENTS`)."""
    if values.get("mixup_probability"):
        raise InputError(f"mixup_probability is {values['mixup_probability']}, but mixup was removed: this version "
                         "cannot train that recipe; set it to 0 or leave it out")
    values = {name: value for name, value in values.items() if name not in RETIRED_ARGUMENTS}
    try:
        return argument_parser().parse_dict({**TRAINING_DEFAULTS, **values})
    except InputError:
        raise
    except ValueError as error:  # TrainingArguments' own checks and unknown keys: the values came from a person
        raise InputError(str(error)) from error


def read_recipe(path: str | os.PathLike) -> dict:
    """The values of a JSON recipe file: one object of field names, as `recipe` writes."""
    try:
        values = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"the recipe {path} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise InputError(f"the recipe {path} must hold one JSON object of argument names, got {type(values).__name__}")
    return values


def given_flags(namespace: argparse.Namespace) -> dict:
    """The fields a command line set, from a parser that `suppress_defaults` changed: only those given."""
    names = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}
    return {name: value for name, value in vars(namespace).items() if name in names}


def suppress_defaults(parser: argparse.ArgumentParser) -> None:
    """Makes the parser leave out every field not on the command line, so that a recipe's values and
    `TRAINING_DEFAULTS` are not overwritten by declared defaults; the help still shows the defaults."""
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        if action.option_strings[0] == f"--{action.dest}":  # not the `--no_NAME` twin of a flag
            default = TRAINING_DEFAULTS.get(action.dest, action.default)
            said = "required" if action.dest == "output_dir" else f"default: {str(default).replace('%', '%%')}"
            action.help = f"{action.help or ''} ({said})".strip()
        action.default = argparse.SUPPRESS


def recipe(model_args: ModelArguments, data_args: DataArguments, training_args: SERTrainingArguments) -> dict:
    """Every argument as one flat dict of JSON values: a recipe `parse_arguments` reads back to the same.
    Tokens (`hub_token`) are left out: they are secrets, which `to_dict` masks, not part of a recipe."""
    record = {**dataclasses.asdict(model_args), **dataclasses.asdict(data_args), **training_args.to_dict()}
    return {name: value for name, value in record.items() if not name.endswith("_token")}


__all__ = ["ARGUMENT_CLASSES", "DataArguments", "ModelArguments", "RETIRED_ARGUMENTS", "SELECTION_METRIC",
           "SERTrainingArguments", "TRAINING_DEFAULTS", "argument_parser", "given_flags", "parse_arguments", "read_recipe",
           "recipe", "suppress_defaults"]
