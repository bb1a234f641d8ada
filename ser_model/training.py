"""Training with `transformers.Trainer`, speaker-independent from the first step.

`python -m ser_model train` reads every corpus found under the data folder, splits it by speaker
(`ser_model.splits`), trains the model from scratch with waveform and spectrogram augmentation,
stops early on validation macro recall, and saves the best model, its feature extractor, the
split and the training config in the output folder. Because it is plain `Trainer`, the same
command runs on several GPUs or machines under `torchrun` or `accelerate launch`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from .audio_io import load_audio
from .configuration import PRESETS, SERConfig
from .corpora import Record, discover
from .feature_extractor import SERFeatureExtractor
from .metrics import classification_metrics
from .modeling import SERForAudioClassification
from .splits import apply_split, load_split, make_split, save_split, subsample_parts, summarize_split
from .weight_average import WeightAverage

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"


@dataclass
class TrainingConfig:
    """Every training hyperparameter; the model's own live in `SERConfig` (chosen by `preset`).

    Args:
        preset (`str`, *optional*, defaults to `"cpu-small"`): model size from `ser_model.configuration.PRESETS`.
        branches (`list[str]`, *optional*): override the model's branches (`["mel"]`, `["mfcc"]`) for ablations.
        model_overrides (`dict`, *optional*): any other `SERConfig` field over the preset (JSON on the command line).
        data_dir (`str`): folder holding the corpora (`ravdess/`, `tess/`, `crema-d/`, `savee/`, `manifest.csv`).
        output_dir (`str`): where checkpoints, the best model and the split go.
        split (`str`, *optional*): a saved split JSON to reuse instead of making one.
        seed (`int`, *optional*, defaults to 0): seeds the split, the initialisation and the augmentation.
        epochs (`int`, *optional*, defaults to 40): upper bound; early stopping usually ends sooner.
        batch_size (`int`, *optional*, defaults to 32): clips per step (per device).
        learning_rate (`float`, *optional*, defaults to 2e-3): AdamW peak rate, cosine decay after warm-up.
        weight_decay (`float`, *optional*, defaults to 0.05): AdamW weight decay.
        warmup_ratio (`float`, *optional*, defaults to 0.05): share of steps spent warming up.
        label_smoothing (`float`, *optional*, defaults to 0.1): acted emotions overlap; softer targets generalise better.
        patience (`int`, *optional*, defaults to 8): epochs without a better validation macro recall before stopping.
        noise_probability (`float`, *optional*, defaults to 0.5): chance of adding white noise to a clip.
        noise_snr_db (`list[float]`, *optional*, defaults to `[10, 40]`): range of its signal-to-noise ratio.
        speed_probability (`float`, *optional*, defaults to 0.5): chance of a speed change (pitch and tempo).
        speed_range (`list[float]`, *optional*, defaults to `[0.9, 1.1]`): range of the speed factor.
        time_masks (`int`, *optional*, defaults to 2): SpecAugment time masks per clip.
        time_mask_frames (`int`, *optional*, defaults to 20): longest time mask, in frames.
        freq_masks (`int`, *optional*, defaults to 2): SpecAugment frequency masks per clip (mel and MFCC each).
        freq_mask_bands (`int`, *optional*, defaults to 8): widest frequency mask, in bands or coefficients.
        mixup_probability (`float`, *optional*, defaults to 0.0): chance that a batch is mixed with a shuffled
            copy of itself (mixup, Zhang et al. 2018), features and targets alike.
        mixup_alpha (`float`, *optional*, defaults to 0.4): Beta(alpha, alpha) draws the mixing weight.
        weight_average_decay (`float`, *optional*, defaults to 0.0): decay of the moving average of the
            weights that is evaluated, checkpointed and saved instead of the raw weights
            (`ser_model.weight_average`); 0 turns it off.
        max_steps (`int`, *optional*, defaults to -1): stop after this many steps (smoke tests); -1 for no limit.
        logging_steps (`int`, *optional*, defaults to 10): steps between loss reports.
        max_clips_per_part (`int`, *optional*): use only this many clips of each part (smoke tests).
        dataloader_workers (`int`, *optional*, defaults to 0): worker processes that augment clips.
    """

    preset: str = "cpu-small"
    branches: list[str] | None = None
    model_overrides: dict = field(default_factory=dict)
    data_dir: str = str(DEFAULT_DATA_DIR)
    output_dir: str = "runs/cpu-small"
    split: str | None = None
    seed: int = 0
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    label_smoothing: float = 0.1
    patience: int = 8
    noise_probability: float = 0.5
    noise_snr_db: list[float] = field(default_factory=lambda: [10.0, 40.0])
    speed_probability: float = 0.5
    speed_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    time_masks: int = 2
    time_mask_frames: int = 20
    freq_masks: int = 2
    freq_mask_bands: int = 8
    mixup_probability: float = 0.0
    mixup_alpha: float = 0.4
    weight_average_decay: float = 0.0
    max_steps: int = -1
    logging_steps: int = 10
    max_clips_per_part: int | None = None
    dataloader_workers: int = 0

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for name in ("noise_probability", "speed_probability", "label_smoothing", "mixup_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise ValueError(f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}")
        if self.batch_size <= 0 or self.epochs <= 0:
            raise ValueError(f"batch_size and epochs must be positive, got {self.batch_size} and {self.epochs}")

    def model_config(self) -> SERConfig:
        overrides = {**self.model_overrides, **({"branches": self.branches} if self.branches else {})}
        return SERConfig.from_preset(self.preset, **overrides)


class ClipDataset(Dataset):
    """Waveforms held in memory with their class ids; augments each clip when `augment` is set.

    Augmentation works on the waveform (the feature extractor's normalisation makes gain changes
    pointless): a random crop of one window from longer clips, a speed change (pitch and tempo
    together, as in Ko et al. 2015) and white noise at a random SNR.
    """

    def __init__(self, waveforms: list[np.ndarray], labels: list[int], model_config: SERConfig,
                 training: TrainingConfig | None = None):
        self.waveforms = waveforms
        self.labels = labels
        self.window = model_config.window_samples
        self.sampling_rate = model_config.sampling_rate
        self.training = training
        self.rng = np.random.default_rng(training.seed if training else 0)

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, index: int) -> dict:
        waveform = self.waveforms[index]
        if self.training is not None:
            waveform = self._augment(waveform)
        return {"waveform": waveform, "labels": self.labels[index]}

    def _augment(self, waveform: np.ndarray) -> np.ndarray:
        rng, cfg = self.rng, self.training
        if rng.random() < cfg.speed_probability:
            speed = rng.uniform(*cfg.speed_range)
            # Read the clip as if recorded at speed * rate and resample to the rate: faster and higher.
            waveform = soxr.resample(waveform, self.sampling_rate * speed, self.sampling_rate, quality="QQ")
        if len(waveform) > self.window:
            start = rng.integers(0, len(waveform) - self.window + 1)
            waveform = waveform[start:start + self.window]
        if rng.random() < cfg.noise_probability:
            snr_db = rng.uniform(*cfg.noise_snr_db)
            power = float(np.mean(waveform ** 2)) + 1e-12
            noise = rng.standard_normal(len(waveform)) * np.sqrt(power / 10 ** (snr_db / 10))
            waveform = waveform + noise.astype(np.float32)
        return waveform.astype(np.float32, copy=False)


class FeatureCollator:
    """Turns a list of clips into a padded feature batch; applies SpecAugment when given a config."""

    def __init__(self, feature_extractor: SERFeatureExtractor, training: TrainingConfig | None = None):
        self.feature_extractor = feature_extractor
        self.training = training
        self.generator = torch.Generator().manual_seed(training.seed if training else 0)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.feature_extractor([item["waveform"] for item in items],
                                       sampling_rate=self.feature_extractor.sampling_rate, return_tensors="pt")
        batch = dict(batch)
        if self.training is not None:
            self._spec_augment(batch)
        batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=torch.long)
        return batch

    def _spec_augment(self, batch: dict[str, torch.Tensor]) -> None:
        """SpecAugment (Park et al. 2019) without time warping: zeroes random time spans (the same in
        both inputs, so the branches see the same gap) and random mel bands / MFCC coefficients."""
        cfg, g = self.training, self.generator
        lengths = batch["attention_mask"].sum(dim=1)
        for i, length in enumerate(lengths.tolist()):
            for _ in range(cfg.time_masks):
                width = int(torch.randint(0, cfg.time_mask_frames + 1, (1,), generator=g))
                start = int(torch.randint(0, max(1, length - width), (1,), generator=g))
                batch["input_values"][i, :, start:start + width] = 0.0
                batch["input_mfcc"][i, :, start:start + width] = 0.0
            for name in ("input_values", "input_mfcc"):
                bands = batch[name].shape[1]
                for _ in range(cfg.freq_masks):
                    width = int(torch.randint(0, min(cfg.freq_mask_bands, bands // 4) + 1, (1,), generator=g))
                    start = int(torch.randint(0, bands - width + 1, (1,), generator=g))
                    batch[name][i, start:start + width, :] = 0.0


class WeightedLossTrainer(Trainer):
    """Trainer with class-weighted, label-smoothed cross-entropy (corpora are not balanced across
    emotions: RAVDESS has 1.5x neutral once calm is folded in, CREMA-D has no surprise), mixup, and
    (with `weight_average_decay` set) a moving average of the weights that stands in for them
    whenever they are evaluated or checkpointed.

    Checkpoints hold the averaged weights, so a resumed run continues training from the average.
    """

    def __init__(self, *args, class_weights: torch.Tensor, training_config: TrainingConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights
        self.training_config = training_config
        self.mixup_rng = np.random.default_rng(training_config.seed)
        self.weight_average = None
        if training_config.weight_average_decay > 0:
            self.weight_average = WeightAverage(training_config.weight_average_decay)
            self.add_callback(self.weight_average)

    def _averaged(self):
        return self.weight_average.swapped_in(self.model) if self.weight_average else contextlib.nullcontext()

    def evaluate(self, *args, **kwargs):
        with self._averaged():
            return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # Trainer's own (private, transformers 5.23) hook that writes every checkpoint during
        # training, the best one that `load_best_model_at_end` reloads included.
        with self._averaged():
            super()._save_checkpoint(model, trial)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        cfg = self.training_config
        if model.training and self.mixup_rng.random() < cfg.mixup_probability:
            return self._mixup_loss(model, inputs, labels, return_outputs)
        outputs = model(**inputs)
        loss = self._cross_entropy(outputs.logits, labels, model.training)
        return (loss, outputs) if return_outputs else loss

    def _cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor, training: bool) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(
            logits, labels, weight=self.class_weights.to(logits.device),
            label_smoothing=self.training_config.label_smoothing if training else 0.0,
        )

    def _mixup_loss(self, model, inputs: dict, labels: torch.Tensor, return_outputs: bool):
        """Mixes each clip's features with another clip's; the loss mixes the two targets' losses with
        the same weight. The frame mask is the union, so the longer clip's frames all count."""
        weight = float(self.mixup_rng.beta(self.training_config.mixup_alpha, self.training_config.mixup_alpha))
        order = torch.randperm(labels.shape[0], device=labels.device)
        mixed = dict(inputs)
        for name in ("input_values", "input_mfcc"):
            mixed[name] = weight * inputs[name] + (1.0 - weight) * inputs[name][order]
        if "attention_mask" in inputs:
            mixed["attention_mask"] = torch.maximum(inputs["attention_mask"], inputs["attention_mask"][order])
        outputs = model(**mixed)
        loss = (weight * self._cross_entropy(outputs.logits, labels, True)
                + (1.0 - weight) * self._cross_entropy(outputs.logits, labels[order], True))
        return (loss, outputs) if return_outputs else loss


