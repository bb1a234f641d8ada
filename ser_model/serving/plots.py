"""Pictures: confusion matrices for reports, and the waveform, features, probability chart and
emotion timeline the app shows. Each function returns a matplotlib Figure and touches no UI code.

Figures are built as `matplotlib.figure.Figure` objects, never through `pyplot`: the app draws
from several worker threads at once, and pyplot's global figure registry is not thread-safe
(it would also keep every figure alive until closed).
"""

from __future__ import annotations

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from .prediction import merge_segments, window_spans
from .wording import percent

# One colour per emotion, the same in every picture (angry red, sad blue, ...).
EMOTION_COLORS = {
    "angry": "#d62728",
    "disgust": "#8c564b",
    "fear": "#9467bd",
    "happy": "#ffbf00",
    "neutral": "#7f7f7f",
    "sad": "#1f77b4",
    "surprise": "#2ca02c",
}


def confusion_figure(matrices: dict[str, np.ndarray], labels: list[str], title: str):
    """Row-normalised confusion matrices side by side, one per named subset (e.g. per corpus)."""
    fig = Figure(figsize=(5.2 * len(matrices), 4.8))
    axes = fig.subplots(1, len(matrices), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        matrix = np.asarray(matrix, dtype=float)
        support = matrix.sum(axis=1, keepdims=True)
        rates = np.divide(matrix, support, out=np.zeros_like(matrix), where=support > 0)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    ax.text(j, i, f"{rates[i, j]:.0%}\n({int(matrix[i, j])})", ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# The app shows figures scaled to the page: on a 390 px phone a 5.2-inch figure (520 px at 100 dpi) is
# shown about 326 px wide, so its smallest text, 13 pt (18 px drawn), is 11 px there, above the 10 px a
# phone needs.
READABLE = {"font.size": 14, "axes.titlesize": 14, "axes.labelsize": 13, "xtick.labelsize": 13,
            "ytick.labelsize": 13, "legend.fontsize": 13}
# Both pictures of a result, side by side on a wide screen and one under the other on a phone.
APP_FIGURE_WIDTH = 5.2
# The page's text and background colours (Gradio's default theme, light and dark): the pictures have
# a transparent background and are drawn in the ink of the theme in use, so they read on both.
INK = {False: "#1f2937", True: "#e5e7eb"}
PAPER = {False: "#ffffff", True: "#0b0f19"}


def theme(dark: bool = False) -> dict:
    """Matplotlib settings for the app's pictures on a light or dark page (transparent background)."""
    ink = INK[dark]
    return {**READABLE, "text.color": ink, "axes.labelcolor": ink, "axes.edgecolor": ink, "xtick.color": ink,
            "ytick.color": ink, "axes.facecolor": "none", "figure.facecolor": "none", "savefig.facecolor": "none",
            "savefig.transparent": True, "grid.color": "#9ca3af"}


def _app_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_png(figure: Figure, path) -> str:
    """Writes the figure as a PNG with a transparent background (at its own dpi, 100) and returns the path."""
    figure.savefig(path, format="png", transparent=True)
    return str(path)


def signal_figure(view, duration: float, dark: bool = False):
    """Waveform, normalised log-mel spectrogram and MFCCs: what the model hears.

    Args:
        view (`ser_model.serving.signal_view.SignalView`): the waveform's envelope and the first window's features.
        duration (`float`): the audio's length in seconds; the waveform spans it all, the features the
            first window (a 10-minute spectrogram would be too fine to read and costly to draw).
        dark (`bool`, *optional*, defaults to False): draw for a dark page (`theme`).
    """
    partial = view.feature_seconds < duration - 1e-3
    with rc_context(theme(dark)):
        fig = _app_figure(APP_FIGURE_WIDTH, 6.6)
        grid = fig.add_gridspec(3, 1, height_ratios=[1, 1.5, 1.2])
        waveform, log_mel = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
        mfcc = fig.add_subplot(grid[2], sharex=log_mel)
        peak = 1.05 * max(1e-3, float(np.abs(view.envelope_low).max()), float(np.abs(view.envelope_high).max()))
        waveform.fill_between(view.envelope_seconds, view.envelope_low, view.envelope_high,
                              color="#6b9ae0" if dark else "#4c72b0",
                              linewidth=0.4, step="post")
        if partial:
            waveform.axvspan(0, view.feature_seconds, color="#f0a030", alpha=0.25, linewidth=0)
        waveform.set_xlim(0, duration)
        waveform.set_ylim(-peak, peak)
        waveform.set_yticks([])
        waveform.set_title("Waveform" + (" (shaded: the window below)" if partial else ""))
        extent = (0, view.feature_seconds, 0, view.log_mel.shape[0])
        log_mel.imshow(view.log_mel, origin="lower", aspect="auto", cmap="magma", extent=extent)
        log_mel.set_ylabel("mel band")
        log_mel.set_title("Log-mel spectrogram (DenseNet input)" + (", first window" if partial else ""))
        mfcc.imshow(view.mfcc, origin="lower", aspect="auto", cmap="coolwarm", vmin=-3, vmax=3,
                    extent=(0, view.feature_seconds, 0, view.mfcc.shape[0]))
        mfcc.set_ylabel("MFCC")
        mfcc.set_xlabel("time (s)")
        mfcc.set_title("MFCCs (CNN input)")
        mfcc.set_xlim(0, view.feature_seconds)
    return fig


def probability_figure(probabilities: dict[str, float], dark: bool = False):
    """The probability of each emotion as a wedge on a polar chart with a fixed 0-1 radius.

    Wedges rather than a radar polygon: when one emotion takes nearly everything a polygon collapses
    to a single line, while wedges still show each emotion's share; and the fixed radius keeps
    charts of different recordings comparable.
    """
    labels = list(probabilities)
    values = np.array([probabilities[label] for label in labels])
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False)
    with rc_context(theme(dark)):
        fig = _app_figure(APP_FIGURE_WIDTH, APP_FIGURE_WIDTH)
        ax = fig.add_subplot(projection="polar")
        ax.set_theta_offset(np.pi / 2)  # first emotion at the top, so no label sits at the chart's left or right edge
        ax.bar(angles, values, width=2 * np.pi / len(labels) * 0.9, bottom=0.0, alpha=0.85,
               color=[EMOTION_COLORS.get(label, "#333333") for label in labels], edgecolor=PAPER[dark])
        ax.set_xticks(angles, [f"{label}\n{percent(value)}" for label, value in zip(labels, values)])
        ax.set_ylim(0, 1)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["", "50%", "", "100%"])
        ax.set_rlabel_position(180 / len(labels))  # the ring labels halfway between two wedges
        ax.set_title("Emotion probabilities")
    return fig


