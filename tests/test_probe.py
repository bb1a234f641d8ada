"""The frozen-encoder probe on a tiny random Whisper checkpoint: the size of its features, that they do
not depend on padding, that they are cached, that the logistic regression learns two separable classes,
and which encoder `evaluate` gives it by default."""

import json
import logging

import numpy as np
import pytest

from ser_model.data.corpora import Record
from ser_model.evaluation.evaluate import probe_encoder_for
from ser_model.evaluation.probe import FrozenEncoderProbe

from .conftest import speechlike
from .test_whisper_branch import TINY_WHISPER, tiny_whisper_dir  # noqa: F401 (a fixture)


@pytest.fixture
def probe(tiny_whisper_dir, tmp_path):  # noqa: F811
    return FrozenEncoderProbe(str(tiny_whisper_dir), window_seconds=1.0, num_labels=2, cache_dir=tmp_path / "cache",
                              batch_size=2)


def records(count: int, speaker: str = "01", corpus: str = "ravdess") -> list[Record]:
    """Clips alternating between the two classes, "angry" (a voiced tone) and "sad" (white noise)."""
    return [Record(path=f"/{corpus}/{speaker}/{i}.wav", corpus=corpus, speaker=f"{corpus}:{speaker}",
                   label=("angry", "sad")[i % 2], gender=None, utterance=str(i), relpath=f"{speaker}/{i}.wav")
            for i in range(count)]


def clips(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [speechlike(0.4 + 0.05 * i, seed=seed + i) if i % 2 == 0
            else 0.1 * rng.standard_normal(round((0.4 + 0.05 * i) * 16_000)).astype(np.float32)
            for i in range(count)]


def test_features_are_mean_and_std_of_every_hidden_state(probe):
    size = (TINY_WHISPER["encoder_layers"] + 1) * 2 * TINY_WHISPER["d_model"]
    assert probe.feature_size == size
    features = probe.encode(clips(3, seed=0))
    assert features.shape == (3, size) and np.isfinite(features).all()


def test_features_do_not_depend_on_padding_or_the_batch(probe):
    short, long = speechlike(0.45, seed=1), speechlike(0.9, seed=2)
    alone = probe.encode([short])
    together = probe.encode([long, short])  # one batch: the short clip is padded to the long one
    np.testing.assert_allclose(together[1], alone[0], atol=1e-4, rtol=1e-4)
    # Only the first window counts: what follows it changes nothing.
    window = speechlike(1.0, seed=3)
    np.testing.assert_allclose(probe.encode([np.concatenate([window, long])])[0], probe.encode([window])[0],
                               atol=1e-4, rtol=1e-4)


def test_features_are_cached_by_clips_and_weights(probe, tiny_whisper_dir, monkeypatch):  # noqa: F811
    data, waves = records(3), clips(3, seed=0)
    first = probe.features(data, waves, "train")
    assert len(list(probe.cache_dir.glob("probe-train-*.npz"))) == 1
    monkeypatch.setattr(probe, "encode", lambda *args: pytest.fail("the cached features were not reused"))
    np.testing.assert_array_equal(probe.features(data, waves, "train"), first)
    # Other clips, or the same clips under other weights, are encoded again.
    assert probe._cache_file(data[:2], "train") != probe._cache_file(data, "train")
    other = FrozenEncoderProbe(str(tiny_whisper_dir), window_seconds=1.0, num_labels=2, cache_dir=probe.cache_dir)
    other.branch.encoder.layers[0].fc1.bias.data += 1.0
    assert other._cache_file(data, "train") != probe._cache_file(data, "train")


def test_the_probe_learns_two_separable_classes(probe):
    train, validation = records(8, "01"), records(4, "02")
    train_x, validation_x = probe.encode(clips(8, seed=0)), probe.encode(clips(4, seed=50))
    labels = ["angry", "sad"]
    train_y, validation_y = ([labels.index(r.label) for r in part] for part in (train, validation))
    score = probe.fit(train_x, train_y, validation_x, validation_y, validation, {"ravdess": "speaker"})
    assert score == 1.0 and probe.c in FrozenEncoderProbe.C_GRID
    assert list(probe.predict(validation_x)) == validation_y


def test_the_probe_encoder_defaults_to_the_one_the_model_was_trained_from(tmp_path, caplog):
    assert probe_encoder_for(str(tmp_path), "openai/whisper-small") == "openai/whisper-small"
    with caplog.at_level(logging.INFO):
        assert probe_encoder_for(str(tmp_path), None) is None  # an old model: no training.json
    assert "probe skipped" in caplog.text
    (tmp_path / "training.json").write_text(json.dumps({"arguments": {"speech_encoder": "openai/whisper-base"}}))
    assert probe_encoder_for(str(tmp_path), None) == "openai/whisper-base"
    assert probe_encoder_for(str(tmp_path), "other") == "other"
