"""Rank-based retrieval metrics: recall@K, median and mean rank, as BLIP reports them.

A retrieval evaluation reduces to one question per query: at which position does the model put
the right answer among all candidates? Everything here starts from a score matrix (queries x
candidates, higher is better) and the indices of each query's correct candidates, turns them into
1-based ranks, and summarises the ranks. Image-text retrieval (COCO, Flickr30k) and video-text
retrieval (MSRVTT) are thin wrappers that name the outputs exactly as the BLIP paper's tables do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Score comparisons made at once when ranking: ranking works on whole rows of the score matrix,
# and this bound keeps a COCO 5k-image x 25k-caption evaluation from materialising more than
# this many booleans at a time.
_ELEMENTS_PER_CHUNK = 1 << 24

_RECALL_KS = (1, 5, 10)


def _check_score_matrix(scores: np.ndarray, name: str) -> np.ndarray:
    """Return ``scores`` as a non-empty 2-D real array without NaN, or raise ValueError."""
    array = np.asarray(scores)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (queries x candidates), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); need at least one query and one candidate")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64)
    elif not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if np.isnan(array).any():
        row, col = np.argwhere(np.isnan(array))[0]
        raise ValueError(
            f"{name} contains NaN (first at row {row}, column {col}); ranks would be meaningless"
        )
    return array


def _check_ranks(ranks: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return ``ranks`` as a non-empty 1-D array of values >= 1, or raise ValueError."""
    array = np.asarray(ranks)
    if array.ndim != 1:
        raise ValueError(f"ranks must be a 1-D sequence, got shape {array.shape}")
    if array.size == 0:
        raise ValueError("ranks is empty; a metric over zero queries is undefined")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"ranks must be numbers, got dtype {array.dtype}")
    if not np.isfinite(array).all() or (array < 1).any():
        bad = array[~(np.isfinite(array) & (array >= 1))][0]
        raise ValueError(f"ranks are 1-based and finite; got {bad}")
    return array