class WallClockCallback(TrainerCallback):
    """Keeps the run's wall time across resumes: each checkpoint stores the time spent so far, and a
    resumed run starts counting from it, so training.json reports the whole run."""

    FILE = "wall_seconds.json"

    def __init__(self, resume_from: str | None):
        previous = Path(resume_from) / self.FILE if resume_from else None
        spent = json.loads(previous.read_text())["wall_seconds"] if previous and previous.is_file() else 0.0
        self.started = time.time() - spent

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            (checkpoint / self.FILE).write_text(json.dumps({"wall_seconds": round(self.elapsed, 1)}))


class ValidationMetrics:
    """Validation scores for `Trainer`, plus the one that picks the checkpoint and stops training.

    The selection score is the macro recall over the clips of speakers held out by *speaker* only:
    an utterance-held-out corpus (single-speaker TESS) is near 100% from the first epochs, so
    pooling it in flattens the differences between checkpoints that matter for new speakers.
    Without any speaker-held-out validation clips it falls back to all of them.
    """

    SELECTION = "selection_macro_recall"

    def __init__(self, records: list[Record], split, num_labels: int):
        by_speaker = [i for i, r in enumerate(records)
                      if split.corpora.get(r.corpus, {}).get("held_out_by") == "speaker"]
        self.selection = np.array(by_speaker or range(len(records)))
        self.num_labels = num_labels

    def __call__(self, prediction) -> dict[str, float]:
        y_true, y_pred = prediction.label_ids, prediction.predictions.argmax(-1)
        metrics = classification_metrics(y_true, y_pred, self.num_labels)
        selected = classification_metrics(y_true[self.selection], y_pred[self.selection], self.num_labels)
        metrics[self.SELECTION] = selected["macro_recall"]
        return metrics


