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
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import EarlyStoppingCallback, set_seed
from transformers.trainer_utils import IntervalStrategy, get_last_checkpoint

from ..configuration import SERConfig, seconds_to_samples
from ..data.augment import Augmenter
from ..data.corpora import Record, discover
from ..data.splits import apply_split, load_split, make_split, save_split, subsample_parts, summarize_split
from ..data.train_data import (BalancedEpochs, ClipWindows, FeatureCollator, class_weights, codec_versions, load_clips,
                               sampling_weights)
from ..errors import InputError
from ..feature_extractor import SERFeatureExtractor
from ..modeling import SERForAudioClassification
from ..model_info import load_training_corpora
from .arguments import (DataArguments, ModelArguments, SERTrainingArguments, argument_parser, given_flags,
                        parse_arguments, read_recipe, recipe, suppress_defaults)
from .calibration import choose_temperature
from .mel_init import load_mel_init
from .speech_encoder import freeze_speech_encoder, load_speech_encoder
from .trainer import EpochDraws, SERTrainer, ValidationMetrics, WallClock, emotion_and_voice
from .warm_start import freeze_branches, load_warm_start
from .weight_average import WeightAverage

logger = logging.getLogger(__name__)

# What `training.json` keeps of each validation pass in `log_history` (the whole history is in the run
# folder's `trainer_state.json`).
CURVE_KEYS = ("epoch", "eval_macro_recall", "eval_accuracy")


def prepare_data(data_args: DataArguments, seed: int, validation: bool = True):
    """Records, their split (new or loaded) and the records of each part, restricted to the chosen corpora.

    The split is made over every corpus found before any is left out, so a leave-one-corpus-out
    run holds out the same speakers of the other corpora as the full run. Without `validation` (a run
    of fixed length that evaluates nothing) the validation part may be empty.
    """
    if not data_args.data_dir:
        raise InputError("data_dir is required: the folder holding the corpora, e.g. --data_dir ../shared/data")
    records = discover(data_args.data_dir)
    split = load_split(data_args.split) if data_args.split else make_split(records, seed=seed)
    kept = [r for r in records if (data_args.corpora is None or r.corpus in data_args.corpora)
            and r.corpus not in data_args.exclude_corpora]
    found = {r.corpus for r in records}
    unknown = (set(data_args.corpora or []) | set(data_args.exclude_corpora)) - found
    if unknown:
        raise InputError(f"no clips of {sorted(unknown)} in {data_args.data_dir}; found {sorted(found)}")
    parts = apply_split(kept, split)
    if data_args.max_clips_per_part:
        parts = subsample_parts(parts, data_args.max_clips_per_part)
    for name in ("train", "validation") if validation else ("train",):
        if not parts[name]:
            raise InputError(f"the {name} part of the split is empty: add corpora with more speakers")
    return kept, split, parts


def check_labels(records: list[Record], label2id: dict[str, int]) -> None:
    """Refuses clips whose emotion is none of the model's classes (its config's `label2id`)."""
    unknown = sorted({r.label for r in records} - set(label2id))
    if unknown:
        raise InputError(f"the model's labels {sorted(label2id)} lack {unknown}, which the training data has: "
                         f"give the model those classes (id2label in --model_overrides) or leave those corpora out")


def build_model(model_args: ModelArguments, args: SERTrainingArguments) -> SERForAudioClassification:
    """The model of the chosen preset, with random weights or the first weights the arguments name, its
    speech encoder pretrained and frozen but for the top layers `args` trains, and the branches `args`
    freezes frozen."""
    config = model_args.model_config()
    if model_args.init_model:
        model = load_warm_start(model_args.init_model, config)
        logger.info("warm start from %s", model_args.init_model)
        has_encoder = "whisper" in SERConfig.from_pretrained(model_args.init_model).branches
    else:
        model, has_encoder = SERForAudioClassification(config), False
        if model_args.mel_init:
            loaded = load_mel_init(model, model_args.mel_init)
            logger.info("mel branch: %d tensors from %s", len(loaded), model_args.mel_init)
    if "whisper" in config.branches:
        if not has_encoder:
            loaded = load_speech_encoder(model, model_args.speech_encoder)
            logger.info("whisper branch: %d tensors from %s", loaded, model_args.speech_encoder)
        freeze_speech_encoder(model, args.speech_encoder_trainable_layers)
    freeze_branches(model, args.freeze_branches, model_args.init_model)
    return model


