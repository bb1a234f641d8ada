"""Classification metrics for emotion recognition.

Unweighted average recall (UAR, the mean of per-class recalls; `macro_recall` here) is the
standard headline figure of speech emotion recognition (e.g. the INTERSPEECH challenges), because
the corpora are not balanced across emotions; accuracy and macro-F1 are reported beside it.
"""

import numpy as np


def confusion_matrix(y_true, y_pred, num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def classification_metrics(y_true, y_pred, num_labels: int) -> dict[str, float]:
    """Accuracy, macro recall (UAR) and macro-F1 over the classes present in `y_true`.

    Classes absent from `y_true` (CREMA-D has no surprise, for example) are left out of the
    macro averages instead of counting as zero recall.
    """
    matrix = confusion_matrix(y_true, y_pred, num_labels)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    correct = np.diag(matrix)
    present = support > 0
    recall = np.divide(correct, support, out=np.zeros(num_labels), where=present)
    precision = np.divide(correct, predicted, out=np.zeros(num_labels), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_labels),
                   where=(precision + recall) > 0)
    total = support.sum()
    return {
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }


def per_class_recall(y_true, y_pred, labels) -> dict[str, float | None]:
    """Recall of each class by name; `None` for a class with no examples."""
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    support = matrix.sum(axis=1)
    return {label: (float(matrix[i, i] / support[i]) if support[i] else None) for i, label in enumerate(labels)}
