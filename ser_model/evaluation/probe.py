"""The second baseline: a logistic regression on the frozen hidden states of a pretrained Whisper encoder.

For each clip, the mean and standard deviation over real positions of every hidden state (the
embeddings and each layer) of the encoder, run on the clip's first window exactly as the model's
Whisper branch runs it (`SERWhisperEncoder.hidden_states`, fed by `SERFeatureExtractor`); then a
standardised logistic regression whose C is chosen on the validation speakers by the score that
training selects checkpoints by (`trainer.ValidationMetrics`). It says what a pretrained encoder
gives without any training of it: the fusion must beat it to show that its branches and training add
something (issue 19).

Extracting the features of the ~7,800 training clips takes about 15 minutes on one core, so they are
kept in the evaluation's `cache_dir`, under a name that changes with the encoder's weights, the
window and the clips.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from transformers import EvalPrediction

from ..data.corpora import Record
from ..data.train_data import cache_file, load_arrays, save_arrays
from ..training.encoder_statistics import BATCH_SIZE, EncoderStatistics
from ..training.trainer import ValidationMetrics

logger = logging.getLogger(__name__)


def fit_choosing_c(make_classifier, c_grid, train_x, train_y, validation_x, score) -> tuple[float, object, float]:
    """Fits `make_classifier(c)` for each C of `c_grid` on the training clips and keeps the one whose
    validation predictions `score` (a function of the predicted class ids) rates highest: returns
    that C, the fitted classifier and its score."""
    best = (-1.0, None, None)
    for c in c_grid:
        candidate = make_classifier(c).fit(train_x, train_y)
        value = score(candidate.predict(validation_x))
        if value > best[0]:
            best = (value, c, candidate)
    value, c, classifier = best
    return c, classifier, value


class FrozenEncoderProbe:
    """Pooled hidden states of a frozen Whisper encoder into a standardised logistic regression.

    Args:
        encoder (`str`): a Whisper checkpoint, a Hub id (`openai/whisper-base`) or a folder in the Hub's
            layout, loaded as the training script loads `--speech_encoder` (`training.speech_encoder`).
        window_seconds (`float`): the evaluated model's window: only each clip's first window is encoded.
        num_labels (`int`): the evaluated model's number of classes (the class ids are its `label2id`).
        cache_dir (`str` or `Path`, *optional*): where the features are kept between runs.
        batch_size (`int`, *optional*, defaults to `BATCH_SIZE`): clips per forward pass.
    """

    C_GRID = (0.01, 0.1, 1.0)

    def __init__(self, encoder: str, window_seconds: float, num_labels: int, cache_dir: str | Path | None = None,
                 batch_size: int = BATCH_SIZE):
        # Only each clip's first window is encoded, so the hop between windows plays no part.
        self.statistics = EncoderStatistics(encoder, window_seconds, window_seconds, batch_size=batch_size)
        self.branch = self.statistics.branch
        self.feature_extractor = self.statistics.feature_extractor
        self.encoder, self.window_seconds, self.num_labels = encoder, window_seconds, num_labels
        self.cache_dir = cache_dir
        self.c = self.classifier = None

    @property
    def feature_size(self) -> int:
        """Mean and standard deviation of each hidden state: `(layers + 1) * 2 * d_model`."""
        return self.statistics.feature_size

    def features(self, records: list[Record], waveforms: list[np.ndarray], part: str) -> np.ndarray:
        """`(clips, feature_size)` features of these clips (of the split's `part`), from the cache when
        it holds them."""
        cache = self._cache_file(records, part) if self.cache_dir else None
        if cache and cache.is_file():
            logger.info("probe features of %d %s clips from %s", len(records), part, cache)
            return np.stack(load_arrays(cache))
        rows = self.encode(waveforms, f"probe features: {part}")
        if cache:
            save_arrays(cache, list(rows))
        return rows

    def _cache_file(self, records: list[Record], part: str) -> Path:
        return cache_file(self.cache_dir, f"probe-{part}", records, self.statistics.cache_key())

    def encode(self, waveforms: list[np.ndarray], desc: str = "probe features") -> np.ndarray:
        """The features of these clips' first windows (`EncoderStatistics.encode`)."""
        return self.statistics.encode(waveforms, desc)

    def fit(self, train_x: np.ndarray, train_y, validation_x: np.ndarray, validation_y,
            validation_records: list[Record], held_out_by: dict[str, str]) -> float:
        """Fits the probe on the training clips, choosing C among `C_GRID` by the validation clips' mean,
        over the speaker-held-out corpora, of each corpus' macro recall; returns that score."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        selection = ValidationMetrics(validation_records, held_out_by, self.num_labels)
        truth = np.asarray(validation_y)

        def score(predicted):
            one_hot = np.eye(self.num_labels)[predicted]
            return selection(EvalPrediction(predictions=one_hot, label_ids=truth))[selection.SELECTION]

        def classifier(c):
            return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=1000))

        self.c, self.classifier, value = fit_choosing_c(classifier, self.C_GRID, train_x, train_y, validation_x, score)
        return value

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classifier.predict(x)


__all__ = ["FrozenEncoderProbe", "fit_choosing_c"]
