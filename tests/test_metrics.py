"""The metrics on small cases worked out by hand."""

import numpy as np
import pytest

from ser_model.metrics import classification_metrics, confusion_matrix, per_class_recall

# Four classes, class 3 never true. True 0 0 1 1 2, predicted 0 1 1 1 0:
#   recall    0: 1/2, 1: 2/2, 2: 0/1                    -> UAR (0.5 + 1 + 0) / 3 = 0.5
#   precision 0: 1/2, 1: 2/3, 2: 0 (never predicted)
#   F1        0: 0.5, 1: 2 * (2/3) * 1 / (5/3) = 0.8, 2: 0 -> macro F1 1.3 / 3
Y_TRUE = [0, 0, 1, 1, 2]
Y_PRED = [0, 1, 1, 1, 0]


def test_confusion_matrix_rows_are_true_classes():
    assert confusion_matrix(Y_TRUE, Y_PRED, 4).tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_metrics_average_over_the_classes_present():
    assert classification_metrics(Y_TRUE, Y_PRED, 4) == pytest.approx(
        {"accuracy": 0.6, "macro_recall": 0.5, "macro_f1": 1.3 / 3})


def test_predicting_an_absent_class_costs_recall_but_adds_no_class_to_the_averages():
    # True 0 1, predicted 3 1: class 0 has recall 0, class 1 recall 1 and F1 1; class 3 (never true) is
    # left out, so UAR and macro F1 are 0.5 (averaged over all four classes they would be 0.25).
    assert classification_metrics([0, 1], [3, 1], 4) == pytest.approx(
        {"accuracy": 0.5, "macro_recall": 0.5, "macro_f1": 0.5})


def test_per_class_recall_names_each_class_and_marks_the_absent_one():
    assert per_class_recall(np.array(Y_TRUE), np.array(Y_PRED), ["a", "b", "c", "d"]) == {
        "a": 0.5, "b": 1.0, "c": 0.0, "d": None}


def test_no_clips_give_zeros_and_a_label_out_of_range_is_refused():
    assert classification_metrics([], [], 7) == {"accuracy": 0.0, "macro_recall": 0.0, "macro_f1": 0.0}
    with pytest.raises(ValueError, match="num_labels=3, got 5"):
        classification_metrics([0, 1], [0, 5], 3)
