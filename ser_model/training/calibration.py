"""Calibrated probabilities: temperature scaling, expected calibration error, reliability diagram.

A network trained with cross-entropy is usually over-confident: of the clips it calls angry with
90%, fewer than 90% are. Temperature scaling (Guo et al. 2017, "On calibration of modern neural
networks") divides the logits by one number fitted on held-out clips; it changes no decision,
only how sure the probabilities say the model is. The temperature lives in the model config and
the model applies it, so `pipeline(...)`, the app and the CLI all report calibrated probabilities.
`choose_temperature` keeps the fitted temperature only where it lowers the expected calibration
error of the validation clips it was fitted on.

Clips are scored as they are served (`clip_probabilities`): a clip longer than the model's window is
the mean of its windows' probabilities, each window's logits divided by the temperature first.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar

# Equal-width confidence bins for the expected calibration error (Guo et al. 2017 use 15).
ECE_BINS = 15
# Temperatures the fit may choose: Guo et al. report fitted values between about 1 and 3.
TEMPERATURE_RANGE = (0.05, 20.0)


def clip_probabilities(window_logits: np.ndarray, owner: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Each clip's probabilities as serving gives them (`EmotionRecognizer.predict_stream`): the mean over
    its windows of the softmax of their logits divided by `temperature`.

    Args:
        window_logits (`np.ndarray` of shape `(windows, classes)`): logits of every window of the clips.
        owner (`np.ndarray` of shape `(windows,)`): the clip of each window, 0 to clips - 1, each present.
        temperature (`float`, *optional*, defaults to 1.0): divides the logits before the softmax.

    Returns:
        `np.ndarray` of shape `(clips, classes)`.
    """
    probabilities = softmax(window_logits, temperature)
    clips = owner.max() + 1
    total = np.zeros((clips, probabilities.shape[1]))
    np.add.at(total, owner, probabilities)
    return total / np.bincount(owner, minlength=clips)[:, None]


def _served(logits: np.ndarray, labels: np.ndarray, owner: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Window-to-clip indices 0 to clips - 1 (one window per clip without `owner`) and each clip's label."""
    if owner is None:
        return np.arange(len(logits)), np.asarray(labels)
    _, first, owner = np.unique(owner, return_index=True, return_inverse=True)
    return owner, np.asarray(labels)[first]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, owner: np.ndarray | None = None) -> float:
    """The temperature in [`TEMPERATURE_RANGE`] that minimises the negative log-likelihood of the clips'
    labels under their probabilities as served (`clip_probabilities`), for logits computed at temperature 1.

    The fit is on the clips' probabilities, the mean over their windows, not on each window as a clip of its
    own: those are the probabilities people are shown and the ones the calibration error judges, and a
    window-level fit would weigh a long clip by its number of windows. For clips of one window, nearly all of
    the corpora's, both are the same.

    The bound matters for a model that has learnt little: its best temperature runs off towards
    infinity (uniform probabilities), which would hide how little it knows behind a huge number.

    Args:
        logits (`np.ndarray` of shape `(windows, classes)`): uncalibrated logits of held-out windows, one per
            clip without `owner`.
        labels (`np.ndarray` of shape `(windows,)`): the class id of each window's clip.
        owner (`np.ndarray` of shape `(windows,)`, *optional*): the clip of each window (any ids).
    """
    owner, labels = _served(logits, labels, owner)
    logits = np.asarray(logits, dtype=np.float64)

    def nll(log_t: float) -> float:
        picked = clip_probabilities(logits, owner, np.exp(log_t))[np.arange(len(labels)), labels]
        return float(-np.log(np.maximum(picked, np.finfo(np.float64).tiny)).mean())

    # The NLL of one-window clips is convex in 1/T; the mean over a few clips' several windows keeps it
    # unimodal in practice, so a bounded scalar search on log T finds its minimum.
    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4}).x))


def choose_temperature(logits: np.ndarray, labels: np.ndarray, owner: np.ndarray | None = None) -> dict:
    """The temperature to apply: the one `fit_temperature` finds, kept only when it lowers the expected
    calibration error of the same clips, else 1 (the probabilities stay the model's own).

    The fit minimises the negative log-likelihood, not the calibration error that people read off the
    probabilities, and on a model already close to calibrated it can raise that error: the bundled
    multi-corpus model's temperature (0.976, its averaged weights barely over-confident) raised the ECE
    of its validation speakers from 0.049 to 0.050 and of its test speakers from 0.031 to 0.034. The
    decision is made on the validation clips, so that the test speakers choose nothing.

    Args:
        logits (`np.ndarray` of shape `(windows, classes)`): logits of the validation windows at temperature 1,
            one per clip without `owner`.
        labels (`np.ndarray` of shape `(windows,)`): the class id of each window's clip.
        owner (`np.ndarray` of shape `(windows,)`, *optional*): the clip of each window; the errors are those
            of the clips' probabilities as served (`clip_probabilities`), as is the fit.

    Returns:
        `dict` with `temperature` (the one to apply), `fitted_temperature`, `applied` (`bool`), `clips`,
        `ece_before` (at temperature 1) and `ece_after` (at the fitted temperature).
    """
    fitted = fit_temperature(logits, labels, owner)
    owner, labels = _served(logits, labels, owner)
    before = reliability(clip_probabilities(logits, owner), labels)["ece"]
    after = reliability(clip_probabilities(logits, owner, fitted), labels)["ece"]
    applied = after < before
    return {"temperature": fitted if applied else 1.0, "fitted_temperature": fitted, "applied": applied,
            "clips": len(labels), "ece_before": before, "ece_after": after}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Expected calibration error and the per-bin figures of a reliability diagram.

    ECE is the mean over clips of |accuracy - confidence| within equal-width bins of the top
    probability (Naeini et al. 2015), 0 for a perfectly calibrated model.

    Returns:
        `dict` with `ece` (`float`) and `bins`: a list of `{"low", "high", "clips", "accuracy",
        "confidence"}` (accuracy and confidence are `None` for an empty bin).
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else None
        mean_confidence = float(confidence[members].mean()) if count else None
        if count:
            ece += count / len(confidence) * abs(accuracy - mean_confidence)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "clips": count,
                      "accuracy": accuracy, "confidence": mean_confidence})
    return {"ece": float(ece), "bins": table}


def reliability_figure(curves: dict[str, dict], title: str) -> Figure:
    """Reliability diagram: accuracy against confidence per bin for each named `reliability(...)`
    result (e.g. before and after temperature scaling); the diagonal is perfect calibration."""
    fig = Figure(figsize=(5.0, 4.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, curve in curves.items():
        points = [(b["confidence"], b["accuracy"], b["clips"]) for b in curve["bins"] if b["clips"]]
        x, y, n = map(np.array, zip(*points))
        ax.plot(x, y, marker="o", label=f"{name} (ECE {curve['ece']:.3f})")
        ax.scatter(x, y, s=8 + 60 * n / n.max(), alpha=0.3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["ECE_BINS", "TEMPERATURE_RANGE", "choose_temperature", "clip_probabilities", "fit_temperature",
           "reliability", "reliability_figure", "softmax"]
