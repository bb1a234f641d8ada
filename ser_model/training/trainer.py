"""The training loop: `transformers.Trainer` with the loss, augmentation and callbacks of this task.

- The loss scores each clip mainly over its corpus' label set (`label_set_cross_entropy`): a plain
  loss over every class would teach the model "never disgust" on every clip of a corpus without
  disgust. The classes outside the set keep a small weight (`out_of_set_weight`), so that a corpus
  still teaches a little that its clips are not of the classes it lacks (docs/experiments.md).
- SpecAugment works on the feature batch, every branch's input alike, so it sits in `compute_loss`, applied
  only while the model is in training mode; validation batches are never augmented.
- Callbacks (public hooks only): new balanced draws each epoch, the run's wall clock across
  resumes, and the moving average of the weights (`ser_model.training.weight_average`).
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from ..configuration import WHISPER_POSITIONS_PER_SECOND
from ..data.corpora import Record
from ..metrics import classification_metrics
from ..modeling import voice_loss
from .arguments import SELECTION_METRIC
from .calibration import clip_probabilities
from .speech_encoder import is_speech_encoder_parameter

if TYPE_CHECKING:
    from .arguments import SERTrainingArguments

# Whisper's log-mel has a 10 ms hop (160 samples at 16 kHz), which its stride-2 convolution halves into the
# encoder's 50 positions a second.
WHISPER_FRAMES_PER_SECOND = 2 * WHISPER_POSITIONS_PER_SECOND


def label_set_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor | None = None,
                            weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                            out_of_set_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy over each clip's own label set, class-weighted and label-smoothed.

    Logits outside a clip's set are removed before the softmax, so they neither change the
    probabilities of the classes inside it nor receive any gradient from that clip. Smoothing
    spreads `label_smoothing` over the classes of the set only. The result is the mean over the
    batch weighted by each clip's class weight (with smoothing, torch's `cross_entropy` weighs each
    smoothed class by its own weight instead; here the clip's class decides, as without smoothing).

    Args:
        logits (`torch.Tensor` of shape `(batch, num_labels)`): model outputs.
        labels (`torch.LongTensor` of shape `(batch,)`): class ids, each inside its row's set.
        label_mask (`torch.BoolTensor` of shape `(batch, num_labels)`, *optional*): true for the
            classes the clip's corpus can contain; all classes when omitted.
        weight (`torch.Tensor` of shape `(num_labels,)`, *optional*): per-class weights.
        label_smoothing (`float`, *optional*, defaults to 0.0): in [0, 1).
        out_of_set_weight (`float`, *optional*, defaults to 0.0): how much the classes outside the set
            still count in the softmax's denominator, in [0, 1]: 0 removes them (no gradient), 1 is the
            plain cross-entropy. In between they are pushed down, but that much more gently, so a corpus
            without disgust still teaches a little that its clips are not disgust; without any push the
            model calls clips of such corpora a class they do not have (docs/experiments.md).
    """
    if label_mask is None:
        label_mask = torch.ones_like(logits, dtype=torch.bool)
    label_mask = label_mask.to(logits.device)
    # Adding log(w) to a logit weighs its exp() by w in the softmax; log(0) = -inf removes it.
    offset = math.log(out_of_set_weight) if out_of_set_weight > 0 else float("-inf")
    log_probs = torch.log_softmax(torch.where(label_mask, logits, logits + offset), dim=-1)
    log_probs = log_probs.masked_fill(~label_mask, 0.0)  # -inf * 0 would be NaN below
    targets = torch.nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    if label_smoothing > 0:
        spread = label_mask.to(logits.dtype) / label_mask.sum(dim=-1, keepdim=True)
        targets = (1.0 - label_smoothing) * targets + label_smoothing * spread
    losses = -(targets * log_probs).sum(dim=-1)
    sample_weight = weight.to(logits.device)[labels] if weight is not None else torch.ones_like(losses)
    return (losses * sample_weight).sum() / sample_weight.sum()


