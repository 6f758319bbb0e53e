"""Filter-quality metrics against hand-computed values and their edge cases."""

from __future__ import annotations

import pytest

from harness.metrics.filtering import (
    filter_average_precision,
    filter_precision_recall_f1,
    filter_roc_auc,
    filtering_metrics,
)


def test_roc_auc_counts_pairs_won_and_ties_as_half():
    # positives 0.7, 0.5; negatives 0.5, 0.1: (0.7>0.5) + (0.7>0.1) + (0.5=0.5 -> 1/2) + (0.5>0.1) = 3.5 of 4
    assert filter_roc_auc([1, 0, 1, 0], [0.7, 0.5, 0.5, 0.1]) == pytest.approx(87.5)
    assert filter_roc_auc([0, 1], [0.9, 0.1]) == pytest.approx(0.0)


def test_average_precision_weights_precision_by_recall_gained():
    # order 0.9(1) 0.7(0) 0.6(0) 0.3(1): recall 1/2 at precision 1, then 1/2 more at precision 2/4
    assert filter_average_precision([1, 0, 0, 1], [0.9, 0.7, 0.6, 0.3]) == pytest.approx(75.0)
    assert filter_average_precision([0, 1, 1], [0.1, 0.2, 0.3]) == pytest.approx(100.0)


def test_precision_recall_f1_keep_scores_at_the_threshold():
    # kept: 0.5 (1) and 0.8 (0); missed: 0.4 (1); P = 1/2, R = 1/2, F1 = 1/2
    assert filter_precision_recall_f1([1, 0, 1, 0], [0.5, 0.8, 0.4, 0.1], 0.5) == pytest.approx((50.0, 50.0, 50.0))


def test_nothing_kept_gives_zero_precision_not_an_error():
    assert filter_precision_recall_f1([1, 0], [0.2, 0.1], 0.5) == (0.0, 0.0, 0.0)


def test_one_class_leaves_out_the_ranking_metrics():
    metrics = filtering_metrics([1, 1, 1], [0.9, 0.4, 0.6], 0.5)
    assert "roc_auc" not in metrics and "average_precision" not in metrics
    assert metrics["precision"] == pytest.approx(100.0)
    assert metrics["recall"] == pytest.approx(200.0 / 3)
    assert metrics["kept"] == pytest.approx(200.0 / 3)
    with pytest.raises(ValueError, match="both matching"):
        filter_roc_auc([1, 1], [0.2, 0.3])


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [([1, 0], [0.5], "aligned"), ([], [], "zero pairs"), ([1, 2], [0.1, 0.2], "0 \\(noisy\\)"), ([1, 0], [0.1, float("nan")], "finite")],
)
def test_bad_input_is_refused_with_a_reason(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        filtering_metrics(labels, scores, 0.5)
