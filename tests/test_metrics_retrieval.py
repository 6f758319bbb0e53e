"""Retrieval metrics against hand-computed ranks and BLIP's argsort-based ranking."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import retrieval
from harness.metrics.retrieval import (
    image_text_retrieval_metrics,
    mean_rank,
    median_rank,
    ranks_of_targets,
    recall_at_k,
    video_text_retrieval_metrics,
)


def argsort_ranks(scores: np.ndarray, targets: list[list[int]]) -> list[int]:
    """BLIP's way: sort candidates by descending score, take the best position of any target."""
    ranks = []
    for row, row_targets in zip(scores, targets, strict=True):
        order = np.argsort(row)[::-1]
        ranks.append(min(int(np.where(order == t)[0][0]) for t in row_targets) + 1)
    return ranks


def test_ranks_single_target():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    assert ranks_of_targets(scores, [[1], [0]]).tolist() == [1, 2]


def test_ranks_best_of_several_targets():
    scores = np.array([[0.2, 0.8, 0.6, 0.9]])
    # target 1 is second (after 0.9), target 2 third: the best one counts
    assert ranks_of_targets(scores, [[2, 1]]).tolist() == [2]


def test_ties_are_pessimistic():
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.5, 0.5, 0.5, 0.5]])
    # target 2 ties with candidate 1: it ranks after it (and after 0.9)
    assert ranks_of_targets(scores, [[2], [0]]).tolist() == [3, 4]


def test_correct_candidates_that_tie_do_not_count_against_each_other():
    # an image whose two captions are identical after pre_caption: both score 0.7
    scores = np.array([[0.7, 0.7, 0.1], [0.2, 0.7, 0.7]])
    assert ranks_of_targets(scores, [[0, 1], [2, 1]]).tolist() == [1, 1]


def test_tied_targets_rank_after_higher_wrong_candidates_only():
    # targets 1 and 4 tie at 0.6; wrong 0.9 and 0.95 are ahead, wrong 0.1 is not -> rank 3
    scores = np.array([[0.9, 0.6, 0.1, 0.95, 0.6]])
    assert ranks_of_targets(scores, [[1, 4]]).tolist() == [3]


def test_ties_with_a_wrong_candidate_still_count_against_tied_targets():
    scores = np.array([[0.7, 0.7, 0.7, 0.1]])
    # targets 0 and 1 tie with the wrong candidate 2: one wrong candidate ahead -> rank 2
    assert ranks_of_targets(scores, [[0, 1]]).tolist() == [2]
    assert ranks_of_targets(scores, [[0, 1, 1]]).tolist() == [2]  # a repeated index counts once


def test_ties_among_correct_candidates_match_argsort_under_every_order():
    scores = np.array([[0.3, 0.8, 0.5, 0.8, 0.8, 0.1]])
    targets = [[1, 3, 4]]
    for permutation in [(0, 1, 2, 3, 4, 5), (5, 4, 3, 2, 1, 0), (4, 0, 3, 5, 1, 2)]:
        order = list(permutation)
        permuted_targets = [[order.index(t) for t in targets[0]]]
        assert argsort_ranks(scores[:, order], permuted_targets) == [1]
    assert ranks_of_targets(scores, targets).tolist() == [1]


def test_constant_scores_get_the_worst_rank_not_recall_100():
    scores = np.zeros((5, 5))
    ranks = ranks_of_targets(scores, [[i] for i in range(5)])
    assert ranks.tolist() == [5] * 5
    assert recall_at_k(ranks, 1) == 0.0


def test_matches_argsort_ranks_without_ties():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 50))
    targets = [
        sorted(rng.choice(50, size=int(rng.integers(1, 6)), replace=False).tolist()) for _ in range(20)
    ]
    assert ranks_of_targets(scores, targets).tolist() == argsort_ranks(scores, targets)


def test_chunked_computation_gives_the_same_ranks(monkeypatch):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(13, 11)).astype(np.float32)
    targets = [[i % 11, (3 * i) % 11] for i in range(13)]
    expected = ranks_of_targets(scores, targets)
    monkeypatch.setattr(retrieval, "_ELEMENTS_PER_CHUNK", 7)  # fewer than one row per chunk
    assert ranks_of_targets(scores, targets).tolist() == expected.tolist() == argsort_ranks(scores, targets)


def test_integer_scores_and_infinities_are_accepted():
    assert ranks_of_targets(np.array([[3, 1, 2]]), [[2]]).tolist() == [2]
    assert ranks_of_targets(np.array([[-np.inf, 0.0, np.inf]]), [[1]]).tolist() == [2]