def _ranks_of_targets(
    scores: np.ndarray, targets: Sequence[Sequence[int]], scores_name: str, targets_name: str
) -> np.ndarray:
    """Rank computation behind every public ranking function; the names only shape error messages."""
    scores = _check_score_matrix(scores, scores_name)
    n_queries, n_candidates = scores.shape
    if len(targets) != n_queries:
        raise ValueError(
            f"{targets_name} has {len(targets)} entries but {scores_name} has {n_queries} query rows"
        )
    best_scores = np.empty(n_queries, dtype=scores.dtype)
    correct_at_best = np.empty(n_queries, dtype=np.int64)
    for query, query_targets in enumerate(targets):
        indices = np.asarray(query_targets)
        if indices.ndim != 1 or indices.size == 0:
            raise ValueError(
                f"{targets_name}[{query}] must be a non-empty sequence of candidate indices, got {query_targets!r}"
            )
        if not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"{targets_name}[{query}] must hold integer indices, got {query_targets!r}")
        if indices.min() < 0 or indices.max() >= n_candidates:
            raise ValueError(
                f"{targets_name}[{query}] = {indices.tolist()} has an index outside 0..{n_candidates - 1} "
                f"(the {n_candidates} candidates of {scores_name})"
            )
        target_scores = scores[query, np.unique(indices)]
        best_scores[query] = target_scores.max()
        correct_at_best[query] = int((target_scores >= best_scores[query]).sum())

    # A query's rank is that of its best-scoring correct candidate: 1 + the number of WRONG
    # candidates scoring >= it. Ties with wrong candidates count against the target (a model
    # that gives every candidate the same score must get the worst rank, not the best one an
    # argsort would hand it); other correct candidates never count, whatever their score, as in
    # BLIP's ``itm_eval``, where the best of an image's captions wins under every tie order.
    ranks = np.empty(n_queries, dtype=np.int64)
    step = max(1, _ELEMENTS_PER_CHUNK // n_candidates)
    for start in range(0, n_queries, step):
        stop = start + step
        at_or_above = (scores[start:stop] >= best_scores[start:stop, None]).sum(axis=1)
        ranks[start:stop] = at_or_above - correct_at_best[start:stop] + 1
    return ranks


def ranks_of_targets(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of each query's best-ranked correct candidate.

    Image-to-text retrieval on COCO has five correct captions per image; BLIP counts an image as
    retrieved at rank r when its best caption is at rank r. This function computes that rank for
    every query row of a score matrix.

    Only wrong candidates count against a target: ``rank = 1 + #{j wrong : scores[q, j] >=
    scores[q, target]}``. Two correct captions that tie (identical after ``pre_caption``) give
    their image rank 1, as BLIP's ``itm_eval`` does under every tie order. Ties with a wrong
    candidate are resolved pessimistically (the wrong one ranks first): a broken model that
    outputs a constant score must not be credited with R@1 = 100 (which an argsort would do
    when the target happens to come first), and BLIP's argsort order among tied scores is not
    reproducible anyway. For ordinary float scores, exact ties are rare and the result equals
    BLIP's argsort-based ranks.

    Parameters
    ----------
    scores : array of shape (n_queries, n_candidates)
        Similarity of each query to each candidate; higher is better. NaN is rejected.
    targets : sequence of n_queries non-empty sequences of int
        Indices (0-based, into the candidate axis) of each query's correct candidates.

    Returns
    -------
    ranks : int array of shape (n_queries,)
        For each query, the minimum over its targets of the target's 1-based rank.

    Examples
    --------
    >>> scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2]])
    >>> ranks_of_targets(scores, [[2], [0]]).tolist()
    [2, 3]
    >>> ranks_of_targets(scores, [[1, 2], [0]]).tolist()
    [2, 3]
    >>> ranks_of_targets(np.array([[0.7, 0.7, 0.1]]), [[0, 1]]).tolist()
    [1]

    References
    ----------
    Li et al., "BLIP: Bootstrapping Language-Image Pre-training", ICML 2022, and the ``itm_eval``
    function of its released ``train_retrieval.py`` (best rank over an image's captions).
    """
    return _ranks_of_targets(scores, targets, "scores", "targets")


def recall_at_k(ranks: Sequence[float] | np.ndarray, k: int) -> float:
    """Percentage of queries whose correct candidate is within the top ``k``.

    Recall@K is the headline retrieval number of the BLIP paper (R@1, R@5, R@10).

    Parameters
    ----------
    ranks : sequence of 1-based ranks, one per query
    k : int >= 1

    Returns
    -------
    recall : float in [0, 100]

    Examples
    --------
    >>> recall_at_k([1, 3, 7, 12], 5)
    50.0

    References
    ----------
    Karpathy and Fei-Fei, "Deep Visual-Semantic Alignments for Generating Image Descriptions",
    CVPR 2015 (the R@K protocol on COCO and Flickr30k used by BLIP).
    """
    array = _check_ranks(ranks)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return 100.0 * float(np.mean(array <= k))


def median_rank(ranks: Sequence[float] | np.ndarray) -> float:
    """Median of the 1-based ranks (MdR in video retrieval tables; lower is better).

    With an even number of queries it is the mean of the two middle ranks, as ``numpy.median``.

    Parameters
    ----------
    ranks : sequence of 1-based ranks, one per query

    Returns
    -------
    median : float

    Examples
    --------
    >>> median_rank([1, 2, 4, 10])
    3.0

    References
    ----------
    Xu et al., "MSR-VTT: A Large Video Description Dataset", CVPR 2016; BLIP Table 10.
    """
    return float(np.median(_check_ranks(ranks)))


def mean_rank(ranks: Sequence[float] | np.ndarray) -> float:
    """Mean of the 1-based ranks (lower is better); VisDial reports it as "Mean".

    Parameters
    ----------
    ranks : sequence of 1-based ranks, one per query

    Returns
    -------
    mean : float

    Examples
    --------
    >>> mean_rank([1, 2, 4, 10])
    4.25

    References
    ----------
    Das et al., "Visual Dialog", CVPR 2017 (mean rank); BLIP Table 9.
    """
    return float(np.mean(_check_ranks(ranks)))


def _recalls(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    return {f"{prefix}_r{k}": recall_at_k(ranks, k) for k in _RECALL_KS}


def _single_targets(indices: Sequence[int], name: str) -> list[list[int]]:
    """Wrap one-target-per-query indices (e.g. a caption's image) as the ranking code expects."""
    wrapped = []
    for position, index in enumerate(indices):
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"{name}[{position}] must be an integer index, got {index!r}")
        wrapped.append([int(index)])
    return wrapped


def _check_second_matrix(matrix: np.ndarray, name: str, expected: tuple[int, int]) -> np.ndarray:
    array = _check_score_matrix(matrix, name)
    if array.shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


def image_text_retrieval_metrics(
    i2t_scores: np.ndarray,
    img2txt: Sequence[Sequence[int]],
    txt2img: Sequence[int],
    *,
    t2i_scores: np.ndarray | None = None,
) -> dict[str, float]:
    """COCO / Flickr30k retrieval metrics with exactly the keys of BLIP's evaluation.

    Text retrieval (``txt_*``) ranks all captions for each image, counting the best of the
    image's captions; image retrieval (``img_*``) ranks all images for each caption.

    Parameters
    ----------
    i2t_scores : array of shape (n_images, n_texts)
        Image-to-text scores, higher is better.
    img2txt : sequence of n_images sequences of int
        Indices of each image's captions.
    txt2img : sequence of n_texts int
        Index of each caption's image.
    t2i_scores : array of shape (n_texts, n_images), optional
        Text-to-image scores when they differ from ``i2t_scores.T``. BLIP's ITM re-ranking does
        produce two different matrices (the top-k shortlist is taken per query, in each
        direction); without this argument the transpose of ``i2t_scores`` is used.

    Returns
    -------
    metrics : dict
        ``txt_r1, txt_r5, txt_r10, txt_r_mean, img_r1, img_r5, img_r10, img_r_mean, r_mean``,
        all in percent; ``*_r_mean`` is the mean of R@1, R@5 and R@10 and ``r_mean`` the mean of
        the two.

    Examples
    --------
    >>> i2t = np.array([[0.9, 0.8, 0.4], [0.7, 0.2, 0.3]])
    >>> m = image_text_retrieval_metrics(i2t, [[0, 1], [2]], [0, 0, 1])
    >>> m["txt_r1"], m["img_r1"]
    (50.0, 66.66666666666666)

    References
    ----------
    Li et al., BLIP (ICML 2022), Tables 5-6, and ``itm_eval`` in its ``train_retrieval.py``.
    """
    i2t = _check_score_matrix(i2t_scores, "i2t_scores")
    n_images, n_texts = i2t.shape
    if len(txt2img) != n_texts:
        raise ValueError(f"txt2img has {len(txt2img)} entries but i2t_scores has {n_texts} text columns")
    t2i = i2t.T if t2i_scores is None else _check_second_matrix(t2i_scores, "t2i_scores", (n_texts, n_images))

    txt_ranks = _ranks_of_targets(i2t, img2txt, "i2t_scores", "img2txt")
    img_ranks = _ranks_of_targets(t2i, _single_targets(txt2img, "txt2img"), "t2i_scores", "txt2img")

    metrics = {**_recalls(txt_ranks, "txt"), **_recalls(img_ranks, "img")}
    metrics["txt_r_mean"] = float(np.mean([metrics[f"txt_r{k}"] for k in _RECALL_KS]))
    metrics["img_r_mean"] = float(np.mean([metrics[f"img_r{k}"] for k in _RECALL_KS]))
    metrics["r_mean"] = (metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2
    return metrics


def video_text_retrieval_metrics(
    t2v_scores: np.ndarray,
    txt2vid: Sequence[int],
    vid2txt: Sequence[Sequence[int]],
    *,
    v2t_scores: np.ndarray | None = None,
) -> dict[str, float]:
    """MSRVTT text-to-video and video-to-text retrieval metrics (R@1/5/10, median and mean rank).

    On the MSRVTT 1k-A test split every video has one caption, so both directions have one
    target per query; several captions per video are handled like COCO's (best caption counts).

    Parameters
    ----------
    t2v_scores : array of shape (n_texts, n_videos)
        Text-to-video scores, higher is better.
    txt2vid : sequence of n_texts int
        Index of each caption's video.
    vid2txt : sequence of n_videos sequences of int
        Indices of each video's captions.
    v2t_scores : array of shape (n_videos, n_texts), optional
        Video-to-text scores when they differ from ``t2v_scores.T`` (BLIP's ITM re-ranking
        computes one matrix per direction); defaults to the transpose.

    Returns
    -------
    metrics : dict
        ``t2v_r1, t2v_r5, t2v_r10, t2v_median_rank, t2v_mean_rank`` and the same ``v2t_*``;
        recalls in percent, ranks 1-based.

    Examples
    --------
    >>> t2v = np.array([[0.9, 0.1], [0.8, 0.3]])
    >>> m = video_text_retrieval_metrics(t2v, [0, 1], [[0], [1]])
    >>> m["t2v_r1"], m["t2v_median_rank"], m["v2t_r1"]
    (50.0, 1.5, 100.0)

    References
    ----------
    Li et al., BLIP (ICML 2022), Table 10, and its ``eval_retrieval_video.py``; Yu et al.,
    "A Joint Sequence Fusion Model for Video Question Answering and Retrieval", ECCV 2018 (1k-A).
    """
    t2v = _check_score_matrix(t2v_scores, "t2v_scores")
    n_texts, n_videos = t2v.shape
    if len(vid2txt) != n_videos:
        raise ValueError(f"vid2txt has {len(vid2txt)} entries but t2v_scores has {n_videos} video columns")
    v2t = t2v.T if v2t_scores is None else _check_second_matrix(v2t_scores, "v2t_scores", (n_videos, n_texts))

    directions = {
        "t2v": _ranks_of_targets(t2v, _single_targets(txt2vid, "txt2vid"), "t2v_scores", "txt2vid"),
        "v2t": _ranks_of_targets(v2t, vid2txt, "v2t_scores", "vid2txt"),
    }
    metrics: dict[str, float] = {}
    for prefix, ranks in directions.items():
        metrics.update(_recalls(ranks, prefix))
        metrics[f"{prefix}_median_rank"] = median_rank(ranks)
        metrics[f"{prefix}_mean_rank"] = mean_rank(ranks)
    return metrics