# The timeline spans the page's width: on a 390 px phone its 5.6-inch drawing (560 px at 100 dpi) is
# shown about 325 px wide, so all its text is 14 pt (19.4 px drawn, 11 px shown, above the 10 px a phone
# needs) and its legend takes two rows.
TIMELINE_TEXT = {"font.size": 14, "axes.titlesize": 14, "axes.labelsize": 14, "xtick.labelsize": 14,
                 "ytick.labelsize": 14, "legend.fontsize": 14}
TIMELINE_SIZE = (5.6, 4.6)


def timeline_figure(windows, labels: list[str], dark: bool = False):
    """The emotion over time: each window's probabilities stacked over the stretch of time it speaks
    for (`ser_model.serving.prediction.window_spans`), and under them a band of the merged segments coloured
    by emotion (hatching where silent). `dark` draws for a dark page (`theme`)."""
    spans = window_spans(windows)
    with rc_context({**theme(dark), **TIMELINE_TEXT}):
        fig = _app_figure(*TIMELINE_SIZE)
        top, band = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
        # Step edges: window i's values hold from edges[i] to edges[i + 1] (the last value is repeated
        # because a "post" step needs one more point than it has steps).
        edges = [spans[0][0]] + [end for _, end in spans]
        bottom = np.zeros(len(edges))
        for label in labels:
            values = np.array([0.0 if w.probabilities is None else w.probabilities[label] for w in windows])
            values = np.append(values, values[-1])
            top.fill_between(edges, bottom, bottom + values, step="post", color=EMOTION_COLORS.get(label),
                             linewidth=0, label=label)
            bottom += values
        top.set_ylim(0, 1)
        top.set_yticks([0, 0.5, 1], ["0%", "50%", "100%"])
        top.set_ylabel("probability")
        top.set_title("Emotion over time")
        fig.legend(loc="outside lower center", ncol=4, frameon=False, handlelength=1.2, columnspacing=1.0)
        for segment in merge_segments(windows):
            if segment.label is None:
                band.axvspan(segment.start, segment.end, facecolor=PAPER[dark], edgecolor="#9ca3af", hatch="//")
            else:
                band.axvspan(segment.start, segment.end, color=EMOTION_COLORS.get(segment.label))
        band.set_yticks([])
        band.set_ylabel("segments", rotation=0, ha="right", va="center")
        band.set_xlabel("time (s)")
        band.set_xlim(windows[0].start, windows[-1].end)
    return fig
