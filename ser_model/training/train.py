"""`python -m ser_model train`: every corpus found, speaker-independent from the first step.

It reads every corpus under the data folder, splits each by speaker (`ser_model.data.splits`), draws
balanced epochs over corpora and speakers with speaker, room and channel augmentation
(`ser_model.data.train_data`, `ser_model.data.augment`), scores each clip over its corpus' label set
(`ser_model.training.trainer`), stops early on the validation speakers, fits the temperature that
calibrates the probabilities on them (`ser_model.training.calibration`), and saves the best model with its
feature extractor, split and training record. Because it is plain `Trainer`, the same command runs
on several GPUs or machines under `torchrun` or `accelerate launch`, and an interrupted run
continues from its last checkpoint when the same command is run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import EarlyStoppingCallback, HfArgumentParser, TrainingArguments, set_seed

from ..data.augment import AugmentationSettings, Augmenter
from .calibration import fit_temperature, reliability, softmax
from ..configuration import PRESETS, SERConfig, seconds_to_samples
from ..data.corpora import DEFAULT_DATA_DIR, LABELS, discover
from ..errors import InputError
from ..feature_extractor import SERFeatureExtractor
from ..model_info import load_training_corpora
from .mel_init import load_mel_init
from ..modeling import SERForAudioClassification
from ..data.splits import apply_split, load_split, make_split, save_split, subsample_parts, summarize_split
from ..data.train_data import (BalancedEpochs, ClipDataset, FeatureCollator, class_weights, codec_versions, load_clips,
                         sampling_weights)
from .trainer import EpochDraws, SERTrainer, ValidationMetrics, WallClock
from .warm_start import load_warm_start
from .weight_average import WeightAverage

logger = logging.getLogger(__name__)


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class TrainingConfig:
    """Every training hyperparameter; the model's own live in `SERConfig` (chosen by `preset`).
    Each field is a command-line flag of `python -m ser_model train` (`--field-name`)."""

    # What to train.
    preset: str = field(default="cpu-small", metadata=_help(f"model size, one of {sorted(PRESETS)}"))
    branches: list[str] | None = field(default=None, metadata=_help("only these branches (mel, mfcc): ablations"))
    model_overrides: str = field(default="{}", metadata=_help('SERConfig fields over the preset, JSON, e.g. '
                                                              '\'{"growth_rate": 24}\''))
    mel_init: str | None = field(default=None, metadata=_help(
        "start the mel DenseNet from 'imagenet' (timm densenet121.tv_in1k, needs internet and the densenet121 "
        "preset) or a local timm/torchvision checkpoint path"))
    init_model: str | None = field(default=None, metadata=_help(
        "start from the weights of a model folder this project trained (e.g. model-ravdess-tess) "
        "instead of random ones; same preset (ser_model.training.warm_start)"))
    # Data.
    data_dir: str = field(default=str(DEFAULT_DATA_DIR), metadata=_help("folder holding the corpora"))
    corpora: list[str] | None = field(default=None, metadata=_help("only these corpora (default: every one found)"))
    exclude_corpora: list[str] = field(default_factory=list, metadata=_help(
        "leave these corpora out of training and validation (leave-one-corpus-out runs)"))
    output_dir: str = field(default="runs/cpu-small", metadata=_help("checkpoints, the best model and the split"))
    split: str | None = field(default=None, metadata=_help("a saved split JSON to reuse instead of making one"))
    cache_dir: str | None = field(default="runs/cache", metadata=_help(
        "keeps decoded clips and codec copies for the next run; empty to turn off"))
    max_clips_per_part: int | None = field(default=None, metadata=_help("at most this many clips per part (smoke)"))
    # Sampling and loss.
    samples_per_epoch: int = field(default=3000, metadata=_help("balanced draws per epoch"))
    train_crop_seconds: float = field(default=3.0, metadata=_help(
        "longest stretch of a clip per draw, a random one (inference windows are longer; pooling is "
        "length-independent, and 3 s instead of 4 s saves a quarter of the computation)"))
    balanced_sampling: bool = field(default=True, metadata=_help(
        "draw corpora, then speakers, then clips; off: every clip equally likely"))
    corpus_balance_exponent: float = field(default=0.5, metadata=_help(
        "corpus share ~ training speakers ** this: 0 equal corpora, 1 equal speakers"))
    label_set_loss: bool = field(default=True, metadata=_help(
        "score each clip over its corpus' label set only; off: a plain 7-way loss"))
    out_of_set_weight: float = field(default=0.2, metadata=_help(
        "with the label-set loss, how much the classes outside a clip's set still count (0: not at all, 1: plain); "
        "at 0 the first multi-corpus run called most TurEV-DB validation clips disgust, a class it does not have"))
    label_smoothing: float = field(default=0.1, metadata=_help(
        "acted emotions overlap; softer targets generalise better"))
    # Optimisation.
    seed: int = field(default=0, metadata=_help("seeds the split, the initialisation, the draws and augmentation"))
    epochs: int = field(default=25, metadata=_help("upper bound; early stopping usually ends sooner"))
    batch_size: int = field(default=32, metadata=_help("clips per step (per device)"))
    learning_rate: float = field(default=2e-3, metadata=_help("AdamW peak rate, cosine decay after warm-up"))
    weight_decay: float = field(default=0.05, metadata=_help("AdamW weight decay"))
    warmup_ratio: float = field(default=0.05, metadata=_help("share of steps spent warming up"))
    patience: int = field(default=8, metadata=_help("epochs without a better validation score before stopping"))
    weight_average_decay: float = field(default=0.995, metadata=_help(
        "moving average of the weights evaluated and saved instead of them (ser_model.training.weight_average); 0: off. "
        "Between epochs the raw weights' validation score jumps by tens of points"))
    calibrate: bool = field(default=True, metadata=_help("fit the temperature on the validation speakers"))
    # Waveform augmentation (ser_model.data.augment). About 40% of the draws stay free of room and channel
    # effects: with 90% degraded (the first recipe), clean validation clips sounded brighter than any
    # training clip of their class and were mostly called angry (17% on the RAVDESS validation actors
    # clean, 30% with the training augmentation applied, after 6 epochs).
    speed_probability: float = 0.5
    speed_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    noise_probability: float = 0.2
    noise_snr_db: list[float] = field(default_factory=lambda: [10.0, 40.0])
    codec_probability: float = field(default=0.3, metadata=_help(
        "chance of the clip's MP3/Opus/Vorbis copy; every clip gets one, made once and cached"))
    reverb_probability: float = 0.15
    reverb_rt60: list[float] = field(default_factory=lambda: [0.2, 0.8])
    babble_probability: float = 0.1
    babble_snr_db: list[float] = field(default_factory=lambda: [5.0, 25.0])
    narrow_band_probability: float = 0.1
    level_probability: float = 0.3
    level_db: list[float] = field(default_factory=lambda: [-40.0, 0.0])
    # Feature augmentation (ser_model.training.trainer).
    time_masks: int = field(default=2, metadata=_help("SpecAugment time masks per clip"))
    time_mask_frames: int = field(default=20, metadata=_help("longest time mask, in frames"))
    freq_masks: int = field(default=2, metadata=_help("SpecAugment masks per clip over mel bands and MFCCs each"))
    freq_mask_bands: int = field(default=8, metadata=_help("widest frequency mask, in bands or coefficients"))
    mixup_probability: float = field(default=0.0, metadata=_help("chance that a batch is mixed with itself"))
    mixup_alpha: float = field(default=0.4, metadata=_help("Beta(alpha, alpha) draws the mixing weight"))
    # Running.
    max_steps: int = field(default=-1, metadata=_help("stop after this many steps (smoke tests); -1: no limit"))
    logging_steps: int = 10
    dataloader_workers: int = field(default=0, metadata=_help("worker processes that augment clips"))

    PROBABILITIES = ("speed_probability", "noise_probability", "codec_probability", "reverb_probability",
                     "babble_probability", "narrow_band_probability", "level_probability", "label_smoothing",
                     "mixup_probability", "out_of_set_weight")

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise InputError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for name in self.PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise InputError(f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}")
        for name in ("batch_size", "epochs", "samples_per_epoch", "train_crop_seconds"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if isinstance(self.model_overrides, dict):
            self.model_overrides = json.dumps(self.model_overrides)
        try:
            overrides = json.loads(self.model_overrides)
        except json.JSONDecodeError as e:
            raise InputError(f"model_overrides must be a JSON object, got {self.model_overrides!r}") from e
        if not isinstance(overrides, dict):
            raise InputError(f"model_overrides must be a JSON object, got {self.model_overrides!r}")
        self.model_config()  # a bad model setting is refused before any data is read

    def model_config(self) -> SERConfig:
        overrides = {**json.loads(self.model_overrides), **({"branches": self.branches} if self.branches else {})}
        try:
            return SERConfig.from_preset(self.preset, **overrides)
        except ValueError as error:  # the Hub file cannot import InputError; here the values came from flags
            raise InputError(str(error)) from error

    def augmentation(self, model_config: SERConfig) -> AugmentationSettings:
        """The waveform augmentation settings, from the fields of the same names."""
        names = {f.name for f in dataclasses.fields(AugmentationSettings)} - {"window", "sampling_rate"}
        values = {n: tuple(v) if isinstance(v := getattr(self, n), list) else v for n in names if hasattr(self, n)}
        window = min(model_config.window_samples, seconds_to_samples(self.train_crop_seconds, model_config.sampling_rate))
        return AugmentationSettings(window=window, sampling_rate=model_config.sampling_rate, **values)


def prepare_data(cfg: TrainingConfig):
    """Records, their split (new or loaded) and the records of each part, restricted to the chosen corpora.

    The split is made over every corpus found before any is left out, so a leave-one-corpus-out
    run holds out the same speakers of the other corpora as the full run.
    """
    records = discover(cfg.data_dir)
    split = load_split(cfg.split) if cfg.split else make_split(records, seed=cfg.seed)
    kept = [r for r in records if (cfg.corpora is None or r.corpus in cfg.corpora)
            and r.corpus not in cfg.exclude_corpora]
    found = {r.corpus for r in records}
    unknown = (set(cfg.corpora or []) | set(cfg.exclude_corpora)) - found
    if unknown:
        raise InputError(f"no clips of {sorted(unknown)} in {cfg.data_dir}; found {sorted(found)}")
    parts = apply_split(kept, split)
    if cfg.max_clips_per_part:
        parts = subsample_parts(parts, cfg.max_clips_per_part)
    for name in ("train", "validation"):
        if not parts[name]:
            raise InputError(f"the {name} part of the split is empty: add corpora with more speakers")
    return kept, split, parts


def training_arguments(cfg: TrainingConfig, output_dir: str | os.PathLike, **overrides) -> TrainingArguments:
    """The `TrainingArguments` of `train` (and of the training benchmark, with `overrides`)."""
    # Under torchrun on a machine without a GPU, accelerate only sets up data parallelism when told to
    # use the CPU (otherwise every process would train alone); gloo is PyTorch's CPU backend.
    cpu_processes = int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.cuda.is_available()
    by_steps = cfg.max_steps > 0
    arguments = dict(
        output_dir=str(output_dir),
        use_cpu=cpu_processes,
        ddp_backend="gloo" if cpu_processes else None,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="cosine",
        eval_strategy="steps" if by_steps else "epoch",
        save_strategy="steps" if by_steps else "epoch",
        eval_steps=cfg.max_steps if by_steps else None,
        save_steps=cfg.max_steps if by_steps else None,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=ValidationMetrics.SELECTION,
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_workers,
        disable_tqdm=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    return TrainingArguments(**{**arguments, **overrides})


def build_trainer(cfg: TrainingConfig, split, parts, output_dir: str | os.PathLike, callbacks=(),
                  **argument_overrides) -> SERTrainer:
    """The trainer of `train`, its data decoded and augmented (shared with the training benchmark)."""
    model_config = cfg.model_config()
    feature_extractor = SERFeatureExtractor.from_config(model_config)
    rate = model_config.sampling_rate
    train_records = parts["train"]
    if not cfg.label_set_loss:
        # The ablation: every clip scored over all seven classes, as a plain loss does.
        train_records = [dataclasses.replace(r, label_set=LABELS) for r in train_records]
    clips = load_clips(train_records, rate, "loading train", cfg.cache_dir)
    coded = codec_versions(train_records, clips, rate, cfg.seed, cfg.cache_dir) if cfg.codec_probability else None
    weights = (sampling_weights(train_records, cfg.corpus_balance_exponent) if cfg.balanced_sampling
               else np.full(len(train_records), 1.0 / len(train_records)))
    train_set = BalancedEpochs(clips, train_records, weights, cfg.samples_per_epoch,
                               Augmenter(cfg.augmentation(model_config), clips),
                               coded, cfg.codec_probability, cfg.seed)
    validation_set = ClipDataset(load_clips(parts["validation"], rate, "loading validation", cfg.cache_dir),
                                 parts["validation"])
    model = SERForAudioClassification(model_config)
    if cfg.mel_init:
        logger.info("mel branch: %d tensors from %s", len(load_mel_init(model, cfg.mel_init)), cfg.mel_init)
    if cfg.init_model:
        logger.info("warm start: %d tensors from %s", load_warm_start(model, cfg.init_model), cfg.init_model)
    held_out_by = {corpus: info["held_out_by"] for corpus, info in split.corpora.items()}
    trainer = SERTrainer(
        model=model,
        args=training_arguments(cfg, output_dir, **argument_overrides),
        train_dataset=train_set,
        eval_dataset=validation_set,
        data_collator=FeatureCollator(feature_extractor),
        processing_class=feature_extractor,  # saved in every checkpoint, so each one is a complete model folder
        compute_metrics=ValidationMetrics(parts["validation"], held_out_by),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience), EpochDraws(train_set), *callbacks],
        class_weights=class_weights(train_records, weights),
        training_config=cfg,
    )
    if cfg.weight_average_decay > 0:
        trainer.add_callback(WeightAverage(cfg.weight_average_decay))
    return trainer


def calibrate(trainer: SERTrainer) -> dict:
    """Fits the temperature on the validation clips of the speaker-held-out corpora (all of them if
    there are none), sets it in the model config, and returns the fit with the ECE before and after."""
    chosen = np.concatenate(list(trainer.compute_metrics.groups.values()))
    output = trainer.predict(trainer.eval_dataset)
    logits, labels = output.predictions[chosen], output.label_ids[chosen]
    temperature = fit_temperature(logits, labels)
    trainer.model.config.calibration_temperature = temperature
    return {"temperature": temperature, "clips": len(labels),
            "ece_before": reliability(softmax(logits), labels)["ece"],
            "ece_after": reliability(softmax(logits, temperature), labels)["ece"]}


def train(cfg: TrainingConfig) -> Path:
    """Trains, saves the best model in `output_dir/best`, and returns that folder."""
    set_seed(cfg.seed)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resume = _last_checkpoint(output_dir / "checkpoints")
    clock = WallClock(resume)
    records, split, parts = prepare_data(cfg)
    summary = summarize_split(records, split)
    logger.info("split: %s", json.dumps({c: {p: v["clips"] for p, v in s["parts"].items()}
                                          for c, s in summary.items()}))
    trainer = build_trainer(cfg, split, parts, output_dir / "checkpoints", callbacks=[clock])
    trainer.train(resume_from_checkpoint=resume)
    processes = _processes_agree(trainer)
    calibration = calibrate(trainer) if cfg.calibrate else None

    best = output_dir / "best"
    if trainer.is_world_process_zero():
        trainer.save_model(str(best))
        save_split(split, best / "split.json")
        elapsed = clock.elapsed
        (best / "training.json").write_text(json.dumps({
            "config": dataclasses.asdict(cfg),
            "corpora": sorted({r.corpus for r in parts["train"]}),
            # What the starting model learned from, while its folder is at hand (the card says it).
            "init_model_corpora": load_training_corpora(cfg.init_model) if cfg.init_model else None,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_validation_selection_macro_recall": trainer.state.best_metric,
            "calibration": calibration,
            "epochs_run": trainer.state.epoch,
            "wall_seconds": round(elapsed, 1),
            "resumed_from": resume,
            **processes,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else
            f"CPU ({torch.get_num_threads()} threads)",
            "log_history": trainer.state.log_history,
        }, indent=2))
        logger.info("trained in %.1f min; best validation score %.3f", elapsed / 60, trainer.state.best_metric)
    # No process returns (and says the model is saved) before rank 0 has written it.
    trainer.accelerator.wait_for_everyone()
    return best


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every tensor of the model's state dict (parameters and buffers such as BatchNorm
    statistics), in key order: equal digests mean bit-identical saved weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _processes_agree(trainer: SERTrainer) -> dict:
    """With several processes (torchrun, accelerate launch), checks that every one ends with the same
    weights, since only rank 0 saves them; returns what training.json records."""
    world_size = trainer.args.world_size
    if world_size <= 1:
        return {"processes": 1}
    digests = [None] * world_size
    torch.distributed.all_gather_object(digests, weights_digest(trainer.model))
    if len(set(digests)) > 1:
        raise RuntimeError(f"the {world_size} training processes ended with different weights: {digests}")
    if trainer.is_world_process_zero():
        logger.info("all %d processes hold the same weights (sha256 %s)", world_size, digests[0])
    return {"processes": world_size, "weights_identical_across_processes": True, "weights_sha256": digests[0]}


def _last_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` folder, so an interrupted run continues where it stopped."""
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def add_parser(commands) -> None:
    """`python -m ser_model train`: one flag per `TrainingConfig` field, from `HfArgumentParser`."""
    commands.add_parser("train", help="train a model on the corpora (speaker-independent split)",
                        description=__doc__.split("\n\n")[0],
                        parents=[HfArgumentParser(TrainingConfig, add_help=False)]).set_defaults(run=_run)


def _run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    best = train(TrainingConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    print(f"best model saved in {best}")
    return 0
