"""What the app shows for one recording, computed without any UI code (unit-testable).

Two steps, because they differ a hundredfold in cost: `analyze_file` decodes and classifies
(about 10 ms of model time for a 3-second clip) and gives the numbers; `draw_pictures` draws the
waveform, features, probability chart and timeline (about 300 ms of matplotlib and encoding).
The app answers with the numbers first and draws afterwards, so its API (which only needs the
numbers) stays fast under load and a person sees the emotion before the pictures.

The file is decoded once, as a stream (`EmotionRecognizer.predict_file`), and the prediction keeps
what the pictures need (`Prediction.view`); `RecentPredictions` holds it between the two steps.
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .inference import EmotionRecognizer, Prediction, ProgressCallback, merge_segments
from .plots import EMOTION_COLORS, probability_figure, signal_figure, timeline_figure

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


# Below this top probability a decision is reported as "not sure", naming the two likeliest emotions:
# under one half, the model gives the other six emotions together more weight than its first choice,
# so announcing that choice alone would overstate what it knows. (Chance level with 7 classes is 0.14.)
NOT_SURE_BELOW = 0.5


def describe(probabilities: dict[str, float]) -> str:
    """'happy (72%)', or 'not sure: happy (38%) or sad (31%)' when the top probability is below `NOT_SURE_BELOW`."""
    (first, p1), (second, p2) = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)[:2]
    if p1 >= NOT_SURE_BELOW:
        return f"{first} ({p1:.0%})"
    return f"not sure: {first} ({p1:.0%}) or {second} ({p2:.0%})"


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
    segments: list[list]  # `SEGMENT_COLUMNS` rows: windows with the same emotion merged; none for short audio

    @property
    def notices(self) -> list[str]:
        """Sentences about a result that stands but covers less than asked (a truncated WAV)."""
        return self.prediction.notices

    @property
    def is_long(self) -> bool:
        return len(self.prediction.windows) > 1


@dataclass
class Pictures:
    """The pictures the app displays for one recording (matplotlib Figures)."""

    signal: Any
    probabilities: Any
    timeline: Any | None  # only for audio longer than one window


SEGMENT_COLUMNS = ["start (s)", "end (s)", "emotion", "mean confidence"]
SILENT = "(silent)"


def segment_rows(windows) -> list[list]:
    """One row per segment (`ser_model.serving.inference.merge_segments`): start and end rounded to 0.1 s,
    the emotion (or "(silent)") and its mean probability over the merged windows."""
    return [[round(s.start, 1), round(s.end, 1), s.label or SILENT,
             None if s.confidence is None else round(s.confidence, 3)] for s in merge_segments(windows)]


def segment_band_html(windows, data: dict[str, str] | None = None) -> str:
    """The merged segments as a band of coloured blocks, one per segment, as wide as its share of the
    time: the live timeline, redrawn each second as HTML because a matplotlib picture costs about
    300 ms to draw and this a fraction of a millisecond. `data` becomes `data-*` attributes of the band
    (the live mode names the chunk an update answers, which bench/live_latency.py reads)."""
    segments = merge_segments(windows)
    if not segments:
        return ""
    total = segments[-1].end - segments[0].start or 1.0
    blocks = []
    for segment in segments:
        name = segment.label or SILENT
        color = EMOTION_COLORS.get(segment.label, "#dddddd")
        share = 100 * (segment.end - segment.start) / total
        text = html.escape(f"{segment.start:.1f}-{segment.end:.1f} s: {name}")
        caption = html.escape(name) if share >= 12 else ""
        blocks.append(f'<div class="segment" title="{text}" style="flex:{share:.3f};background:{color}">{caption}</div>')
    attributes = "".join(f' data-{name}="{html.escape(value)}"' for name, value in (data or {}).items())
    return (f'<div class="segment-band"{attributes}>{"".join(blocks)}</div>'
            f'<div class="segment-axis"><span>{segments[0].start:.0f} s</span><span>{segments[-1].end:.0f} s</span></div>')


def analyze_file(recognizer: EmotionRecognizer, path: str, max_seconds: float | None = None,
                 progress: ProgressCallback | None = None) -> Analysis:
    """Predicts the emotion of an audio file (windowed when longer than one model window), keeping
    what `draw_pictures` needs in the prediction's `view`.

    Args:
        recognizer (`EmotionRecognizer`): the loaded model.
        path (`str`): any audio file `ser_model.audio_io` reads.
        max_seconds (`float`, *optional*): refuse longer audio, before decoding when the header tells.
        progress (`ProgressCallback`, *optional*): told how many seconds are classified.

    Raises:
        `AudioError`: one sentence for a person, for every kind of bad input.
    """
    prediction = recognizer.predict_file(path, max_seconds=max_seconds, progress=progress, keep_view=True)
    long = len(prediction.windows) > 1
    return Analysis(prediction=prediction, sentiment=sentiment(prediction.probabilities),
                    segments=segment_rows(prediction.windows) if long else [])


def draw_pictures(prediction: Prediction, labels: list[str]) -> Pictures:
    """Draws what the model heard and what it concluded, from a prediction made with `keep_view=True`
    (`analyze_file`'s); `labels` are the model's, in order, for the timeline's legend."""
    if prediction.view is None:
        raise ValueError("draw_pictures needs a prediction made with keep_view=True, as analyze_file makes")
    long = len(prediction.windows) > 1
    return Pictures(
        signal=signal_figure(prediction.view, prediction.duration),
        probabilities=probability_figure(prediction.probabilities),
        timeline=timeline_figure(prediction.windows, labels) if long else None,
    )


class RecentPredictions:
    """The latest predictions by audio file, so that the app's second step draws from the first
    step's prediction instead of decoding the file again.

    Keyed by path, modification time and size: Gradio stores each upload or recording as a file of
    its own, so the key names what was classified. Bounded, oldest out first, because API clients
    ask for the numbers alone and never collect what is kept for the pictures.

    Args:
        capacity (`int`): predictions kept; a request whose prediction was pushed out is predicted again.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[tuple, Prediction] = OrderedDict()
        # Gradio runs requests in threads, and an OrderedDict is not safe to change from several at once.
        self._lock = threading.Lock()

    def put(self, path: str, prediction: Prediction) -> None:
        key = _file_key(path)
        if key is None:
            return
        with self._lock:
            self._items[key] = prediction
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def take(self, path: str) -> Prediction | None:
        """The prediction kept for `path`, removed from the store; None when there is none."""
        key = _file_key(path)
        with self._lock:
            return self._items.pop(key, None) if key is not None else None

    def __len__(self) -> int:
        return len(self._items)


def _file_key(path: str) -> tuple | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return os.path.abspath(path), stat.st_mtime_ns, stat.st_size
