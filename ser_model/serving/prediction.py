"""A prediction (the overall emotion of a clip or file and its per-window timeline) and its two file formats.

Every surface writes a result through the one writer of its format: the CLI's `--format json|csv`, the
app's downloads and (as `Prediction.to_dict`) the API's JSON, so that a file classified anywhere reads the
same. Probabilities are fractions from 0 to 1 in both formats; they become percentages only where a person
reads them (`wording.percent`).

JSON: a list with one record per file: `path`, then `Prediction.to_dict()` (`label`, `probabilities`,
`duration`, `warnings`, `voice` where the model has a voice head, `windows`, `segments`), or `path` and
`error` for a file that could not be classified.

CSV (`CSV_COLUMNS`): one row per file for the whole recording (`part` "recording"), and for audio longer
than one model window a row per window ("window") and per segment ("segment": consecutive windows with the
same emotion merged, as the app's table shows them). `start` and `end` are in seconds; `label` is the
emotion (or "(silent)"), `confidence` its probability (a segment's: its mean over the segment's windows);
then one column per emotion with its probability (empty for a segment or a silent window), the voice
columns where the model has a voice head, and `error`, the sentence for a file that could not be classified.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from ..configuration import VOICE_LABELS

if TYPE_CHECKING:
    from .signal_view import SignalView

# What a silent window or segment is called wherever a label would stand (tables, CSV).
SILENT = "(silent)"
# The columns of every CSV, around one probability column per emotion label and the voice columns.
CSV_COLUMNS = ["path", "part", "start", "end", "label", "confidence"]
CSV_VOICE_COLUMNS = [f"voice_sounds_{label}" for label in VOICE_LABELS]


@dataclass
class WindowPrediction:
    """One window of the timeline; `probabilities` is None for a silent window, `voice` (how the voice
    sounds: "female"/"male" -> probability) None there and for models without a voice head."""

    start: float
    end: float
    probabilities: dict[str, float] | None
    voice: dict[str, float] | None = None

    @property
    def label(self) -> str | None:
        return None if self.probabilities is None else max(self.probabilities, key=self.probabilities.get)


@dataclass
class Segment:
    """Consecutive windows with the same emotion, merged: the stretch of time they speak for, and
    the mean probability of that emotion over them. `label` is None for a silent stretch."""

    start: float
    end: float
    label: str | None
    confidence: float | None


@dataclass
class Prediction:
    """The overall emotion of a clip or file and, for long audio, its per-window timeline.

    `notices` are sentences about a result that stands but covers less than was asked (a truncated
    WAV); they travel with the result so that every surface can show them. `view` is kept only when
    asked (`keep_view=True`), for pictures, and is not part of `to_dict`. `voice` is whether the voice
    sounds female or male (mean over the spoken windows), from models with a voice head: a perception
    of the audio, never a fact about the person.
    """

    label: str
    probabilities: dict[str, float]
    duration: float
    windows: list[WindowPrediction] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    view: SignalView | None = None
    voice: dict[str, float] | None = None

    @property
    def voice_label(self) -> str | None:
        """"female" or "male" (how the voice sounds), or None without a voice head."""
        return None if self.voice is None else max(self.voice, key=self.voice.get)

    @property
    def segments(self) -> list[Segment]:
        """The windows merged into segments (`merge_segments`)."""
        return merge_segments(self.windows)

    def to_dict(self) -> dict:
        """The prediction as the JSON of every surface (see the module's docstring), probabilities as fractions."""
        result = {"label": self.label, "probabilities": self.probabilities, "duration": round(self.duration, 3),
                  "warnings": list(self.notices)}
        if self.voice is not None:
            result["voice"] = self.voice
        result["windows"] = [
            {"start": round(w.start, 3), "end": round(w.end, 3), "label": w.label, "probabilities": w.probabilities,
             **({"voice": w.voice} if w.voice is not None else {})}
            for w in self.windows
        ]
        result["segments"] = [{"start": round(s.start, 3), "end": round(s.end, 3), "label": s.label,
                               "confidence": s.confidence} for s in self.segments]
        return result

    @classmethod
    def from_dict(cls, data: dict) -> "Prediction":
        """The inverse of `to_dict`, for a prediction that travelled as JSON (segments follow from the windows)."""
        windows = [WindowPrediction(w["start"], w["end"], w["probabilities"], w.get("voice"))
                   for w in data.get("windows", [])]
        return cls(data["label"], data["probabilities"], data["duration"], windows, list(data.get("warnings", [])),
                   voice=data.get("voice"))

    def to_csv_rows(self, path: str, labels: Sequence[str], voice: bool) -> list[list[str]]:
        """The prediction's rows of the CSV (`csv_header` names the columns): the whole recording, and each
        window and segment when there is more than one window.

        Args:
            path (`str`): what the `path` column names (the file as given, or its name in the app).
            labels (`list[str]`): the model's labels, in order: one probability column each.
            voice (`bool`): whether the table has the voice columns (some prediction in it has a voice).
        """
        def row(part, start, end, label, confidence, probabilities=None, sounds=None):
            values = [probabilities[name] if probabilities else None for name in labels]
            voices = [sounds[name] if sounds else None for name in VOICE_LABELS] if voice else []
            return [path, part, f"{start:.3f}", f"{end:.3f}", label or SILENT,
                    *map(_fraction, [confidence, *values, *voices]), ""]

        rows = [row("recording", 0.0, self.duration, self.label, self.probabilities[self.label], self.probabilities,
                    self.voice)]
        if len(self.windows) > 1:
            rows += [row("window", w.start, w.end, w.label, w.probabilities and w.probabilities[w.label],
                         w.probabilities, w.voice) for w in self.windows]
            rows += [row("segment", s.start, s.end, s.label, s.confidence) for s in self.segments]
        return rows


def window_spans(windows: Sequence[WindowPrediction]) -> list[tuple[float, float]]:
    """The stretch of time each window speaks for, so that overlapping windows tile the audio.

    Windows overlap (4 s every 2 s, and the last one is aligned to the end), so each is given the
    time nearer to its centre than to any other window's: boundaries sit halfway between
    consecutive centres, the first span starts where the audio starts and the last ends where it
    ends. A 4.1 s file's windows 0-4 and 0.1-4.1 become 0-2.05 and 2.05-4.1.
    """
    if not windows:
        return []
    centres = [(w.start + w.end) / 2 for w in windows]
    bounds = [windows[0].start] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [windows[-1].end]
    return list(zip(bounds, bounds[1:]))


def merge_segments(windows: Sequence[WindowPrediction]) -> list[Segment]:
    """Consecutive windows (in time order) with the same top emotion, or all silent, as one segment each."""
    segments: list[Segment] = []
    confidences: list[list[float]] = []
    for window, (start, end) in zip(windows, window_spans(windows)):
        if segments and segments[-1].label == window.label:
            segments[-1].end = end
        else:
            segments.append(Segment(start, end, window.label, None))
            confidences.append([])
        if window.label is not None:
            confidences[-1].append(window.probabilities[window.label])
    for segment, values in zip(segments, confidences):
        segment.confidence = float(np.mean(values)) if values else None
    return segments


Result = tuple[Path | str, Prediction | None, str | None]
"""(file, its prediction or None, the error sentence or None): one file's outcome, as the writers take it."""


def has_voice(results: Iterable[Result]) -> bool:
    """Whether the model said how the voices sound (it has a voice head): then every format says it too."""
    return any(prediction is not None and prediction.voice is not None for _, prediction, _ in results)


def write_json(results: Sequence[Result], out: TextIO) -> None:
    """The results as the JSON layout of the module's docstring: a list of one record per file."""
    records = [{"path": str(path), "error": error} if error else {"path": str(path), **prediction.to_dict()}
               for path, prediction, error in results]
    json.dump(records, out, indent=2)
    print(file=out)


def csv_header(labels: Sequence[str], voice: bool) -> list[str]:
    """The CSV's columns (see the module's docstring), the voice ones only when `voice`."""
    return [*CSV_COLUMNS, *labels, *(CSV_VOICE_COLUMNS if voice else []), "error"]


def write_csv(results: Sequence[Result], labels: Sequence[str], out: TextIO) -> None:
    """The results as the CSV layout of the module's docstring, probabilities as fractions (4 decimals)."""
    writer = csv.writer(out)
    voice = has_voice(results)
    header = csv_header(labels, voice)
    writer.writerow(header)
    for path, prediction, error in results:
        if error:
            writer.writerow([str(path), *[""] * (len(header) - 2), error])
        else:
            writer.writerows(prediction.to_csv_rows(str(path), labels, voice))


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


__all__ = ["CSV_COLUMNS", "CSV_VOICE_COLUMNS", "SILENT", "Prediction", "Result", "Segment", "WindowPrediction",
           "csv_header", "has_voice", "merge_segments", "window_spans", "write_csv", "write_json"]
