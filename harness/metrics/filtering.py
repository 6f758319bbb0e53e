"""How well a filter separates matching image-text pairs from noisy ones (CapFilt's filter).

A filter gives every pair a score (BLIP: the ITM head's match probability; a CLIP-score filter:
the cosine of the two embeddings) and keeps the pairs whose score reaches a threshold. The
threshold-free metrics (ROC-AUC, average precision) say how well the scores order the pairs; the
precision, recall and F1 of the kept pairs say how good one threshold is. Labels are 1 for a
matching pair (a text that should be kept) and 0 for a noisy one. Values are in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(labels: Sequence[int], scores: Sequence[float], *, both_classes: bool) -> tuple[np.ndarray, np.ndarray]:
    if len(labels) != len(scores):
        raise ValueError(f"got {len(labels)} labels but {len(scores)} scores; they must be aligned one-to-one")
    if len(labels) == 0:
        raise ValueError("no pairs; a filter metric over zero pairs is undefined")
    y = np.asarray(labels)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (noisy) or 1 (matching), got {sorted(set(y.tolist()))}")
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    if both_classes and len(set(y.tolist())) < 2:
        raise ValueError("ROC-AUC and average precision need both matching (1) and noisy (0) pairs")
    return y.astype(int), s


def filter_roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve: the chance that a random matching pair scores above a random
    noisy one (a tie counts one half); 50 is chance, 100 a perfect ordering.

    Parameters
    ----------
    labels : sequence of {0, 1}
        1 for a matching pair, 0 for a noisy one; both must occur.
    scores : sequence of float
        The filter's score of each pair, higher meaning more likely matching.

    Returns
    -------
    auc : float in [0, 100]

    Examples
    --------
    >>> filter_roc_auc([1, 0, 1, 0], [0.9, 0.4, 0.6, 0.2])
    100.0
    >>> filter_roc_auc([1, 0, 1, 0], [0.8, 0.8, 0.6, 0.2])
    62.5

    References
    ----------
    Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 27, 2006;
    ``sklearn.metrics.roc_auc_score``.
    """
    from sklearn.metrics import roc_auc_score

    y, s = _check(labels, scores, both_classes=True)
    return 100.0 * float(roc_auc_score(y, s))


def filter_average_precision(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Average precision: the precision at each matching pair's score, weighted by the recall it
    adds (sum over thresholds of (R_n - R_{n-1}) P_n, no interpolation); chance is the share of
    matching pairs.

    Parameters
    ----------
    labels : sequence of {0, 1}
        1 for a matching pair, 0 for a noisy one; both must occur.
    scores : sequence of float

    Returns
    -------
    ap : float in [0, 100]

    Examples
    --------
    >>> round(filter_average_precision([1, 0, 1, 0], [0.9, 0.8, 0.6, 0.2]), 4)
    83.3333

    References
    ----------
    Zhu, "Recall, precision and average precision", University of Waterloo, 2004;
    ``sklearn.metrics.average_precision_score``.
    """
    from sklearn.metrics import average_precision_score

    y, s = _check(labels, scores, both_classes=True)
    return 100.0 * float(average_precision_score(y, s))


def filter_precision_recall_f1(
    labels: Sequence[int], scores: Sequence[float], threshold: float
) -> tuple[float, float, float]:
    """Precision, recall and F1 of the pairs the filter keeps, i.e. those scoring at least
    ``threshold`` (CapFilt keeps a text whose match probability clears the threshold). With
    nothing kept, precision and F1 are 0; with no matching pair, recall and F1 are 0.

    Parameters
    ----------
    labels : sequence of {0, 1}
    scores : sequence of float
    threshold : float
        A pair is kept when ``score >= threshold``.

    Returns
    -------
    (precision, recall, f1) : floats in [0, 100]

    Examples
    --------
    >>> [round(v, 4) for v in filter_precision_recall_f1([1, 0, 1, 0], [0.9, 0.8, 0.6, 0.2], 0.5)]
    [66.6667, 100.0, 80.0]

    References
    ----------
    van Rijsbergen, "Information Retrieval", 2nd ed., 1979 (F-measure);
    ``sklearn.metrics.precision_recall_fscore_support``.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y, s = _check(labels, scores, both_classes=False)
    kept = (s >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, kept, average="binary", pos_label=1, zero_division=0
    )
    return 100.0 * float(precision), 100.0 * float(recall), 100.0 * float(f1)


def filtering_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, float]:
    """``roc_auc``, ``average_precision`` (left out when only one class occurs, where they are
    undefined), and ``precision``, ``recall``, ``f1`` and ``kept`` (percent of pairs kept) at
    ``threshold``.

    Examples
    --------
    >>> metrics = filtering_metrics([1, 0, 1, 0], [0.9, 0.8, 0.6, 0.2], 0.5)
    >>> {name: round(value, 2) for name, value in metrics.items()}
    {'roc_auc': 75.0, 'average_precision': 83.33, 'precision': 66.67, 'recall': 100.0, 'f1': 80.0, 'kept': 75.0}

    References
    ----------
    Li et al., "BLIP: Bootstrapping Language-Image Pre-training", ICML 2022, section 3.3 (CapFilt).
    """
    y, s = _check(labels, scores, both_classes=False)
    metrics: dict[str, float] = {}
    if len(set(y.tolist())) == 2:
        metrics["roc_auc"] = filter_roc_auc(y, s)
        metrics["average_precision"] = filter_average_precision(y, s)
    precision, recall, f1 = filter_precision_recall_f1(y, s, threshold)
    metrics |= {"precision": precision, "recall": recall, "f1": f1, "kept": 100.0 * float((s >= threshold).mean())}
    return metrics