def evaluates(args: SERTrainingArguments) -> bool:
    """Whether the run scores validation speakers (to pick its checkpoint, stop early and calibrate); a run of
    fixed length on every speaker does not (`--eval_strategy no`), and then trains without any."""
    return args.eval_strategy != IntervalStrategy.NO


def build_trainer(model_args: ModelArguments, data_args: DataArguments, args: SERTrainingArguments, split, parts,
                  callbacks=(), train_audio: tuple[list, list | None] | None = None) -> SERTrainer:
    """The trainer of `train`, its data decoded and augmented (shared with the training benchmark).
    `train_audio` gives the training clips and their codec copies already decoded (cross-validation
    decodes and codes every clip once for all its folds); by default they are loaded here."""
    model_config = model_args.model_config()
    label2id = model_config.label2id
    check_labels(parts["train"] + parts["validation"], label2id)
    feature_extractor = SERFeatureExtractor.from_config(model_config)
    rate = model_config.sampling_rate
    train_records = parts["train"]
    if not args.label_set_loss:
        # The ablation: every clip scored over all the model's classes, as a plain loss does.
        train_records = [dataclasses.replace(r, label_set=tuple(label2id)) for r in train_records]
    if train_audio is None:
        clips = load_clips(train_records, rate, "loading train", data_args.cache_dir)
        coded = (codec_versions(train_records, clips, rate, args.seed, data_args.cache_dir)
                 if args.codec_probability else None)
    else:
        clips, coded = train_audio
    weights = (sampling_weights(train_records, args.corpus_balance_exponent) if args.balanced_sampling
               else np.full(len(train_records), 1.0 / len(train_records)))
    window = min(model_config.window_samples, seconds_to_samples(data_args.train_crop_seconds, rate))
    train_set = BalancedEpochs(clips, train_records, weights, args.samples_per_epoch,
                               Augmenter(args.augmentation(window, rate), clips),
                               coded, args.codec_probability, args.seed)
    validation_set = metrics = None
    stopping = []
    if evaluates(args):
        # Every window of each validation clip, so that selection and calibration score clips as they are served.
        validation_set = ClipWindows(load_clips(parts["validation"], rate, "loading validation", data_args.cache_dir),
                                     parts["validation"], model_config.window_samples,
                                     model_config.window_hop_samples)
        held_out_by = {corpus: info["held_out_by"] for corpus, info in split.corpora.items()}
        metrics = ValidationMetrics(parts["validation"], held_out_by, model_config.num_labels, validation_set.owner)
        stopping = [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]
    trainer = SERTrainer(
        model=build_model(model_args, args),
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set,
        data_collator=FeatureCollator(feature_extractor, label2id, voice=model_config.voice_head),
        processing_class=feature_extractor,  # saved in every checkpoint, so each one is a complete model folder
        compute_metrics=metrics,
        callbacks=[*stopping, EpochDraws(train_set), *callbacks],
        class_weights=class_weights(train_records, weights, label2id),
    )
    if args.weight_average_decay > 0:
        trainer.add_callback(WeightAverage(args.weight_average_decay))
    return trainer


def calibrate(trainer: SERTrainer) -> dict:
    """Fits the temperature on the validation clips of the speaker-held-out corpora (all of them if
    there are none), each clip's probabilities the mean over its windows as served, and sets it in the
    model config only if it lowers their expected calibration error (`choose_temperature`: the NLL fit
    can raise it on a model that is already close to calibrated); returns the fit, whether it was
    applied, and the ECE before and after."""
    metrics = trainer.compute_metrics
    chosen = np.isin(metrics.owner, np.concatenate(list(metrics.groups.values())))
    output = trainer.predict(trainer.eval_dataset)
    logits, labels = emotion_and_voice(output.predictions)[0][chosen], emotion_and_voice(output.label_ids)[0][chosen]
    # Predictions come divided by the temperature the model has (one from --init_model, say): undone, so
    # that the fit starts from the raw logits it assumes.
    logits = logits * trainer.model.config.calibration_temperature
    calibration = choose_temperature(logits, labels, metrics.owner[chosen])
    trainer.model.config.calibration_temperature = calibration["temperature"]
    return calibration


