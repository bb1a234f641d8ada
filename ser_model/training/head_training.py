"""Training the Whisper branch's head on cached encoder statistics (`encoder_statistics`).

With the encoder frozen, everything the Whisper branch trains sits after its pooling: the
standardisation of each pooled statistic (the branch's BatchNorm), the fusion head and the voice head.
`PooledHead` holds exactly those modules, under the names the full model gives them, so the weights a
cross-validation fold or the shipped recipe trains here load into `SERForAudioClassification` as they
are (`to_model`). Training follows the full trainer's recipe, read from the same arguments: balanced
draws over corpora and speakers (`sampling_weights`), the label-set loss with its class weights,
label smoothing and out-of-set weight, the voice loss, AdamW with a cosine schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import get_scheduler

from ..configuration import SERConfig
from ..data.corpora import Record
from ..data.train_data import class_weights, label_mask, sampling_weights, voice_label
from ..modeling import SERForAudioClassification, SERFusionHead, SERVoiceHead, voice_loss
from .arguments import SERTrainingArguments
from .trainer import label_set_cross_entropy


@dataclass
class StatisticRows:
    """Cached encoder statistics of some clips: `clean[i]` is a window of clip `clean_owner[i]` (every
    window of every clip), `copies[j][c]` augmented copy j of clip c (one window each)."""

    clean: np.ndarray
    clean_owner: np.ndarray
    copies: list[np.ndarray]

    def of_clips(self, chosen: np.ndarray) -> "StatisticRows":
        """The rows of the clips `chosen` (indices), renumbered 0 .. len(chosen) - 1 in that order."""
        new_index = np.full(len(self.copies[0]) if self.copies else self.clean_owner.max() + 1, -1)
        new_index[chosen] = np.arange(len(chosen))
        kept = new_index[self.clean_owner] >= 0
        order = np.argsort(new_index[self.clean_owner[kept]], kind="stable")
        return StatisticRows(self.clean[kept][order], new_index[self.clean_owner[kept]][order],
                             [copy[chosen] for copy in self.copies])


class PooledHead(nn.Module):
    """The Whisper branch's trained part, fed pooled statistics: standardisation, fusion head, voice head.

    The standardisation is the branch's BatchNorm without affine weights, its statistics set from the
    training rows once (`fit_standardisation`), as a linear probe's StandardScaler is, instead of
    estimated batch by batch: the rows never change, so their exact mean and variance are at hand.
    """

    def __init__(self, config: SERConfig, feature_size: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(feature_size, affine=False)
        self.head = SERFusionHead(config, feature_size)
        self.voice_head = SERVoiceHead(config, feature_size) if config.voice_head else None
        self.config = config
        for module in (self.head, self.voice_head):
            if module is not None:  # the full model's initialisation of its linear layers
                for layer in module.modules():
                    if isinstance(layer, nn.Linear):
                        nn.init.normal_(layer.weight, std=config.initializer_range)
                        nn.init.zeros_(layer.bias)

    def fit_standardisation(self, parts: list[np.ndarray]) -> None:
        """The mean and (unbiased) variance of the rows of every array in `parts`, summed part by part
        in float64 rather than over one concatenated copy of them all."""
        count = sum(len(p) for p in parts)
        mean = sum(p.sum(axis=0, dtype=np.float64) for p in parts) / count
        squares = sum(np.square(p - mean).sum(axis=0) for p in parts)
        self.norm.running_mean.copy_(torch.from_numpy(mean))
        self.norm.running_var.copy_(torch.from_numpy(squares / (count - 1)))

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw emotion logits `(batch, num_labels)` and voice logits (or None) of pooled rows."""
        self.norm.eval()  # fixed standardisation, in training too
        standardised = self.norm(rows)
        logits, _ = self.head(standardised)
        voice = self.voice_head(standardised) if self.voice_head is not None else None
        return logits, voice

    @torch.inference_mode()
    def logits(self, rows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Raw emotion logits of `rows` in inference mode."""
        self.eval()
        return np.concatenate([self(torch.from_numpy(rows[i:i + batch_size]))[0].numpy()
                               for i in range(0, len(rows), batch_size)])

    def model_state(self) -> dict[str, torch.Tensor]:
        """These weights under the names `SERForAudioClassification` gives them."""
        state = {f"ser.whisper_encoder.norm.{k}": v for k, v in self.norm.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        if self.voice_head is not None:
            state.update({f"voice_head.{k}": v for k, v in self.voice_head.state_dict().items()})
        return state


def train_head(rows: StatisticRows, records: list[Record], config: SERConfig, args: SERTrainingArguments,
               seed: int | None = None) -> PooledHead:
    """A `PooledHead` trained on the rows of `records` (clip i's rows are those of owner i).

    Each epoch draws `args.samples_per_epoch` clips by `sampling_weights`; each draw takes one of the
    clip's sources with equal chance: one of its clean windows or one of its augmented copies.
    """
    seed = args.seed if seed is None else seed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    label2id = config.label2id
    weights = sampling_weights(records, args.corpus_balance_exponent)
    head = PooledHead(config, rows.clean.shape[1])
    head.fit_standardisation([rows.clean, *rows.copies])
    targets = torch.tensor([label2id[r.label] for r in records])
    masks = torch.from_numpy(np.stack([label_mask(r.label_set, label2id) for r in records]))
    voices = torch.tensor([voice_label(r.gender) for r in records])
    loss_weights = class_weights(records, weights, label2id)
    windows_of = np.split(np.arange(len(rows.clean_owner)), np.flatnonzero(np.diff(rows.clean_owner)) + 1)
    batch = args.per_device_train_batch_size
    steps_per_epoch = math.ceil(args.samples_per_epoch / batch)
    total = int(args.num_train_epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    # The schedule the Trainer builds from the same arguments (cosine with warmup in the project's recipe).
    schedule = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(total),
                             num_training_steps=total, scheduler_specific_kwargs=args.lr_scheduler_kwargs or {})
    sources = 1 + len(rows.copies)
    head.train()
    for step in range(total):
        clips = rng.choice(len(records), size=batch, p=weights)
        source = rng.integers(0, sources, size=batch)
        chosen = np.stack([rows.clean[rng.choice(windows_of[c])] if s == 0 else rows.copies[s - 1][c]
                           for c, s in zip(clips, source)])
        logits, voice = head(torch.from_numpy(chosen))
        index = torch.from_numpy(clips)
        loss = label_set_cross_entropy(logits, targets[index], masks[index], loss_weights,
                                       args.label_smoothing_factor, args.out_of_set_weight)
        if voice is not None:
            loss = loss + args.voice_loss_weight * voice_loss(voice, voices[index])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(head.parameters(), args.max_grad_norm)
        optimizer.step()
        schedule.step()
    return head.eval()


def to_model(head: PooledHead, encoder: str, config: SERConfig) -> SERForAudioClassification:
    """A whole `SERForAudioClassification` with the Whisper branch only: the pretrained encoder
    `encoder` and the head's weights."""
    from .speech_encoder import load_speech_encoder

    model = SERForAudioClassification(config)
    load_speech_encoder(model, encoder)
    missing, unexpected = model.load_state_dict(head.model_state(), strict=False)
    if unexpected or any(not k.startswith("ser.whisper_encoder.encoder.") for k in missing):
        raise RuntimeError(f"head weights do not fit the model: missing {missing}, unexpected {unexpected}")
    return model.eval()


__all__ = ["PooledHead", "StatisticRows", "to_model", "train_head"]
