"""Temperature scaling: the fit, the calibration error, and the temperature travelling with the model."""

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

from ser_model import SERConfig

from ser_model import SERFeatureExtractor

from ser_model import SERForAudioClassification
from ser_model.training import calibration
from ser_model.training.calibration import (choose_temperature, clip_probabilities, fit_temperature, reliability,
                                           reliability_figure, softmax)

from .conftest import speechlike, tiny_config


def sampled(logits: np.ndarray, temperature: float, seed: int = 0) -> np.ndarray:
    """Labels drawn from softmax(logits / temperature): data for which that temperature is right."""
    rng = np.random.default_rng(seed)
    probabilities = softmax(logits, temperature)
    return np.array([rng.choice(len(p), p=p) for p in probabilities])


def test_the_fit_recovers_the_temperature_the_labels_were_drawn_with():
    logits = np.random.default_rng(1).normal(0, 4, size=(6000, 7))
    for true_temperature in (0.7, 2.5):
        assert fit_temperature(logits, sampled(logits, true_temperature)) == pytest.approx(true_temperature, rel=0.08)


def test_the_fit_is_on_each_clips_probabilities_as_served_the_mean_over_its_windows():
    # Labels drawn from the served probabilities of 3-window clips at a known temperature: the fit on those
    # recovers it; treating each window as a clip of its own would not.
    rng = np.random.default_rng(4)
    owner = np.repeat(np.arange(3000), 3)
    logits = rng.normal(0, 3, size=(len(owner), 7))
    for true_temperature in (0.5, 2.0):
        probabilities = clip_probabilities(logits, owner, true_temperature)
        labels = np.array([rng.choice(7, p=p) for p in probabilities])
        fitted = fit_temperature(logits, labels[owner], owner)
        assert fitted == pytest.approx(true_temperature, rel=0.08)
        assert abs(fit_temperature(logits, labels[owner]) - true_temperature) > 1.0
        # The clips' ids need not run from 0: validation fits on a subset of the clips.
        assert fit_temperature(logits, labels[owner], 10 + 2 * owner) == pytest.approx(fitted)
    chosen = choose_temperature(logits, labels[owner], owner)
    assert chosen["clips"] == 3000
    assert chosen["ece_before"] == pytest.approx(reliability(clip_probabilities(logits, owner), labels)["ece"])


def test_expected_calibration_error_of_known_cases():
    # Four clips at confidence 0.9, three right: |0.75 - 0.9| = 0.15 in the one filled bin.
    probabilities = np.array([[0.9, 0.1]] * 4)
    result = reliability(probabilities, np.array([0, 0, 0, 1]))
    assert result["ece"] == pytest.approx(0.15)
    assert sum(b["clips"] for b in result["bins"]) == 4
    # Two bins: 0.6 (both right: gap 0.4) and 1.0 (right: gap 0): ECE = 2/3 * 0.4.
    probabilities = np.array([[0.6, 0.4], [0.4, 0.6], [1.0, 0.0]])
    assert reliability(probabilities, np.array([0, 1, 0]))["ece"] == pytest.approx(2 / 3 * 0.4)


def test_scaling_lowers_the_calibration_error_of_an_over_confident_model():
    logits = np.random.default_rng(2).normal(0, 2, size=(4000, 7))
    labels = sampled(logits, 1.0)
    over_confident = 3.0 * logits
    temperature = fit_temperature(over_confident, labels)
    before = reliability(softmax(over_confident), labels)["ece"]
    after = reliability(softmax(over_confident, temperature), labels)["ece"]
    assert before > 0.1 and after < 0.03
    figure = reliability_figure({"before": reliability(softmax(over_confident), labels),
                                 "after": reliability(softmax(over_confident, temperature), labels)}, "test")
    assert len(figure.axes[0].lines) == 3  # the diagonal and both curves


def test_the_fitted_temperature_is_applied_when_it_lowers_the_validation_error():
    logits = 3.0 * np.random.default_rng(2).normal(0, 2, size=(4000, 7))  # over-confident
    chosen = choose_temperature(logits, sampled(logits, 3.0))
    assert chosen["applied"] and chosen["temperature"] == chosen["fitted_temperature"] == pytest.approx(3.0, rel=0.1)
    assert chosen["ece_after"] < chosen["ece_before"] and chosen["clips"] == 4000


