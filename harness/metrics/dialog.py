"""Visual Dialog (VisDial v1.0) metrics: MRR, R@K and mean rank of the ground-truth answer, and NDCG.

In VisDial each question comes with 100 candidate answers; a discriminative model scores all of
them. The sparse metrics look at where the single ground-truth answer lands; NDCG uses the dense
annotations (how many of four annotators judged each candidate correct) available for one round
per validation dialog, so it rewards ranking any acceptable answer high.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.metrics.retrieval import (
    _check_ranks,
    _check_score_matrix,
    _ranks_of_targets,
    _single_targets,
    mean_rank,
    recall_at_k,
)


def ranks_from_scores(scores: np.ndarray, gt_index: Sequence[int]) -> np.ndarray:
    """1-based rank of the ground-truth answer among each round's candidates.

    Ties are pessimistic, as in :func:`harness.metrics.retrieval.ranks_of_targets`: the
    ground truth ranks after every other candidate scoring at least as high, so a model with
    constant scores gets rank 100 of 100, not 1.

    Parameters
    ----------
    scores : array of shape (n_rounds, n_candidates)
        Score of each candidate answer, higher is better.
    gt_index : sequence of n_rounds int
        0-based index of the ground-truth candidate of each round.

    Returns
    -------
    ranks : int array of shape (n_rounds,)

    Examples
    --------
    >>> ranks_from_scores(np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.5]]), [2, 0]).tolist()
    [2, 3]

    References
    ----------
    Das et al., "Visual Dialog", CVPR 2017; ``visdialch/metrics.py`` in
    github.com/batra-mlp-lab/visdial-challenge-starter-pytorch.
    """
    return _ranks_of_targets(scores, _single_targets(gt_index, "gt_index"), "scores", "gt_index")


def mrr(ranks: Sequence[float] | np.ndarray) -> float:
    """Mean reciprocal rank of the ground-truth answer, in percent (BLIP Table 9 reports 69.41).

    Parameters
    ----------
    ranks : sequence of 1-based ranks, one per round

    Returns
    -------
    mrr : float in (0, 100]

    Examples
    --------
    >>> mrr([1, 2, 4])
    58.333333333333336

    References
    ----------
    Das et al., "Visual Dialog", CVPR 2017; BLIP (ICML 2022), Table 9.
    """
    return 100.0 * float(np.mean(1.0 / _check_ranks(ranks)))


def ndcg(scores: np.ndarray, relevance: np.ndarray) -> float:
    """Normalised discounted cumulative gain over the dense VisDial annotations, in percent.

    For each round, k is the number of candidates with non-zero relevance. The model's DCG@k sums
    ``relevance / log2(position + 1)`` over its top k candidates (positions 1..k); the ideal DCG@k
    does the same with the candidates sorted by relevance; the round's NDCG is their ratio, and the
    result is the mean over rounds. Candidates the model scores equally are ordered least relevant
    first, the pessimistic counterpart of the tie rule used for ranks, so constant scores cannot
    earn a perfect NDCG.

    Parameters
    ----------
    scores : array of shape (n_rounds, n_candidates)
        Score of each candidate answer, higher is better.
    relevance : array of shape (n_rounds, n_candidates)
        Non-negative graded relevance of each candidate (VisDial: 0, 0.25, 0.5, ...); every round
        needs at least one non-zero value.

    Returns
    -------
    ndcg : float in [0, 100]

    Examples
    --------
    >>> round(ndcg(np.array([[0.9, 0.8, 0.1, 0.0]]), np.array([[0.0, 1.0, 0.5, 0.0]])), 2)
    47.96

    (k = 2; DCG = 0 / log2(2) + 1 / log2(3) = 0.631; ideal DCG = 1 + 0.5 / log2(3) = 1.315.)

    References
    ----------
    Järvelin and Kekäläinen, "Cumulated Gain-Based Evaluation of IR Techniques", TOIS 2002;
    the ``NDCG`` class of ``visdialch/metrics.py`` in
    github.com/batra-mlp-lab/visdial-challenge-starter-pytorch.
    """
    scores = _check_score_matrix(scores, "scores")
    gains = np.asarray(relevance, dtype=np.float64)
    if gains.shape != scores.shape:
        raise ValueError(f"relevance has shape {gains.shape} but scores has shape {scores.shape}")
    if not np.isfinite(gains).all() or (gains < 0).any():
        raise ValueError("relevance must hold finite, non-negative values")
    k = (gains != 0).sum(axis=1)
    if (k == 0).any():
        row = int(np.flatnonzero(k == 0)[0])
        raise ValueError(f"relevance row {row} has no relevant candidate; NDCG is undefined for it")

    n_candidates = scores.shape[1]
    # Sort by score descending; among equal scores the least relevant comes first.
    order = np.lexsort((gains, -scores), axis=-1)
    ranked_gains = np.take_along_axis(gains, order, axis=1)
    ideal_gains = -np.sort(-gains, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, n_candidates + 2))
    in_top_k = np.arange(n_candidates)[None, :] < k[:, None]
    dcg = (ranked_gains * discounts * in_top_k).sum(axis=1)
    ideal_dcg = (ideal_gains * discounts * in_top_k).sum(axis=1)
    return 100.0 * float(np.mean(dcg / ideal_dcg))


def visdial_metrics(
    scores: np.ndarray,
    gt_index: Sequence[int],
    relevance: np.ndarray | None = None,
    relevance_rows: Sequence[int] | None = None,
) -> dict[str, float]:
    """All VisDial v1.0 metrics of one evaluation, keyed as in the BLIP baseline table.

    Parameters
    ----------
    scores : array of shape (n_rounds, n_candidates)
        Score of each candidate answer for every evaluated round, higher is better.
    gt_index : sequence of n_rounds int
        0-based index of each round's ground-truth candidate.
    relevance : array of shape (n_dense, n_candidates), optional
        Dense relevance for the rounds that have it (VisDial v1.0 val: one round per dialog).
    relevance_rows : sequence of n_dense int, optional
        Which rows of ``scores`` the rows of ``relevance`` belong to. Without it, ``relevance``
        must cover every row of ``scores`` in order.

    Returns
    -------
    metrics : dict
        ``mrr``, ``r1``, ``r5``, ``r10`` (percent), ``mean_rank``, and ``ndcg`` (percent) when
        ``relevance`` is given.

    Examples
    --------
    >>> s = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.5]])
    >>> m = visdial_metrics(s, [0, 2], relevance=np.array([[0.0, 0.0, 1.0]]), relevance_rows=[1])
    >>> m["mrr"], m["r1"], m["mean_rank"], round(m["ndcg"], 2)
    (75.0, 50.0, 1.5, 0.0)

    References
    ----------
    Das et al., "Visual Dialog", CVPR 2017; ``visdialch/metrics.py`` in
    github.com/batra-mlp-lab/visdial-challenge-starter-pytorch; BLIP (ICML 2022), Table 9.
    """
    ranks = ranks_from_scores(scores, gt_index)
    metrics = {
        "mrr": mrr(ranks),
        "r1": recall_at_k(ranks, 1),
        "r5": recall_at_k(ranks, 5),
        "r10": recall_at_k(ranks, 10),
        "mean_rank": mean_rank(ranks),
    }
    if relevance is None:
        if relevance_rows is not None:
            raise ValueError("relevance_rows was given without relevance")
        return metrics

    checked_scores = _check_score_matrix(scores, "scores")
    if relevance_rows is None:
        rows = np.arange(checked_scores.shape[0])
    else:
        rows = np.asarray(relevance_rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"relevance_rows must be a 1-D sequence of row indices, got {relevance_rows!r}")
        if rows.size and (rows.min() < 0 or rows.max() >= checked_scores.shape[0]):
            raise ValueError(f"relevance_rows must index rows 0..{checked_scores.shape[0] - 1} of scores")
        if np.unique(rows).size != rows.size:
            raise ValueError("relevance_rows lists a row of scores more than once")
    if len(relevance) != rows.size:
        raise ValueError(
            f"relevance has {len(relevance)} rows but {rows.size} rows of scores are named for it"
        )
    metrics["ndcg"] = ndcg(checked_scores[rows], relevance)
    return metrics
