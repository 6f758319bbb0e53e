"""VisDial metrics (MRR, R@K, mean rank, NDCG) against hand-computed values."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest

from harness.metrics.dialog import mrr, ndcg, ranks_from_scores, visdial_metrics


def test_ranks_from_scores():
    scores = np.array([[0.1, 0.7, 0.2], [0.9, 0.3, 0.5]])
    assert ranks_from_scores(scores, [2, 0]).tolist() == [2, 1]


def test_constant_scores_rank_the_ground_truth_last():
    assert ranks_from_scores(np.ones((2, 100)), [0, 57]).tolist() == [100, 100]


@pytest.mark.parametrize(
    ("gt_index", "message"),
    [([0], "1 entries but scores has 2"), ([0, 3], "outside 0..2"), ([0, 1.0], "integer")],
)
def test_ranks_from_scores_rejects_bad_ground_truth(gt_index, message):
    with pytest.raises(ValueError, match=message):
        ranks_from_scores(np.zeros((2, 3)), gt_index)


def test_mrr_in_percent():
    assert mrr([1, 2, 4]) == pytest.approx(100 * (1 + 1 / 2 + 1 / 4) / 3)
    assert mrr([1]) == 100.0


def test_mrr_rejects_bad_ranks():
    with pytest.raises(ValueError, match="empty"):
        mrr([])
    with pytest.raises(ValueError, match="1-based"):
        mrr([0, 1])


def test_ndcg_graded_relevance_by_hand():
    relevance = np.array([[1.0, 0.5, 0.0, 0.25]])
    scores = np.array([[0.1, 0.9, 0.5, 0.3]])
    # k = 3 relevant candidates. Model order: 1 (0.5), 2 (0.0), 3 (0.25), 0 (1.0).
    dcg = 0.5 / log2(2) + 0.0 / log2(3) + 0.25 / log2(4)
    ideal = 1.0 / log2(2) + 0.5 / log2(3) + 0.25 / log2(4)
    assert ndcg(scores, relevance) == pytest.approx(100 * dcg / ideal)


def test_ndcg_only_counts_the_top_k():
    # k = 1: only the first position matters, even though the relevant answer is second
    relevance = np.array([[0.0, 1.0, 0.0]])
    assert ndcg(np.array([[0.9, 0.8, 0.1]]), relevance) == 0.0
    assert ndcg(np.array([[0.1, 0.8, 0.9]]), relevance) == 0.0
    assert ndcg(np.array([[0.1, 0.9, 0.8]]), relevance) == 100.0


def test_ndcg_is_the_mean_over_rounds():
    relevance = np.array([[1.0, 0.0], [1.0, 0.0]])
    scores = np.array([[0.9, 0.1], [0.1, 0.9]])  # first round perfect, second gets 0
    assert ndcg(scores, relevance) == 50.0


def test_ndcg_ties_are_pessimistic():
    relevance = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert ndcg(np.array([[0.9, 0.9, 0.1], [0.5, 0.5, 0.5]]), relevance) == 0.0
    # ties among equally relevant answers do not matter
    assert ndcg(np.array([[0.9, 0.9, 0.1]]), np.array([[0.5, 0.5, 0.0]])) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("scores", "relevance", "message"),
    [
        (np.zeros((1, 3)), np.ones((1, 2)), "shape"),
        (np.zeros((1, 3)), np.array([[1.0, -0.5, 0.0]]), "non-negative"),
        (np.zeros((1, 3)), np.array([[1.0, np.nan, 0.0]]), "finite"),
        (np.zeros((2, 3)), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), "row 1 has no relevant candidate"),
        (np.array([[np.nan, 0.0, 0.0]]), np.ones((1, 3)), "NaN"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "empty"),
    ],
)
def test_ndcg_rejects_bad_input(scores, relevance, message):
    with pytest.raises(ValueError, match=message):
        ndcg(scores, relevance)


# Four rounds of twelve candidates where candidate i scores -i, so candidate j ranks j + 1.
SCORES = np.tile(-np.arange(12.0), (4, 1))
GT_INDEX = [0, 2, 6, 11]  # ranks 1, 3, 7, 12


def test_visdial_metrics_without_dense_annotations():
    metrics = visdial_metrics(SCORES, GT_INDEX)
    expected = {
        "mrr": 100 * (1 + 1 / 3 + 1 / 7 + 1 / 12) / 4,
        "r1": 25.0,
        "r5": 50.0,
        "r10": 75.0,
        "mean_rank": (1 + 3 + 7 + 12) / 4,
    }
    assert metrics.keys() == expected.keys()
    assert metrics == pytest.approx(expected)


def test_visdial_metrics_ndcg_only_over_annotated_rows():
    relevance = np.zeros((2, 12))
    relevance[0, 0] = 1.0  # row 3 of SCORES: candidate 0 ranks first -> NDCG 1
    relevance[1, 5] = 1.0  # row 1 of SCORES: candidate 5 ranks sixth, k = 1 -> NDCG 0
    metrics = visdial_metrics(SCORES, GT_INDEX, relevance=relevance, relevance_rows=[3, 1])
    assert metrics["ndcg"] == 50.0
    assert metrics["r1"] == 25.0


def test_visdial_metrics_relevance_for_every_row():
    relevance = np.zeros((4, 12))
    relevance[:, 0] = 1.0
    assert visdial_metrics(SCORES, GT_INDEX, relevance=relevance)["ndcg"] == 100.0


@pytest.mark.parametrize(
    ("relevance", "rows", "message"),
    [
        (None, [0], "relevance_rows was given without relevance"),
        (np.ones((2, 12)), None, "relevance has 2 rows but 4"),
        (np.ones((2, 12)), [0, 4], "rows 0..3"),
        (np.ones((2, 12)), [1, 1], "more than once"),
        (np.ones((2, 12)), [0], "relevance has 2 rows but 1"),
        (np.ones((1, 12)), [0.0], "row indices"),
    ],
)
def test_visdial_metrics_rejects_bad_relevance_rows(relevance, rows, message):
    with pytest.raises(ValueError, match=message):
        visdial_metrics(SCORES, GT_INDEX, relevance=relevance, relevance_rows=rows)
