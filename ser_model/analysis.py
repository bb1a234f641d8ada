"""What the app shows for one recording, computed without any UI code (unit-testable).

Two steps, because they differ a hundredfold in cost: `analyze_file` decodes and classifies
(about 10 ms of model time for a 3-second clip) and gives the numbers; `draw_pictures` draws the
waveform, features, probability chart and timeline (about 300 ms of matplotlib and encoding).
The app answers with the numbers first and draws afterwards, so its API (which only needs the
numbers) stays fast under load and a person sees the emotion before the pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .audio_io import load_audio
from .inference import EmotionRecognizer, Prediction, ProgressCallback
from .plots import radar_figure, signal_figure, timeline_figure

# The 3-way sentiment summary is the sum of the emotion probabilities on each side. Valence as in
# Russell's circumplex model: happy is positive; angry, disgust, fear and sad are negative.
# Surprise is counted positive because the training corpora's surprise is pleasant (TESS names it
# "pleasant surprise", and RAVDESS's is acted as such); a startled, fearful surprise would be
# negative, which is one reason this summary is coarse.
SENTIMENT_OF_EMOTION = {
    "angry": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sad": "negative",
    "neutral": "neutral",
    "happy": "positive",
    "surprise": "positive",
}


def sentiment(probabilities: dict[str, float]) -> dict[str, float]:
    """Positive / neutral / negative probabilities from the emotion probabilities."""
    totals = {"positive": 0.0, "neutral": 0.0, "negative": 0.0}
    for emotion, probability in probabilities.items():
        totals[SENTIMENT_OF_EMOTION[emotion]] += probability
    return totals


@dataclass
class Analysis:
    """The numbers the app displays for one recording."""

    prediction: Prediction
    sentiment: dict[str, float]
    segments: list[list]  # one row per window (start, end, emotion, confidence, sentiment); none for short audio

    @property
    def is_long(self) -> bool:
        return len(self.prediction.windows) > 1


@dataclass
class Pictures:
    """The pictures the app displays for one recording (matplotlib Figures)."""

    signal: Any
    radar: Any
    timeline: Any | None  # only for audio longer than one window


SEGMENT_COLUMNS = ["start (s)", "end (s)", "emotion", "confidence", "sentiment"]


def segment_rows(prediction: Prediction) -> list[list]:
    rows = []
    for window in prediction.windows:
        if window.probabilities is None:
            rows.append([round(window.start, 1), round(window.end, 1), "(silent)", None, None])
        else:
            rows.append([round(window.start, 1), round(window.end, 1), window.label,
                         round(window.probabilities[window.label], 3), SENTIMENT_OF_EMOTION[window.label]])
    return rows


def analyze_file(recognizer: EmotionRecognizer, path: str, max_seconds: float | None = None,
                 progress: ProgressCallback | None = None) -> Analysis:
    """Predicts the emotion of an audio file (windowed when longer than one model window).

    Args:
        recognizer (`EmotionRecognizer`): the loaded model.
        path (`str`): any audio file `ser_model.audio_io` reads.
        max_seconds (`float`, *optional*): refuse longer audio, before decoding when the header tells.
        progress (`ProgressCallback`, *optional*): told how many seconds are classified.

    Raises:
        `AudioError`: one sentence for a person, for every kind of bad input.
    """
    config = recognizer.config
    waveform = load_audio(path, config.sampling_rate, max_seconds=max_seconds, min_seconds=config.min_audio_seconds)
    prediction = recognizer.predict_waveform(waveform, config.sampling_rate, progress=progress)
    long = len(prediction.windows) > 1
    return Analysis(prediction=prediction, sentiment=sentiment(prediction.probabilities),
                    segments=segment_rows(prediction) if long else [])


def draw_pictures(recognizer: EmotionRecognizer, path: str, prediction: Prediction) -> Pictures:
    """Draws what the model heard in `path` and what it concluded (`analyze_file`'s prediction).

    The file is decoded again rather than kept from `analyze_file`: decoding is cheap next to
    drawing, and the app then holds no waveform between its two steps.
    """
    config = recognizer.config
    waveform = load_audio(path, config.sampling_rate, min_seconds=config.min_audio_seconds)
    features = recognizer.feature_extractor(waveform, sampling_rate=config.sampling_rate, truncation=False)
    long = len(prediction.windows) > 1
    return Pictures(
        signal=signal_figure(waveform, config.sampling_rate, features["input_values"][0], features["input_mfcc"][0],
                             config.hop_length),
        radar=radar_figure(prediction.probabilities),
        timeline=timeline_figure(prediction.windows, recognizer.labels) if long else None,
    )
