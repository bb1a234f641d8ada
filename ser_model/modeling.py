"""DenseNet (log-mel) + CNN (MFCC) + optional Whisper encoder fusion model for speech emotion recognition.

One of the three Hub files: it imports only torch, timm, transformers and its siblings.
"""

from dataclasses import dataclass

import torch
from timm.models.densenet import DenseBlock, DenseNet, DenseTransition
from torch import nn
from transformers import PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import ModelOutput, SequenceClassifierOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import can_return_tuple

from .configuration import VOICE_LABELS, WHISPER_POSITIONS_PER_SECOND, SERConfig


def masked_mean_std(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Statistics pooling over real frames only.

    Args:
        hidden (`torch.Tensor` of shape `(batch, channels, frames)`): frame features.
        mask (`torch.Tensor` of shape `(batch, frames)`): 1 on real frames, 0 on padding.

    Returns:
        `torch.Tensor` of shape `(batch, 2 * channels)`: per-channel mean and standard deviation.
    """
    mask = mask.to(hidden.dtype).unsqueeze(1)
    count = mask.sum(dim=-1).clamp(min=1.0)
    mean = (hidden * mask).sum(dim=-1) / count
    variance = (((hidden - mean.unsqueeze(-1)) ** 2) * mask).sum(dim=-1) / count
    return torch.cat([mean, torch.sqrt(variance + 1e-5)], dim=1)


def pool_each(hidden_states: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """The mean and standard deviation over real positions of each `(batch, positions, size)` hidden
    state, concatenated: `(batch, len(hidden_states) * 2 * size)`."""
    return torch.cat([masked_mean_std(state.transpose(1, 2), mask) for state in hidden_states], dim=1)


def frame_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(batch, num_frames) mask that is 1 on the first `lengths[i]` frames of row i."""
    return torch.arange(num_frames, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def on_frames(frames: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The `(batch, frames)` mask `frames` shaped to multiply `hidden` of shape `(batch, channels, ..., frames)`."""
    return frames.view(frames.shape[0], *([1] * (hidden.dim() - 2)), frames.shape[1]).to(hidden.dtype)


def frames_after(module: nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """Real frames left after a convolution or pooling along the last axis: floor((n + 2 padding - kernel) /
    stride) + 1, what the layer gives a clip of `lengths` frames alone."""
    kernel, stride, padding = (value[-1] if isinstance(value, tuple) else value
                               for value in (module.kernel_size, module.stride, module.padding))
    return (lengths + 2 * padding - kernel).div(stride, rounding_mode="floor") + 1


def masked_batch_norm(norm: nn.Module, hidden: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """A BatchNorm layer (timm's `BatchNormAct2d` with its activation, or a plain one) over real frames only.

    In inference the norm runs as it is. In training its batch statistics, and so its running ones, are
    those of the real frames alone, as `torch.nn.BatchNorm2d` computes them (biased variance to normalise,
    unbiased in the running estimate). Either way the padded frames of the result are zero, which is what the
    next convolution's zero padding, or a max pooling over non-negative activations, gives a clip alone.

    Args:
        norm (`nn.Module`): a `torch.nn.modules.batchnorm._BatchNorm`, in training or inference mode.
        hidden (`torch.Tensor` of shape `(batch, channels, ..., frames)`): its input.
        frames (`torch.BoolTensor` of shape `(batch, frames)`): true on real frames.

    Returns:
        `torch.Tensor` of the shape of `hidden`.
    """
    if frames.all():
        return norm(hidden)
    if not norm.training:
        return norm(hidden) * on_frames(frames, hidden)
    # Sums weighted by the frame mask rather than a gather of the real frames and a scatter back: on one CPU
    # thread a training step of the mel and MFCC branches (cpu-small, 32 clips of 1.5 to 3 s) took 1.55 times
    # the unmasked one this way, 1.8 times with the gather; with the frozen Whisper branch, the whole step
    # 1.1 times. Two passes, (x - mean)^2 rather than E[x^2] - mean^2, so a large mean costs no precision.
    weights = frames.to(hidden.dtype)
    count = weights.sum() * hidden.shape[2:-1].numel()
    channels = (1, -1, *[1] * (hidden.dim() - 2))
    mean = torch.einsum("bc...t,bt->c", hidden, weights) / count
    centred = hidden - mean.view(channels)
    variance = torch.einsum("bc...t,bt->c", centred.square(), weights) / count
    if norm.track_running_stats:
        norm.num_batches_tracked.add_(1)
        momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
        with torch.no_grad():
            norm.running_mean.lerp_(mean, momentum)
            norm.running_var.lerp_(variance * count / (count - 1).clamp(min=1), momentum)
    scale = torch.rsqrt(variance + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    normalised = centred * scale.view(channels)
    if norm.affine:
        normalised = normalised + norm.bias.view(channels)
    for after in (getattr(norm, "drop", None), getattr(norm, "act", None)):  # BatchNormAct2d's dropout, activation
        if after is not None:
            normalised = after(normalised)
    return normalised * on_frames(frames, hidden)


class SERMelEncoder(nn.Module):
    """timm DenseNet over the log-mel spectrogram (one input channel), averaged over frequency and
    pooled over real frames.

    Each clip's embedding does not depend on the padding its batch adds. The branch runs the DenseNet's own
    submodules itself (as `SERWhisperEncoder` runs Whisper's) and keeps track of each clip's real frames
    through every stride: padded frames are zero before each convolution and pooling, as a clip alone is
    padded, and are left out of every BatchNorm's batch statistics in training (`masked_batch_norm`). In
    inference a clip in a padded batch gets exactly its embedding alone; in training too, given the same
    other clips.
    """

    def __init__(self, config: SERConfig):
        super().__init__()
        # pretrained=False by construction: transformers builds the model on the meta device and
        # loads our own weights afterwards, so nothing may be downloaded here.
        self.densenet = DenseNet(
            growth_rate=config.growth_rate,
            block_config=tuple(config.block_config),
            bn_size=config.bn_size,
            in_chans=1,
            num_classes=0,
            proj_drop_rate=config.densenet_drop_rate,
        )
        self.reduction = self.densenet.feature_info[-1]["reduction"]
        self.output_size = 2 * self.densenet.num_features

    def forward(self, log_mel: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Very short clips would vanish in the downsampling: they are padded to `reduction` frames of zeros,
        # which then count as theirs, in a batch as alone.
        lengths = attention_mask.sum(dim=-1).clamp(min=self.reduction)
        shortfall = self.reduction - log_mel.shape[-1]
        if shortfall > 0:
            log_mel = nn.functional.pad(log_mel, (0, shortfall))
        feature_map, lengths = self.features(log_mel.unsqueeze(1), lengths)  # (batch, C, mel', frames')
        frames = feature_map.mean(dim=2)
        return masked_mean_std(frames, frame_mask(lengths, frames.shape[-1]))

    def features(self, image: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`DenseNet.forward_features` on `image` `(batch, 1, n_mels, frames)` whose rows have `lengths` real
        frames, with padded frames masked; returns the feature map and its rows' real frames."""
        features = self.densenet.features
        hidden = features.conv0(image * on_frames(frame_mask(lengths, image.shape[-1]), image))
        lengths = frames_after(features.conv0, lengths)
        hidden = masked_batch_norm(features.norm0, hidden, frame_mask(lengths, hidden.shape[-1]))
        # Zero, not the -inf of the pooling's own padding, on padded frames: the same maximum, since the
        # norm's ReLU leaves no real frame below zero.
        hidden = features.pool0(hidden)
        lengths = frames_after(features.pool0, lengths)
        for module in list(features.children())[3:]:
            frames = frame_mask(lengths, hidden.shape[-1])
            if isinstance(module, DenseBlock):
                hidden = self._dense_block(module, hidden, frames)
            elif isinstance(module, DenseTransition):
                # The 2x2 average pooling reads each output's frames from the real ones alone (it rounds down).
                hidden = module.pool(module.conv(masked_batch_norm(module.norm, hidden, frames)))
                lengths = frames_after(module.pool, lengths)
            else:  # norm5
                hidden = masked_batch_norm(module, hidden, frames)
        return hidden, lengths

    @staticmethod
    def _dense_block(block: DenseBlock, hidden: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """`DenseBlock.forward` with `masked_batch_norm` in front of each layer's convolutions."""
        features = [hidden]
        for layer in block.values():
            bottleneck = layer.conv1(masked_batch_norm(layer.norm1, torch.cat(features, 1), frames))
            new_features = layer.conv2(masked_batch_norm(layer.norm2, bottleneck, frames))
            if layer.drop_rate > 0:
                new_features = nn.functional.dropout(new_features, p=layer.drop_rate, training=layer.training)
            features.append(new_features)
        return torch.cat(features, 1)


class SERMfccEncoder(nn.Module):
    """Small 1-D CNN over the MFCC sequence: Conv1d-BatchNorm-ReLU blocks that keep the frame
    count, pooled over real frames. Padded frames are zero before each convolution and left out of the
    BatchNorms' batch statistics (`masked_batch_norm`), so that a clip's embedding does not depend on the
    padding of its batch, as in `SERMelEncoder`."""

    def __init__(self, config: SERConfig):
        super().__init__()
        layers = []
        in_channels = config.n_mfcc
        for out_channels in config.mfcc_channels:
            layers += [
                nn.Conv1d(in_channels, out_channels, config.mfcc_kernel_size, padding=config.mfcc_kernel_size // 2,
                          bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.output_size = 2 * config.mfcc_channels[-1]

    def forward(self, mfcc: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        frames = attention_mask.bool()
        hidden = mfcc
        for layer in self.layers:
            if isinstance(layer, nn.Conv1d):
                hidden = layer(hidden * on_frames(frames, hidden))
            elif isinstance(layer, nn.BatchNorm1d):
                hidden = masked_batch_norm(layer, hidden, frames)
            else:
                hidden = layer(hidden)
        return masked_mean_std(hidden, attention_mask)


class SERWhisperEncoder(nn.Module):
    """transformers' `WhisperEncoder` over Whisper's log-mel of the window only, its hidden states
    pooled over real positions (`config.speech_encoder_pooling`: each one's mean and standard deviation
    concatenated, or one pooling of their learned softmax weighting as SUPERB weights the layers of
    pretrained speech encoders, Yang et al. 2021).

    `WhisperEncoder.forward` insists on 30 s of input (3000 frames) and ignores padding, so the branch
    runs the encoder's own submodules itself: the convolutions, the positional table sliced to the
    window's positions (50 per second), the layers with a mask of the padded positions, and the final
    LayerNorm. Padding then changes nothing: padded frames are zeroed before each convolution, which
    is what the convolutions' zero padding gives a clip alone, and are masked in attention and pooling.
    Whisper's LayerDrop (`encoder_layerdrop`, 0 in the released checkpoints) is not applied.
    """

    def __init__(self, config: SERConfig):
        super().__init__()
        # Built from the nested config, never downloaded: the weights come with the model's own
        # checkpoint, or from `ser_model.training.speech_encoder` when training starts.
        self.encoder = WhisperEncoder(config.speech_encoder)
        num_layers = config.speech_encoder.encoder_layers
        self.hidden_state_ids = config.speech_encoder_hidden_states or list(range(num_layers + 1))
        self.pooling = config.speech_encoder_pooling
        if self.pooling == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(len(self.hidden_state_ids)))
        pooled_states = 1 if self.pooling == "weighted" else len(self.hidden_state_ids)
        self.output_size = pooled_states * 2 * config.speech_encoder.d_model
        # Whisper's upper layers carry a few activation dimensions some 30 times larger than the rest, which
        # would dominate the fusion head's LayerNorm over the concatenated branches and squash every other
        # feature; standardising each pooled feature (as a linear probe's StandardScaler does) prevents it.
        self.norm = nn.BatchNorm1d(self.output_size, affine=False)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.pool(*self.hidden_states(input_features, attention_mask))

    def pool(self, hidden_states: list[torch.Tensor], position_mask: torch.Tensor) -> torch.Tensor:
        """The branch's embedding `(batch, output_size)` from `hidden_states`' real positions."""
        if self.pooling == "weighted":
            weights = nn.functional.softmax(self.layer_weights, dim=0)
            hidden_states = [(torch.stack(hidden_states) * weights.view(-1, 1, 1, 1)).sum(dim=0)]
        pooled = pool_each(hidden_states, position_mask)
        # A batch of one has no batch statistics to standardise by: it uses the running ones, as in inference.
        training = self.norm.training and pooled.shape[0] > 1
        return nn.functional.batch_norm(pooled, self.norm.running_mean, self.norm.running_var, training=training,
                                        momentum=self.norm.momentum, eps=self.norm.eps)

    def hidden_states(self, input_features: torch.Tensor,
                      attention_mask: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The hidden states `hidden_state_ids` selects, each `(batch, positions, d_model)`, and the
        `(batch, positions)` mask of real positions."""
        encoder = self.encoder
        frames = attention_mask.unsqueeze(1).to(input_features.dtype)
        embeds = nn.functional.gelu(encoder.conv1(input_features * frames)) * frames
        embeds = nn.functional.gelu(encoder.conv2(embeds)).transpose(1, 2)
        positions = embeds.shape[1]
        positions_limit = encoder.embed_positions.num_embeddings
        if positions > positions_limit:
            raise ValueError(f"The Whisper branch takes at most {positions_limit} positions "
                             f"({positions_limit / WHISPER_POSITIONS_PER_SECOND:g} s of audio), got {positions}: "
                             "pass one window.")
        hidden = embeds + encoder.embed_positions.weight[:positions]
        hidden = nn.functional.dropout(hidden, p=encoder.dropout, training=self.training)
        lengths = encoder._get_feat_extract_output_lengths(attention_mask.sum(dim=-1))
        position_mask = frame_mask(lengths, positions)
        layer_mask = create_bidirectional_mask(encoder.config, hidden, position_mask)
        states = [hidden]
        for layer in encoder.layers[: max(self.hidden_state_ids)]:
            states.append(layer(states[-1], layer_mask))
        if len(states) == len(encoder.layers) + 1:
            states[-1] = encoder.layer_norm(states[-1])
        return [states[i] for i in self.hidden_state_ids], position_mask


class SERFusionHead(nn.Module):
    """LayerNorm over the concatenated branch embeddings (their scales differ), then a one-hidden-layer MLP."""

    def __init__(self, config: SERConfig, embedding_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(embedding_size)
        self.dropout = nn.Dropout(config.fusion_dropout)
        self.dense = nn.Linear(embedding_size, config.fusion_hidden_size)
        self.activation = nn.ReLU()
        self.classifier = nn.Linear(config.fusion_hidden_size, config.num_labels)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the logits `(batch, num_labels)` and the fused embedding `(batch, fusion_hidden_size)`."""
        hidden = self.activation(self.dense(self.dropout(self.norm(embedding))))
        return self.classifier(self.dropout(hidden)), hidden


class SERVoiceHead(nn.Module):
    """Whether the voice sounds female or male (`VOICE_LABELS`), from the same utterance embedding as the
    emotion: a LayerNorm and one linear layer, since the pitch and formant cues it needs are already in
    every branch's pooled statistics."""

    def __init__(self, config: SERConfig, embedding_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(embedding_size)
        self.dropout = nn.Dropout(config.fusion_dropout)
        self.classifier = nn.Linear(embedding_size, len(VOICE_LABELS))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Returns the voice logits `(batch, len(VOICE_LABELS))`."""
        return self.classifier(self.dropout(self.norm(embedding)))


class SERPreTrainedModel(PreTrainedModel):
    """
    Declares what the models of this file share: their config class, the name of the main input
    (the log-mel spectrogram, as AST's `input_values`), the weight initialisation, that the Whisper
    branch may use PyTorch's scaled-dot-product attention, and that they do not support gradient
    checkpointing (activation memory of one 4 s window is never the limit).
    """

    config_class = SERConfig
    base_model_prefix = "ser"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    # The loss is a mean over the batch, not a sum to be divided by `num_items_in_batch`: Trainer must
    # not pass that count, and scales the loss for gradient accumulation itself.
    accepts_loss_kwargs = False

    def _init_weights(self, module: nn.Module) -> None:
        # Kaiming for convolutions (as timm's DenseNet) since the network is trained from scratch;
        # nn.init is called through the module so that transformers can guard loaded weights.
        # The Whisper encoder is a PreTrainedModel: transformers initialises it with its own rules.
        if isinstance(module, SERWhisperEncoder):
            if module.pooling == "weighted":  # only that pooling has layer weights
                nn.init.zeros_(module.layer_weights)  # equal weights for every hidden state at the start
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@dataclass
class SERModelOutput(ModelOutput):
    """
    Args:
        pooler_output (`torch.FloatTensor` of shape `(batch, SERModel.embedding_size)`):
            Utterance embedding: the concatenated mean and std pooling of each branch.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            Each branch's pooled features, mel, MFCC, then Whisper (those the config has):
            `(batch, 2 * channels)` each.
    """

    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class SERClassifierOutput(SequenceClassifierOutput):
    """
    [`SequenceClassifierOutput`] (`loss`, `logits`, `hidden_states`, `attentions`) plus:

    Args:
        voice_logits (`torch.FloatTensor` of shape `(batch, len(VOICE_LABELS))`, *optional*):
            Whether the voice sounds female or male, from models with `config.voice_head`; not calibrated.
    """

    voice_logits: torch.FloatTensor | None = None


class SERModel(SERPreTrainedModel):
    """The branch encoders without a head: maps features to an utterance embedding."""

    def __init__(self, config: SERConfig):
        super().__init__(config)
        self.mel_encoder = SERMelEncoder(config) if "mel" in config.branches else None
        self.mfcc_encoder = SERMfccEncoder(config) if "mfcc" in config.branches else None
        self.whisper_encoder = SERWhisperEncoder(config) if "whisper" in config.branches else None
        self.post_init()

    def _encoders(self) -> list[nn.Module]:
        """The branch encoders of the config, in a fixed order (mel, MFCC, Whisper)."""
        return [e for e in (self.mel_encoder, self.mfcc_encoder, self.whisper_encoder) if e is not None]

    def branch_encoder(self, branch: str) -> nn.Module:
        """The encoder of one of `config.branches` ("mel", "mfcc" or "whisper")."""
        if branch not in self.config.branches:
            raise ValueError(f"This model's branches are {self.config.branches}, not {branch!r}.")
        return getattr(self, f"{branch}_encoder")

    @property
    def embedding_size(self) -> int:
        """Size of the utterance embedding: each branch's pooled mean and standard deviation."""
        return sum(encoder.output_size for encoder in self._encoders())

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_mfcc: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        whisper_attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> SERModelOutput:
        """
        Any other keyword argument is a `TypeError`, so that a misspelt name is not silently ignored.
        Each branch needs its inputs; the others may be left out.

        Args:
            input_values (`torch.Tensor` of shape `(batch, n_mels, frames)`): normalised log-mel spectrogram.
            input_mfcc (`torch.Tensor` of shape `(batch, n_mfcc, frames)`): normalised MFCCs.
            attention_mask (`torch.Tensor` of shape `(batch, frames)`, *optional*): 1 on real frames.
            input_features (`torch.Tensor` of shape `(batch, num_mel_bins, whisper_frames)`): Whisper's log-mel.
            whisper_attention_mask (`torch.Tensor` of shape `(batch, whisper_frames)`, *optional*): 1 on real
                frames of `input_features`.
            output_hidden_states (`bool`, *optional*): also return each branch's pooled features; defaults
                to `config.output_hidden_states`.
            return_dict (`bool`, *optional*): a `SERModelOutput` (default, `config.return_dict`) or a tuple.
        """
        branches = (
            (self.mel_encoder, "input_values", input_values, attention_mask),
            (self.mfcc_encoder, "input_mfcc", input_mfcc, attention_mask),
            (self.whisper_encoder, "input_features", input_features, whisper_attention_mask),
        )
        embeddings = []
        for encoder, name, features, mask in branches:
            if encoder is None:
                continue
            if features is None:
                raise ValueError(f"This model's branches are {self.config.branches}: pass {name} "
                                 "(SERFeatureExtractor.from_config(config) returns it).")
            if mask is None:
                mask = torch.ones(features.shape[0], features.shape[-1], dtype=torch.long, device=features.device)
            embeddings.append(encoder(features, mask))
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return SERModelOutput(pooler_output=torch.cat(embeddings, dim=1),
                              hidden_states=tuple(embeddings) if output_hidden_states else None)


class SERForAudioClassification(SERPreTrainedModel):
    """Fusion model with a classification head over the 7 emotions (`config.id2label`)."""

    def __init__(self, config: SERConfig):
        super().__init__(config)
        self.ser = SERModel(config)
        self.head = SERFusionHead(config, self.ser.embedding_size)
        self.voice_head = SERVoiceHead(config, self.ser.embedding_size) if config.voice_head else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_mfcc: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        whisper_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        voice_labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> SERClassifierOutput:
        """
        Any other keyword argument is a `TypeError`, so that a misspelt name (`label=`) cannot silently
        give no loss.

        Args:
            input_values, input_mfcc, attention_mask, input_features, whisper_attention_mask: as in
                [`SERModel.forward`].
            labels (`torch.LongTensor` of shape `(batch,)`, *optional*): class ids; when given, `loss` is
                `classification_loss(logits, labels)`.
            voice_labels (`torch.LongTensor` of shape `(batch,)`, *optional*): indices into `VOICE_LABELS`, -100
                where unknown; with a voice head, their cross-entropy is added to `loss`.
            output_hidden_states (`bool`, *optional*): also return the embeddings, for people who want
                them: each branch's pooled features, then the fused embedding (the head's hidden layer,
                `(batch, fusion_hidden_size)`).
            return_dict (`bool`, *optional*): a `SequenceClassifierOutput` (default) or a tuple.

        Returns:
            [`SERClassifierOutput`] with `logits` of shape `(batch, num_labels)`, in inference (`model.eval()`)
            already divided by `config.calibration_temperature` so that their softmax is calibrated, in training
            raw, so that fine-tuning a calibrated model learns the same logits as training it did;
            `voice_logits` with a voice head, `loss` when labels are given and `hidden_states` when asked for.
        """
        encoded = self.ser(input_values, input_mfcc, attention_mask, input_features, whisper_attention_mask,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits, fused = self.head(encoded.pooler_output)
        if not self.training:
            logits = logits / self.config.calibration_temperature
        voice_logits = self.voice_head(encoded.pooler_output) if self.voice_head is not None else None
        loss = classification_loss(logits, labels) if labels is not None else None
        if loss is not None and voice_logits is not None and voice_labels is not None:
            loss = loss + voice_loss(voice_logits, voice_labels)
        hidden_states = encoded.hidden_states + (fused,) if encoded.hidden_states is not None else None
        return SERClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states, voice_logits=voice_logits)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss `forward` returns with `labels`: cross-entropy over all `num_labels` classes, what
    fine-tuning with `Trainer` on one's own fully labelled data needs. (Training on corpora with
    fewer emotions scores each clip over its corpus' classes instead: `ser_model.training.trainer`.)"""
    return nn.functional.cross_entropy(logits, labels)


def voice_loss(voice_logits: torch.Tensor, voice_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the voice head over the clips whose speaker's gender the corpus records; the
    others (label -100) give no loss. Zero, not NaN, for a batch without any."""
    known = voice_labels != -100
    if not known.any():
        return voice_logits.sum() * 0.0  # keeps the graph, so every process's backward sees the head
    return nn.functional.cross_entropy(voice_logits[known], voice_labels[known])


__all__ = [
    "classification_loss",
    "voice_loss",
    "SERClassifierOutput",
    "SERPreTrainedModel",
    "SERModel",
    "SERForAudioClassification",
    "SERWhisperEncoder",
]