def spec_augment(batch: dict[str, torch.Tensor], time_masks: int, time_mask_frames: int, freq_masks: int,
                 freq_mask_bands: int, generator: torch.Generator, whisper_frames_per_frame: float = 1.0) -> None:
    """SpecAugment (Park et al. 2019) without time warping, in place, on every branch's input alike.

    Each clip gets `time_masks` random spans of its real frames, at most `time_mask_frames` long, zeroed in
    every input at once, so that every branch loses the same stretch of audio; `whisper_frames_per_frame` maps
    the mel frames onto Whisper's log-mel (`input_features`, when the batch has it). Then `freq_masks` random
    bands of each input's own frequency axis (mel bands, MFCCs, Whisper's mel bins), each at most a quarter of
    them. Masked values are 0: the mean of the normalised mel and MFCC inputs, and the value
    `WhisperModel._mask_input_features` masks Whisper's log-mel with.
    """
    lengths = batch["attention_mask"].sum(dim=1)
    names = [name for name in ("input_values", "input_mfcc", "input_features") if name in batch]
    for i, length in enumerate(lengths.tolist()):
        for _ in range(time_masks):
            width = int(torch.randint(0, time_mask_frames + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, length - width), (1,), generator=generator))
            for name in names:
                ratio = whisper_frames_per_frame if name == "input_features" else 1.0
                batch[name][i, :, round(start * ratio):round((start + width) * ratio)] = 0.0
        for name in names:
            bands = batch[name].shape[1]
            for _ in range(freq_masks):
                width = int(torch.randint(0, min(freq_mask_bands, bands // 4) + 1, (1,), generator=generator))
                start = int(torch.randint(0, bands - width + 1, (1,), generator=generator))
                batch[name][i, start:start + width, :] = 0.0


class SERTrainer(Trainer):
    """Trainer whose loss is `label_set_cross_entropy`, with SpecAugment on training batches.

    Args:
        model (`SERForAudioClassification`): the model to train.
        args (`SERTrainingArguments`): `TrainingArguments` with the label smoothing, out-of-set weight and
            SpecAugment settings read here.
        class_weights (`torch.Tensor` of shape `(num_labels,)`): from `train_data.class_weights`.
        **kwargs: as `transformers.Trainer`.
    """

    args: SERTrainingArguments

    def __init__(self, model, args: SERTrainingArguments, *, class_weights: torch.Tensor, **kwargs):
        if args.label_names is None:
            # What the Trainer gathers as labels at evaluation; it would otherwise take every forward argument
            # named "*label*", and wait for voice labels that a model without a voice head is never given.
            args.label_names = ["labels", "voice_labels"] if model.config.voice_head else ["labels"]
        super().__init__(model=model, args=args, **kwargs)
        self.class_weights = class_weights
        # Trainer puts the whole model in training mode before every step; these go back to inference mode.
        self.frozen_branches = [model.ser.branch_encoder(branch) for branch in args.freeze_branches]
        self.spec_generator = torch.Generator().manual_seed(args.seed)
        # SpecAugment's time masks cover the same seconds of Whisper's log-mel as of the mel and MFCC frames.
        config = model.config
        self.whisper_frames_per_frame = config.hop_length / config.sampling_rate * WHISPER_FRAMES_PER_SECOND

    def create_optimizer(self, model=None):
        """AdamW as `Trainer` builds it, with the pretrained speech encoder's trained parameters in groups of
        their own at `speech_encoder_learning_rate` (the schedule scales every group alike)."""
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh:
            encoder = {id(p) for n, p in self.model.named_parameters() if is_speech_encoder_parameter(n)}
            for group in list(optimizer.param_groups):
                moved = [p for p in group["params"] if id(p) in encoder]
                if moved:
                    group["params"] = [p for p in group["params"] if id(p) not in encoder]
                    optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"},
                                               "params": moved, "lr": self.args.speech_encoder_learning_rate})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, mask = inputs.pop("labels"), inputs.pop("label_mask", None)
        voice_labels = inputs.pop("voice_labels", None)
        args = self.args
        if not model.training:
            outputs = model(**inputs)
            loss = label_set_cross_entropy(outputs.logits, labels, mask, self.class_weights,
                                           out_of_set_weight=args.out_of_set_weight)
            loss = loss + self._voice_loss(outputs, voice_labels)
            return (loss, outputs) if return_outputs else loss
        for branch in self.frozen_branches:
            branch.eval()
        spec_augment(inputs, args.time_masks, args.time_mask_frames, args.freq_masks, args.freq_mask_bands,
                     self.spec_generator, self.whisper_frames_per_frame)
        outputs = model(**inputs)
        loss = self._training_loss(outputs.logits, labels, mask) + self._voice_loss(outputs, voice_labels)
        return (loss, outputs) if return_outputs else loss

    def _training_loss(self, logits, labels, mask):
        return label_set_cross_entropy(logits, labels, mask, self.class_weights, self.args.label_smoothing_factor,
                                       self.args.out_of_set_weight)

    def _voice_loss(self, outputs, voice_labels) -> torch.Tensor | float:
        """The voice head's share of the loss; nothing for a model without one."""
        if voice_labels is None or getattr(outputs, "voice_logits", None) is None:
            return 0.0
        return self.args.voice_loss_weight * voice_loss(outputs.voice_logits, voice_labels)


class EpochDraws(TrainerCallback):
    """Gives the balanced training set (`train_data.BalancedEpochs`) new draws at each epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


class WallClock(TrainerCallback):
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

    The selection score is the mean, over the corpora held out by *speaker*, of each corpus' macro
    recall over the classes it contains: every corpus counts the same however many validation clips
    it has, and an utterance-held-out corpus (single-speaker TESS), near 100% from the first epochs,
    does not flatten the differences that matter for new speakers. Without any speaker-held-out
    validation clips it falls back to all of them. Each speaker-held-out corpus' macro recall is
    reported too (`<corpus>_macro_recall`).

    Clips are scored as they are served: with `owner`, the predictions are those of every window of the clips
    (`data.train_data.ClipWindows`), and a clip's are the mean of its windows' probabilities
    (`calibration.clip_probabilities`), the voice's too.

    Args:
        records (`list[Record]`): the validation clips, in the order of the predictions.
        held_out_by (`dict[str, str]`): how the split held out each corpus ("speaker", "utterance", ...).
        num_labels (`int`): the model's number of classes (`config.num_labels`); the class ids are those
            of its `label2id`.
        owner (`np.ndarray` of shape `(windows,)`, *optional*): the clip (index into `records`) of each
            prediction; one prediction per clip when omitted.
    """

    SELECTION = SELECTION_METRIC

    def __init__(self, records: list[Record], held_out_by: dict[str, str], num_labels: int,
                 owner: np.ndarray | None = None):
        self.num_labels = num_labels
        self.owner = np.arange(len(records)) if owner is None else np.asarray(owner)
        groups = defaultdict(list)
        for i, record in enumerate(records):
            if held_out_by.get(record.corpus) == "speaker":
                groups[record.corpus].append(i)
        self.groups = {c: np.array(v) for c, v in groups.items()} or {"all": np.arange(len(records))}

    def __call__(self, prediction) -> dict[str, float]:
        (logits, voice_logits), (y_true, voice_true) = emotion_and_voice(prediction.predictions), \
            emotion_and_voice(prediction.label_ids)
        y_pred = clip_probabilities(logits, self.owner).argmax(-1)
        y_true = self.clip_labels(y_true)
        metrics = classification_metrics(y_true, y_pred, self.num_labels)
        per_corpus = {c: classification_metrics(y_true[i], y_pred[i], self.num_labels)["macro_recall"]
                      for c, i in self.groups.items()}
        metrics.update({f"{c}_macro_recall": v for c, v in per_corpus.items()})
        metrics[self.SELECTION] = float(np.mean(list(per_corpus.values())))
        if voice_logits is not None and voice_true is not None and (voice_true >= 0).any():
            voice_true = self.clip_labels(voice_true)
            known = voice_true >= 0
            voice_pred = clip_probabilities(voice_logits, self.owner).argmax(-1)
            metrics["voice_accuracy"] = float((voice_pred[known] == voice_true[known]).mean())
        return metrics

    def clip_labels(self, window_labels: np.ndarray) -> np.ndarray:
        """Each clip's label from those of its windows (all the same)."""
        labels = np.empty(self.owner.max() + 1, dtype=window_labels.dtype)
        labels[self.owner] = window_labels
        return labels


def emotion_and_voice(values) -> tuple[np.ndarray, np.ndarray | None]:
    """The emotion part and the voice part (or None) of what `Trainer` gathers: one array for a model
    without a voice head, a tuple `(emotion, voice)` with one."""
    if isinstance(values, (tuple, list)):
        return values[0], (values[1] if len(values) > 1 else None)
    return values, None


__all__ = ["EpochDraws", "SERTrainer", "ValidationMetrics", "WallClock", "emotion_and_voice", "label_set_cross_entropy",
           "spec_augment"]