def train(model_args: ModelArguments, data_args: DataArguments, args: SERTrainingArguments,
          train_audio: tuple[list, list | None] | None = None) -> Path:
    """Trains, saves the best model (without validation: the last) in `output_dir/best`, and returns that
    folder. `train_audio` as in `build_trainer`.

    Checkpoints, `trainer_state.json` (the whole log) and `train_results.json` go to `output_dir`
    itself; running the same command again continues from its last checkpoint."""
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resume = get_last_checkpoint(output_dir)
    clock = WallClock(resume)
    if args.calibrate and not evaluates(args):
        raise InputError("calibrate needs validation speakers to fit the temperature on: with --eval_strategy no, "
                         "pass --calibrate false")
    records, split, parts = prepare_data(data_args, args.seed, validation=evaluates(args))
    summary = summarize_split(records, split)
    logger.info("split: %s", json.dumps({c: {p: v["clips"] for p, v in s["parts"].items()}
                                          for c, s in summary.items()}))
    trainer = build_trainer(model_args, data_args, args, split, parts, callbacks=[clock], train_audio=train_audio)
    result = trainer.train(resume_from_checkpoint=resume)
    processes = _processes_agree(trainer)
    calibration = calibrate(trainer) if args.calibrate else None
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    best = output_dir / "best"
    if trainer.is_world_process_zero():
        trainer.save_model(str(best))
        save_split(split, best / "split.json")
        record = training_record(trainer, (model_args, data_args, args), parts, calibration, resume, clock.elapsed)
        (best / "training.json").write_text(json.dumps({**record, **processes}, indent=2))
        logger.info("trained in %.1f min; best validation score %s", clock.elapsed / 60, trainer.state.best_metric)
    # No process returns (and says the model is saved) before rank 0 has written it.
    trainer.accelerator.wait_for_everyone()
    return best


def training_record(trainer: SERTrainer, arguments, parts, calibration: dict | None, resume: str | None,
                    elapsed: float) -> dict:
    """What `training.json` says of the run: its arguments (a recipe), data, outcome and machine."""
    model_args = arguments[0]
    state = trainer.state
    return {
        "arguments": recipe(*arguments),
        "corpora": sorted({r.corpus for r in parts["train"]}),
        # What the starting model learned from, while its folder is at hand (the card says it).
        "init_model_corpora": (load_training_corpora(model_args.init_model)
                               if model_args.init_model else None),
        "best_validation_selection_macro_recall": state.best_metric,
        "calibration": calibration,
        "epochs_run": state.epoch,
        "wall_seconds": round(elapsed, 1),
        "resumed_from": resume,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else
        f"CPU ({torch.get_num_threads()} threads)",
        "validation_curve": [{k: entry[k] for k in CURVE_KEYS if k in entry}
                             for entry in state.log_history if "eval_macro_recall" in entry],
    }


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
    digests = gather_object([weights_digest(trainer.model)])
    if len(set(digests)) > 1:
        raise RuntimeError(f"the {world_size} training processes ended with different weights: {digests}")
    if trainer.is_world_process_zero():
        logger.info("all %d processes hold the same weights (sha256 %s)", world_size, digests[0])
    return {"processes": world_size, "weights_identical_across_processes": True, "weights_sha256": digests[0]}


def add_parser(commands, default_data_dir: str | None = None) -> None:
    """`python -m ser_model train [RECIPE.json] [--flags]`: a flag per argument (`HfArgumentParser`), a JSON
    recipe of the same names (e.g. the `arguments` of a `training.json`), or both, the flags winning.
    `default_data_dir` is the corpora folder when neither names one (the CLI resolves where it is)."""
    parser = commands.add_parser("train", help="train a model on the corpora (speaker-independent split)",
                                 description=__doc__.split("\n\n")[0], parents=[argument_parser(add_help=False)])
    parser.add_argument("recipe", nargs="?", default=None,
                        help="a JSON file of argument values by name; flags given too override its values")
    suppress_defaults(parser)
    parser.set_defaults(run=_run, default_data_dir=default_data_dir)


def _run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    located = {"data_dir": args.default_data_dir} if args.default_data_dir else {}
    values = {**located, **(read_recipe(args.recipe) if args.recipe else {}), **given_flags(args)}
    best = train(*parse_arguments(values))
    print(f"best model saved in {best}")
    return 0
