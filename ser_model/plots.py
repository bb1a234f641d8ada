"""Pictures: confusion matrices for reports, and the waveform, features, probability chart and
emotion timeline the app shows. Each function returns a matplotlib Figure and touches no UI code.

Figures are built as `matplotlib.figure.Figure` objects, never through `pyplot`: the app draws
from several worker threads at once, and pyplot's global figure registry is not thread-safe
(it would also keep every figure alive until closed).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

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


def _envelope(waveform: np.ndarray, points: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope at `points` positions: hours of audio drawn in the time of a few seconds."""
    if len(waveform) <= 2 * points:
        return np.arange(len(waveform)), waveform, waveform
    usable = len(waveform) // points * points
    blocks = waveform[:usable].reshape(points, -1)
    return np.arange(points) * blocks.shape[1], blocks.min(axis=1), blocks.max(axis=1)


def signal_figure(waveform: np.ndarray, sampling_rate: int, log_mel: np.ndarray, mfcc: np.ndarray,
                  hop_length: int):
    """Waveform, normalised log-mel spectrogram and MFCCs on one time axis: what the model hears."""
    seconds = len(waveform) / sampling_rate
    fig = Figure(figsize=(9, 6.4))
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6, 1.2]})
    index, low, high = _envelope(waveform)
    axes[0].fill_between(index / sampling_rate, low, high, color="#4c72b0", linewidth=0.4)
    axes[0].set_ylabel("amplitude")
    axes[0].set_ylim(-1.05 * max(1e-3, np.abs(waveform).max()), 1.05 * max(1e-3, np.abs(waveform).max()))
    axes[0].set_title("Waveform")
    frame_seconds = log_mel.shape[1] * hop_length / sampling_rate
    mel_image = axes[1].imshow(log_mel, origin="lower", aspect="auto", cmap="magma",
                               extent=(0, frame_seconds, 0, log_mel.shape[0]))
    axes[1].set_ylabel("mel band")
    axes[1].set_title("Log-mel spectrogram (normalised): input of the DenseNet")
    fig.colorbar(mel_image, ax=axes[1], pad=0.01)
    mfcc_image = axes[2].imshow(mfcc, origin="lower", aspect="auto", cmap="coolwarm", vmin=-3, vmax=3,
                                extent=(0, frame_seconds, 0, mfcc.shape[0]))
    axes[2].set_ylabel("coefficient")
    axes[2].set_xlabel("time (s)")
    axes[2].set_title("MFCCs (mean/variance normalised): input of the MFCC CNN")
    fig.colorbar(mfcc_image, ax=axes[2], pad=0.01)
    axes[2].set_xlim(0, seconds)
    fig.tight_layout()
    return fig


def radar_figure(probabilities: dict[str, float]):
    """The probability of each emotion on a polar chart: the shape shows mixtures at a glance."""
    labels = list(probabilities)
    values = [probabilities[label] for label in labels]
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False)
    fig = Figure(figsize=(4.6, 4.6))
    ax = fig.add_subplot(projection="polar")
    ax.plot(np.append(angles, angles[0]), np.append(values, values[0]), color="#4c72b0", linewidth=2)
    ax.fill(np.append(angles, angles[0]), np.append(values, values[0]), color="#4c72b0", alpha=0.25)
    ax.scatter(angles, values, c=[EMOTION_COLORS.get(label, "#333333") for label in labels], s=40, zorder=3)
    ax.set_xticks(angles, labels)
    ax.set_ylim(0, max(0.5, max(values)))
    ax.set_yticks([0.25, 0.5, 0.75, 1.0][: 1 + int(max(0.5, max(values)) // 0.25)])
    ax.set_title("Emotion probabilities", pad=18)
    fig.tight_layout()
    return fig


def timeline_figure(windows, labels: list[str]):
    """Probability of each emotion over time, one point per window (at its centre); silent
    windows leave gaps."""
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    centres = np.array([(w.start + w.end) / 2 for w in windows])
    for label in labels:
        values = np.array([np.nan if w.probabilities is None else w.probabilities[label] for w in windows])
        ax.plot(centres, values, label=label, color=EMOTION_COLORS.get(label), linewidth=1.8, marker="o",
                markersize=3)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(w.end for w in windows))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title("Emotion over time")
    fig.tight_layout()
    return fig
