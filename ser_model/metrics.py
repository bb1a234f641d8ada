"""Classification metrics for emotion recognition, computed by scikit-learn.

Unweighted average recall (UAR, the mean of per-class recalls; `macro_recall` here) is the
standard headline figure of speech emotion recognition (e.g. the INTERSPEECH challenges), because
the corpora are not balanced across emotions; accuracy and macro-F1 are reported beside it.

What this module adds to `sklearn.metrics` is the project's convention, in one place: labels are
indices `0 .. num_labels - 1`, and macro averages run over the classes present in `y_true`.
"""

import numpy as np
from sklearn import metrics


def confusion_matrix(y_true, y_pred, num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts; rows are true classes, columns predictions."""
    return metrics.confusion_matrix(y_true, y_pred, labels=np.arange(num_labels))


def classification_metrics(y_true, y_pred, num_labels: int) -> dict[str, float]:
    """Accuracy, macro recall (UAR) and macro-F1 over the classes present in `y_true`.

    Classes absent from `y_true` (CREMA-D has no surprise, for example) are left out of the
    macro averages instead of counting as zero recall; predictions of such a class still count
    against the recall of the true class. No clips at all give zeros rather than an error.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        return {"accuracy": 0.0, "macro_recall": 0.0, "macro_f1": 0.0}
    largest = max(y_true.max(), y_pred.max(initial=0))
    if largest >= num_labels:
        raise ValueError(f"labels must be below num_labels={num_labels}, got {largest}")
    present = np.unique(y_true)
    return {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        # zero_division=0: a present class that is never predicted has precision 0, hence F1 0.
        "macro_recall": float(metrics.recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(metrics.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
    }


def per_class_recall(y_true, y_pred, labels) -> dict[str, float | None]:
    """Recall of each class by name; `None` for a class with no examples."""
    y_true = np.asarray(y_true, dtype=np.int64)
    recalls = metrics.recall_score(y_true, y_pred, labels=np.arange(len(labels)), average=None, zero_division=0)
    support = np.bincount(y_true, minlength=len(labels))
    return {label: (float(recall) if support[i] else None) for i, (label, recall) in enumerate(zip(labels, recalls))}