@pytest.mark.parametrize(
    ("scores", "targets", "message"),
    [
        (np.zeros(3), [[0]], "2-D"),
        (np.zeros((0, 3)), [], "empty"),
        (np.zeros((2, 0)), [[0], [0]], "empty"),
        (np.array([[0.1, np.nan]]), [[0]], "NaN"),
        (np.array([["a", "b"]]), [[0]], "real numbers"),
        (np.zeros((2, 3)), [[0]], "1 entries but scores has 2"),
        (np.zeros((1, 3)), [[]], r"targets\[0\] must be a non-empty"),
        (np.zeros((1, 3)), [[3]], "outside 0..2"),
        (np.zeros((1, 3)), [[-1]], "outside 0..2"),
        (np.zeros((1, 3)), [[0.0]], "integer indices"),
        (np.zeros((1, 3)), [1], r"targets\[0\] must be a non-empty"),
    ],
)
def test_ranks_reject_bad_input(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        ranks_of_targets(scores, targets)


def test_recall_at_k():
    ranks = [1, 3, 7, 12]
    assert recall_at_k(ranks, 1) == 25.0
    assert recall_at_k(ranks, 5) == 50.0
    assert recall_at_k(ranks, 10) == 75.0
    assert recall_at_k(ranks, 12) == 100.0


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_recall_at_k_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k([1, 2], k)


def test_median_rank_even_count_is_mean_of_middle_values():
    assert median_rank([4, 1, 10, 2]) == 3.0
    assert median_rank([5, 1, 3]) == 3.0


def test_mean_rank():
    assert mean_rank([1, 2, 4, 10]) == 4.25


@pytest.mark.parametrize("function", [median_rank, mean_rank, lambda r: recall_at_k(r, 1)])
@pytest.mark.parametrize(
    ("ranks", "message"), [([], "empty"), ([[1, 2]], "1-D"), ([0, 1], "1-based"), ([1, np.inf], "1-based")]
)
def test_rank_summaries_reject_bad_ranks(function, ranks, message):
    with pytest.raises(ValueError, match=message):
        function(ranks)


# Two images with two captions each: image 0 owns texts 0-1, image 1 owns texts 2-3.
I2T = np.array([[0.2, 0.1, 0.8, 0.9], [0.3, 0.4, 0.5, 0.6]])
IMG2TXT = [[0, 1], [2, 3]]
TXT2IMG = [0, 0, 1, 1]


def test_image_text_retrieval_metrics_by_hand():
    metrics = image_text_retrieval_metrics(I2T, IMG2TXT, TXT2IMG)
    # image 0: its best caption (0.2) is third; image 1: caption 3 is first -> ranks [3, 1].
    # Every caption ranks its image second (columns of I2T) -> ranks [2, 2, 2, 2].
    expected = {
        "txt_r1": 50.0,
        "txt_r5": 100.0,
        "txt_r10": 100.0,
        "txt_r_mean": 250.0 / 3,
        "img_r1": 0.0,
        "img_r5": 100.0,
        "img_r10": 100.0,
        "img_r_mean": 200.0 / 3,
        "r_mean": 75.0,
    }
    assert metrics.keys() == expected.keys()
    assert metrics == pytest.approx(expected)


def test_image_text_retrieval_uses_separate_t2i_scores():
    t2i = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    metrics = image_text_retrieval_metrics(I2T, IMG2TXT, TXT2IMG, t2i_scores=t2i)
    assert metrics["img_r1"] == 100.0
    assert metrics["txt_r1"] == 50.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"img2txt": [[0, 1]]}, "img2txt has 1 entries"),
        ({"txt2img": [0, 0, 1]}, "txt2img has 3 entries"),
        ({"txt2img": [0, 0, 1, 2]}, r"txt2img\[3\] = \[2\] has an index outside 0..1"),
        ({"txt2img": [0, 0, 1, "1"]}, r"txt2img\[3\] must be an integer"),
        ({"t2i_scores": np.zeros((2, 4))}, r"t2i_scores must have shape \(4, 2\)"),
    ],
)
def test_image_text_retrieval_rejects_mismatches(kwargs, message):
    arguments = {"i2t_scores": I2T, "img2txt": IMG2TXT, "txt2img": TXT2IMG, **kwargs}
    with pytest.raises(ValueError, match=message):
        image_text_retrieval_metrics(**arguments)


def test_video_text_retrieval_metrics_by_hand():
    t2v = np.array([[0.9, 0.1, 0.0], [0.5, 0.4, 0.3], [0.1, 0.2, 0.3]])
    metrics = video_text_retrieval_metrics(t2v, [0, 1, 2], [[0], [1], [2]])
    # t2v rows: ranks [1, 2, 1]; v2t (columns): [1, 1, 2], the last one by a pessimistic tie.
    expected = {
        "t2v_r1": 200.0 / 3,
        "t2v_r5": 100.0,
        "t2v_r10": 100.0,
        "t2v_median_rank": 1.0,
        "t2v_mean_rank": 4.0 / 3,
        "v2t_r1": 200.0 / 3,
        "v2t_r5": 100.0,
        "v2t_r10": 100.0,
        "v2t_median_rank": 1.0,
        "v2t_mean_rank": 4.0 / 3,
    }
    assert metrics.keys() == expected.keys()
    assert metrics == pytest.approx(expected)


def test_video_text_retrieval_uses_separate_v2t_scores():
    t2v = np.array([[0.9, 0.1], [0.8, 0.3]])
    v2t = np.array([[0.0, 1.0], [1.0, 0.0]])  # every video prefers the wrong caption
    metrics = video_text_retrieval_metrics(t2v, [0, 1], [[0], [1]], v2t_scores=v2t)
    assert metrics["t2v_r1"] == 50.0
    assert metrics["v2t_r1"] == 0.0
    assert metrics["v2t_median_rank"] == 2.0


def test_video_to_text_with_tied_captions_of_one_video_ranks_first():
    # video 0 has captions 0 and 1 (identical text, same score); video 1 has caption 2
    t2v = np.array([[0.6, 0.2], [0.6, 0.2], [0.1, 0.9]])
    metrics = video_text_retrieval_metrics(t2v, [0, 0, 1], [[0, 1], [2]])
    assert metrics["v2t_r1"] == 100.0
    assert metrics["v2t_mean_rank"] == 1.0


def test_video_text_retrieval_rejects_mismatches():
    t2v = np.zeros((2, 3))
    with pytest.raises(ValueError, match="vid2txt has 2 entries but t2v_scores has 3 video columns"):
        video_text_retrieval_metrics(t2v, [0, 1], [[0], [1]])
    with pytest.raises(ValueError, match="txt2vid"):
        video_text_retrieval_metrics(t2v, [0], [[0], [1], []])
