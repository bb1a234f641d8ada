"""Shared fixtures: tiny configs and models so that most tests run in well under a second, and the
location of the real corpora (SER_DATA_DIR, default ../shared/data) for the tests that need them."""

import os
from pathlib import Path

# Nothing may download during the tests (the Whisper tests build their checkpoints in tmp folders):
# set before huggingface_hub is imported, which reads it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from ser_model import SERConfig

from ser_model import SERFeatureExtractor

from ser_model import SERForAudioClassification
from ser_model.cli import default_data_dir

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(default_data_dir())  # SER_DATA_DIR, else shared/data beside the checkout, as the CLI resolves it

TINY = dict(n_mels=16, n_mfcc=8, n_fft=256, hop_length=128, window_seconds=1.0, window_hop_seconds=0.5,
            min_audio_seconds=0.1, growth_rate=4, block_config=[1, 1], mfcc_channels=[8], fusion_hidden_size=8)


def tiny_config(**overrides) -> SERConfig:
    return SERConfig(**{**TINY, **overrides})


def speechlike(seconds: float, sampling_rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope that falls to the noise between syllables, plus
    noise: not speech, but it exercises every band and passes the speech detector (`has_speech`)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sampling_rate)) / sampling_rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.sin(2 * np.pi * 2 * t) ** 2  # four syllables a second
    return (0.2 * envelope * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# What a slow test needs (registered in pyproject.toml). Each also counts as `slow`, so `-m "not slow"`
# (make test-fast) leaves out every test that needs any of them.
NEEDS_MARKERS = ("needs_model", "needs_corpora", "needs_server", "needs_browser")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in NEEDS_MARKERS) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def config() -> SERConfig:
    return tiny_config()


def save_tiny_model(folder: Path, **overrides) -> Path:
    """A randomly initialised tiny model saved as a complete model folder (weights, configs, code)."""
    config = tiny_config(**overrides)
    SERForAudioClassification(config).eval().save_pretrained(folder)
    SERFeatureExtractor.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    return save_tiny_model(tmp_path / "model")


# Marks the tests that read the real corpora: skipped, with the reason, where they are absent.
real_data = pytest.mark.skipif(
    not (DATA_DIR / "ravdess").is_dir() or not (DATA_DIR / "tess").is_dir(),
    reason=f"real corpora not found in {DATA_DIR} (set SER_DATA_DIR to the folder holding ravdess/ and tess/)",
)


def data_dir_or_skip(corpus: str | None = None) -> Path:
    path = DATA_DIR / corpus if corpus else DATA_DIR
    if not path.is_dir():
        pytest.skip(f"corpus folder {path} is absent; set SER_DATA_DIR to the folder holding ravdess/ and tess/")
    return path