def test_a_temperature_that_would_raise_the_validation_error_is_not_applied(monkeypatch):
    # The NLL fit need not lower the ECE; here it is forced to a temperature that sharpens a calibrated model.
    logits = np.random.default_rng(3).normal(0, 2, size=(4000, 7))
    monkeypatch.setattr(calibration, "fit_temperature", lambda *arguments: 0.5)
    chosen = choose_temperature(logits, sampled(logits, 1.0))
    assert not chosen["applied"] and chosen["temperature"] == 1.0 and chosen["fitted_temperature"] == 0.5
    assert chosen["ece_after"] > chosen["ece_before"]


def test_the_temperature_is_saved_loaded_and_applied_through_the_pipeline(tmp_path):
    torch.manual_seed(0)
    model = SERForAudioClassification(tiny_config()).eval()
    with torch.no_grad():
        model.head.classifier.bias.copy_(torch.linspace(-2, 2, 7))  # a fresh head is nearly uniform
    extractor = SERFeatureExtractor.from_config(model.config)
    clip = speechlike(0.8, seed=4)
    with torch.no_grad():
        plain = model(**extractor(clip, sampling_rate=16_000, return_tensors="pt")).logits[0].numpy()
    model.config.calibration_temperature = 2.5
    model.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["calibration_temperature"] == 2.5
    assert SERConfig.from_pretrained(tmp_path).calibration_temperature == 2.5
    classifier = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    scores = {r["label"]: r["score"] for r in classifier({"raw": clip, "sampling_rate": 16_000}, top_k=None)}
    expected = softmax(plain[None], 2.5)[0]
    for i, label in model.config.id2label.items():
        assert scores[label] == pytest.approx(expected[i], abs=1e-5)
    assert not np.allclose(expected, softmax(plain[None])[0], atol=1e-3)  # the temperature made a difference


def test_a_temperature_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="calibration_temperature"):
        tiny_config(calibration_temperature=0.0)


def test_calibrate_fits_the_raw_logits_whatever_temperature_the_model_starts_with():
    from types import SimpleNamespace

    from ser_model.training.train import calibrate

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    raw = rng.normal(size=(300, 3)) + 4.0 * np.eye(3)[labels]  # over-confident logits

    def trainer_at(temperature: float):
        # What Trainer.predict gives for a model in eval mode: the logits divided by its temperature.
        return SimpleNamespace(
            model=SimpleNamespace(config=SimpleNamespace(calibration_temperature=temperature)),
            compute_metrics=SimpleNamespace(groups={"all": np.arange(len(labels))}, owner=np.arange(len(labels))),
            eval_dataset=None,
            predict=lambda dataset: SimpleNamespace(predictions=raw / temperature, label_ids=labels))

    fresh, calibrated = trainer_at(1.0), trainer_at(2.5)  # e.g. fine-tuned from a calibrated --init_model
    assert calibrate(calibrated)["fitted_temperature"] == pytest.approx(calibrate(fresh)["fitted_temperature"])
    assert calibrated.model.config.calibration_temperature == pytest.approx(fresh.model.config.calibration_temperature)


def test_calibrate_fits_the_validation_clips_as_served():
    from types import SimpleNamespace

    from ser_model.training.train import calibrate

    rng = np.random.default_rng(5)
    owner = np.array([0, 1, 1, 2, 3, 3, 3] * 50) + np.repeat(4 * np.arange(50), 7)  # clips of 1 to 3 windows
    clip_labels = rng.integers(0, 3, owner.max() + 1)
    raw = rng.normal(size=(len(owner), 3)) + 4.0 * np.eye(3)[clip_labels[owner]]
    speaker_held_out = np.arange(0, owner.max() + 1, 2)  # the other clips' corpus is held out by utterance
    trainer = SimpleNamespace(
        model=SimpleNamespace(config=SimpleNamespace(calibration_temperature=1.0)),
        compute_metrics=SimpleNamespace(groups={"ravdess": speaker_held_out}, owner=owner), eval_dataset=None,
        predict=lambda dataset: SimpleNamespace(predictions=raw, label_ids=clip_labels[owner]))
    chosen = np.isin(owner, speaker_held_out)
    expected = choose_temperature(raw[chosen], clip_labels[owner][chosen], owner[chosen])
    assert calibrate(trainer) == expected and expected["clips"] == len(speaker_held_out)
