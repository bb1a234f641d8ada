"""What the app shows for one recording, computed without any UI code (unit-testable).

Two steps, because they differ a hundredfold in cost: `analyze_file` decodes and classifies
(about 10 ms of model time for a 3-second clip) and gives the numbers; `draw_pictures` draws the
waveform, features, probability chart and timeline (about 300 ms of matplotlib and encoding).
The app answers with the numbers first and draws afterwards, so its API (which only needs the
numbers) stays fast under load and a person sees the emotion before the pictures.

The file is decoded once, as a stream (`EmotionRecognizer.predict_file`), and the prediction keeps
what the pictures need (`Prediction.view`); the app keeps it for its second step.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .inference import EmotionRecognizer, ProgressCallback
from .plots import EMOTION_COLORS, probability_figure, signal_figure, timeline_figure
from .prediction import SILENT, Prediction, merge_segments, write_csv, write_json
from .wording import percent

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


def sentiment_rule() -> str:
    """How the sentiment is summed, in a sentence for the page (from `SENTIMENT_OF_EMOTION`)."""
    sides = {side: [e for e, s in SENTIMENT_OF_EMOTION.items() if s == side] for side in ("positive", "negative")}
    return (f"Sentiment adds up the emotion probabilities on each side: positive = {' + '.join(sides['positive'])}; "
            f"negative = {' + '.join(sides['negative'])}; neutral = neutral. So a \"neutral\" emotion can sit "
            "beside a \"negative\" sentiment when the negative emotions together outweigh it.")


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
    """The pictures the app displays for one recording (matplotlib Figures), and for each the
    sentence that says what it shows (the page's alternative text), keyed by the field's name."""

    signal: Any
    probabilities: Any
    timeline: Any | None  # only for audio longer than one window
    alt: dict[str, str] = field(default_factory=dict)


# The page's table of segments; the confidence in percent, as every probability the page shows.
SEGMENT_COLUMNS = ["start (s)", "end (s)", "emotion", "confidence"]


def segment_rows(windows) -> list[list]:
    """One row per segment (`ser_model.serving.prediction.merge_segments`): start and end rounded to 0.1 s,
    the emotion (or "(silent)") and its mean probability over the merged windows, in percent ('72%', '>99%')."""
    return [[round(s.start, 1), round(s.end, 1), s.label or SILENT,
             None if s.confidence is None else percent(s.confidence)] for s in merge_segments(windows)]


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


def draw_pictures(prediction: Prediction, labels: list[str], dark: bool = False) -> Pictures:
    """Draws what the model heard and what it concluded, from a prediction made with `keep_view=True`
    (`analyze_file`'s); `labels` are the model's, in order, for the timeline's legend; `dark` draws
    for a dark page (`ser_model.serving.plots.theme`)."""
    if prediction.view is None:
        raise ValueError("draw_pictures needs a prediction made with keep_view=True, as analyze_file makes")
    long = len(prediction.windows) > 1
    return Pictures(
        signal=signal_figure(prediction.view, prediction.duration, dark=dark),
        probabilities=probability_figure(prediction.probabilities, dark=dark),
        timeline=timeline_figure(prediction.windows, labels, dark=dark) if long else None,
        alt={"signal": signal_alt(prediction), "probabilities": probabilities_alt(prediction.probabilities),
             "timeline": timeline_alt(prediction.windows) if long else ""},
    )


def probabilities_alt(probabilities: dict[str, float], shown: int = 3) -> str:
    """'Chart of the emotion probabilities: sad 46%, fear 45%, neutral 5%; the other 4 below 5%.'"""
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
    top = ", ".join(f"{label} {percent(p)}" for label, p in ranked[:shown])
    rest = ranked[shown:]
    tail = f"; the other {len(rest)} at {percent(rest[0][1])} or less" if rest else ""
    return f"Chart of the emotion probabilities: {top}{tail}."


def signal_alt(prediction: Prediction) -> str:
    """What the signal picture shows: the waveform and the model's two inputs."""
    view = prediction.view
    covered = ("" if view is None or view.feature_seconds >= prediction.duration - 1e-3
               else f" of its first {view.feature_seconds:g} s")
    return (f"Waveform of the {prediction.duration:.1f} s recording, and the log-mel spectrogram and MFCCs{covered} "
            "that the model reads.")


def timeline_alt(windows, shown: int = 8) -> str:
    """'Emotion over 45.0 s, in 3 segments: 0.0-12.0 s neutral, 12.0-20.0 s angry, 20.0-45.0 s neutral.'"""
    segments = merge_segments(windows)
    if not segments:
        return ""
    parts = [f"{s.start:.1f}-{s.end:.1f} s {s.label or SILENT}" for s in segments[:shown]]
    more = f", and {len(segments) - shown} more" if len(segments) > shown else ""
    count = f"{len(segments)} segment{'s' if len(segments) != 1 else ''}"
    return f"Emotion over {segments[-1].end - segments[0].start:.1f} s, in {count}: {', '.join(parts)}{more}."


def write_downloads(prediction: Prediction, labels: list[str], folder: str | os.PathLike,
                    stem: str) -> tuple[Path, Path]:
    """Writes `<stem>.emotion.json` and `<stem>.emotion.csv` into `folder`, by the writers and in the layouts
    of every surface (`ser_model.serving.prediction`), the file named by `stem`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = folder / f"{stem}.emotion.json", folder / f"{stem}.emotion.csv"
    results = [(stem, prediction, None)]
    with json_path.open("w") as out:
        write_json(results, out)
    with csv_path.open("w", newline="") as out:
        write_csv(results, labels, out)
    return json_path, csv_path