def load_clips(records: list[Record], sampling_rate: int, desc: str) -> list[np.ndarray]:
    """Decodes every clip once (16 kHz mono float32) with a progress bar."""
    return [load_audio(r.path, sampling_rate=sampling_rate, min_seconds=0.0) for r in tqdm(records, desc=desc,
                                                                                            unit="clip")]


def class_weights(labels: list[int], num_labels: int) -> torch.Tensor:
    """Inverse class frequency, scaled to mean 1 over the classes present; absent classes get 0."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)
    return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


def prepare_data(cfg: TrainingConfig):
    """Records, their split (new or loaded) and the records of each part."""
    records = discover(cfg.data_dir)
    split = load_split(cfg.split) if cfg.split else make_split(records, seed=cfg.seed)
    parts = apply_split(records, split)
    if cfg.max_clips_per_part:
        parts = subsample_parts(parts, cfg.max_clips_per_part)
    return records, split, parts


def training_arguments(cfg: TrainingConfig, output_dir: str | os.PathLike, **overrides) -> TrainingArguments:
    """The `TrainingArguments` of `train` (and of the training benchmark, with `overrides`)."""
    # Under torchrun on a machine without a GPU, accelerate only sets up data parallelism when told to
    # use the CPU (otherwise every process would train alone); gloo is PyTorch's CPU backend.
    cpu_processes = int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.cuda.is_available()
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
        eval_strategy="epoch" if cfg.max_steps < 0 else "steps",
        save_strategy="epoch" if cfg.max_steps < 0 else "steps",
        eval_steps=None if cfg.max_steps < 0 else cfg.max_steps,
        save_steps=None if cfg.max_steps < 0 else cfg.max_steps,
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


def train(cfg: TrainingConfig) -> Path:
    """Trains, saves the best model in `output_dir/best`, and returns that folder."""
    set_seed(cfg.seed)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # An interrupted run continues from its newest checkpoint when the same command is run again.
    resume = _last_checkpoint(output_dir / "checkpoints")
    clock = WallClockCallback(resume)
    model_config = cfg.model_config()
    feature_extractor = SERFeatureExtractor.from_config(model_config)

    records, split, parts = prepare_data(cfg)
    summary = summarize_split(records, split)
    logger.info("split: %s", json.dumps({c: {p: v["clips"] for p, v in s["parts"].items()}
                                          for c, s in summary.items()}))
    label2id = model_config.label2id
    datasets = {}
    for name in ("train", "validation"):
        if not parts.get(name):
            raise ValueError(f"the {name} part of the split is empty: add corpora with more speakers")
        waveforms = load_clips(parts[name], model_config.sampling_rate, desc=f"loading {name}")
        labels = [label2id[r.label] for r in parts[name]]
        datasets[name] = ClipDataset(waveforms, labels, model_config, cfg if name == "train" else None)

    args = training_arguments(cfg, output_dir / "checkpoints")
    trainer = WeightedLossTrainer(
        model=SERForAudioClassification(model_config),
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=FeatureCollator(feature_extractor, cfg),
        compute_metrics=ValidationMetrics(parts["validation"], split, model_config.num_labels),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience), clock],
        class_weights=class_weights(datasets["train"].labels, model_config.num_labels),
        training_config=cfg,
    )
    # The validation set must not be augmented: it picks the checkpoint.
    trainer.get_eval_dataloader = _unaugmented_eval_loader(trainer, feature_extractor)
    trainer.train(resume_from_checkpoint=resume)
    processes = _processes_agree(trainer)

    best = output_dir / "best"
    if trainer.is_world_process_zero():
        trainer.save_model(str(best))
        feature_extractor.save_pretrained(best)
        save_split(split, best / "split.json")
        elapsed = clock.elapsed
        (best / "training.json").write_text(json.dumps({
            "config": dataclasses.asdict(cfg),
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_validation_selection_macro_recall": trainer.state.best_metric,
            "epochs_run": trainer.state.epoch,
            "wall_seconds": round(elapsed, 1),
            "resumed_from": resume,
            **processes,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else
            f"CPU ({torch.get_num_threads()} threads)",
            "log_history": trainer.state.log_history,
        }, indent=2))
        logger.info("trained in %.1f min; best validation macro recall %.3f", elapsed / 60, trainer.state.best_metric)
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


def _processes_agree(trainer: Trainer) -> dict:
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


def _unaugmented_eval_loader(trainer: Trainer, feature_extractor: SERFeatureExtractor):
    plain = FeatureCollator(feature_extractor)
    original = trainer.get_eval_dataloader

    def get_eval_dataloader(eval_dataset=None):
        collator, trainer.data_collator = trainer.data_collator, plain
        try:
            return original(eval_dataset)
        finally:
            trainer.data_collator = collator

    return get_eval_dataloader


def _last_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` folder, so an interrupted run continues where it stopped."""
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def add_parser(commands) -> None:
    """`python -m ser_model train`: one flag per `TrainingConfig` field."""
    parser = commands.add_parser("train", help="train a model on the corpora (speaker-independent split)",
                                 description=TrainingConfig.__doc__.split("\n\n")[0])
    for f in dataclasses.fields(TrainingConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        if f.name == "model_overrides":
            parser.add_argument(flag, type=json.loads, default=default, metavar="JSON",
                                help='e.g. \'{"growth_rate": 24}\'')
        elif isinstance(default, list) or f.name == "branches":
            parser.add_argument(flag, nargs="+", default=default, type=float if f.name != "branches" else str)
        elif isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=default)
        else:
            kind = {"max_clips_per_part": int, "split": str}.get(f.name, type(default) if default is not None else str)
            parser.add_argument(flag, type=kind, default=default)
    parser.set_defaults(run=_run)


def _run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    best = train(TrainingConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    print(f"best model saved in {best}")
    return 0
