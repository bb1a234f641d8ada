"""The frozen Whisper branch's pooled statistics of every clip, computed once and kept.

With the encoder frozen, the Whisper branch of the model gives each window the same pooled statistics
(the mean and standard deviation of every hidden state, `SERWhisperEncoder` with `"concat"` pooling)
in every epoch and every fold. Its forward pass is 96% of a training step on a CPU, so computing it
once per clip (and once per augmented copy) makes a cross-validation fold a matter of seconds instead
of most of an hour: a head trained on these rows is the branch's head, as the model runs it.

Two kinds of rows, each cached in `cache_dir` under a name that changes with the clips, the encoder's
weights and the settings:
- `windows`: every window of every clean clip, cut as serving cuts long audio (`sliding_windows`
  with the model's window and hop), so that a clip is scored as it is served: the mean of its
  windows' probabilities.
- `augmented`: one augmented copy of every clip per `copy` (the training's speaker, room and channel
  augmentation, a lossy codec first with `codec_probability`), one window long. Babble is drawn only
  from clips of the same corpus and fold (`groups`), so no held-out voice is mixed under a training
  clip in any fold of a cross-validation or a leave-one-corpus-out run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..configuration import SERConfig
from ..data.augment import CODECS, AugmentationSettings, Augmenter, encode_decode
from ..data.corpora import Record
from ..data.train_data import cache_file, load_arrays, save_arrays
from ..feature_extractor import SERFeatureExtractor
from ..modeling import SERForAudioClassification, pool_each
from ..windows import sliding_windows
from .speech_encoder import load_speech_encoder, speech_encoder_config

logger = logging.getLogger(__name__)

# Clips per forward pass. Sorted by length, a batch pads little: on 64 training clips and one busy CPU
# thread, batches of 4 to 8 took about 56 ms per clip, one clip at a time about 63 ms, batches of 32 about 75.
BATCH_SIZE = 8


class EncoderStatistics:
    """A frozen pretrained Whisper encoder run as the model's Whisper branch runs it, pooled.

    Args:
        encoder (`str`): a Whisper checkpoint, a Hub id (`openai/whisper-base`) or a folder in the Hub's
            layout, loaded as the training script loads `--speech_encoder` (`training.speech_encoder`).
        window_seconds (`float`): the model's window: what one row encodes at most.
        window_hop_seconds (`float`): the hop between the windows of longer clips, as serving steps them.
        cache_dir (`str` or `Path`, *optional*): where rows are kept between runs.
        batch_size (`int`, *optional*, defaults to `BATCH_SIZE`): windows per forward pass.
    """

    def __init__(self, encoder: str, window_seconds: float, window_hop_seconds: float,
                 cache_dir: str | Path | None = None, batch_size: int = BATCH_SIZE):
        config = SERConfig(branches=["whisper"], speech_encoder=speech_encoder_config(encoder),
                           speech_encoder_pooling="concat", window_seconds=window_seconds,
                           window_hop_seconds=window_hop_seconds)
        model = SERForAudioClassification(config)
        load_speech_encoder(model, encoder)
        self.config = config
        self.branch = model.ser.whisper_encoder.eval()
        self.feature_extractor = SERFeatureExtractor.from_config(config)
        self.encoder, self.cache_dir, self.batch_size = encoder, cache_dir, batch_size

    @property
    def feature_size(self) -> int:
        """Mean and standard deviation of each hidden state: `(layers + 1) * 2 * d_model`."""
        return self.branch.output_size

    def weights_digest(self) -> str:
        """A digest of the encoder's weights: cache keys must change with them, not only with a name
        (a folder's or a Hub id's weights can be replaced)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.branch.encoder.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()[:16]

    def cache_key(self) -> dict:
        """What every cached row depends on besides the clips."""
        return {"encoder": self.encoder, "weights": self.weights_digest(),
                "window_seconds": self.config.window_seconds,
                # Rows from before the level was normalised in front of Whisper differ.
                "normalize_level": self.feature_extractor.normalize_level}

    def encode(self, waveforms: list[np.ndarray], desc: str = "encoder statistics") -> np.ndarray:
        """`(len(waveforms), feature_size)` rows, each of a waveform's first window, computed in batches
        of similar lengths with a progress bar."""
        window = self.feature_extractor.window_samples
        order = np.argsort([min(len(w), window) for w in waveforms], kind="stable")
        rows = np.zeros((len(waveforms), self.feature_size), dtype=np.float32)
        with tqdm(total=len(waveforms), desc=desc, unit="window") as progress:
            for start in range(0, len(order), self.batch_size):
                chosen = order[start:start + self.batch_size]
                rows[chosen] = self._encode_batch([waveforms[i] for i in chosen])
                progress.update(len(chosen))
        return rows

    @torch.inference_mode()
    def _encode_batch(self, waveforms: list[np.ndarray]) -> np.ndarray:
        # check_audio=False: the corpora's clips are all speech, and every one must give its rows.
        inputs = self.feature_extractor(waveforms, sampling_rate=self.feature_extractor.sampling_rate,
                                        return_tensors="pt", check_audio=False)
        states, mask = self.branch.hidden_states(inputs["input_features"], inputs["whisper_attention_mask"])
        return pool_each(states, mask).numpy()

    def _cached(self, kind: str, records: list[Record], extra: dict, compute) -> list[np.ndarray]:
        cache = cache_file(self.cache_dir, kind, records, {**self.cache_key(), **extra}) if self.cache_dir else None
        if cache and cache.is_file():
            logger.info("%s of %d clips from %s", kind, len(records), cache)
            return load_arrays(cache)
        arrays = compute()
        if cache:
            save_arrays(cache, arrays)
        return arrays

    def windows(self, records: list[Record], clips: Callable[[], list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of every window of every clip, as serving cuts them, and the clip index of each row.
        `clips()` gives the decoded clips; it is called only when the cache lacks the rows."""
        window, hop = self.config.window_samples, self.config.window_hop_samples

        def compute():
            cut = [[w for _, w, _ in sliding_windows([clip], window, hop)] for clip in clips()]
            rows = self.encode([w for windows in cut for w in windows], "encoder statistics: windows")
            owner = np.repeat(np.arange(len(cut)), [len(windows) for windows in cut])
            return [rows.reshape(-1), owner.astype(np.float32)]  # one flat array each, as the cache stores them

        rows, owner = self._cached("stats-windows", records, {"hop": hop}, compute)
        return rows.reshape(-1, self.feature_size), owner.astype(np.int64)

    def augmented(self, records: list[Record], clips: Callable[[], list[np.ndarray]], copy: int,
                  settings: AugmentationSettings, codec_probability: float, groups: list, seed: int = 0) -> np.ndarray:
        """Rows of augmented copy number `copy` of every clip (one window each). `groups[i]` names the
        clips clip i may draw babble from (those with the same group); the draws depend on the seed, the
        copy and the clip alone. `clips()` is called only when the cache lacks the rows."""

        def compute():
            decoded = clips()
            members = defaultdict(list)
            for i, group in enumerate(groups):
                members[group].append(i)
            augmenters = {g: Augmenter(settings, [decoded[i] for i in m]) for g, m in members.items()}
            waveforms = []
            for i, clip in enumerate(tqdm(decoded, desc=f"augmenting copy {copy}", unit="clip")):
                rng = np.random.default_rng([seed, copy, i])
                if rng.random() < codec_probability:
                    clip = encode_decode(clip, settings.sampling_rate, str(rng.choice(sorted(CODECS))), rng)
                waveforms.append(augmenters[groups[i]](clip, rng))
            return [self.encode(waveforms, f"encoder statistics: copy {copy}").reshape(-1)]

        extra = {"copy": copy, "seed": seed, "codec_probability": codec_probability,
                 "settings": dataclasses.asdict(settings), "groups": [str(g) for g in groups]}
        return self._cached("stats-copy", records, extra, compute)[0].reshape(-1, self.feature_size)


__all__ = ["BATCH_SIZE", "EncoderStatistics"]
