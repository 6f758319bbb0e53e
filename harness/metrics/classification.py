"""Top-1 accuracy, the metric of NLVR2 and of open-ended video QA (MSRVTT-QA, MSVD-QA)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def accuracy(predictions: Sequence[Any], labels: Sequence[Any]) -> float:
    """Percentage of predictions exactly equal to their label.

    NLVR2 compares a predicted boolean with the label; MSRVTT-QA and MSVD-QA compare a predicted
    answer string with the single ground-truth answer (exact match, no normalisation, as in
    BLIP's video QA evaluation).

    Parameters
    ----------
    predictions : sequence
        One prediction per sample (labels, booleans or strings).
    labels : sequence
        The ground truth, aligned with ``predictions``.

    Returns
    -------
    accuracy : float in [0, 100]

    Examples
    --------
    >>> accuracy([True, False, True, True], [True, True, True, False])
    50.0
    >>> accuracy(["dog", "cat", "man"], ["dog", "cat", "woman"])
    66.66666666666667

    References
    ----------
    Suhr et al., "A Corpus for Reasoning About Natural Language Grounded in Photographs",
    ACL 2019 (NLVR2); Xu et al., "Video Question Answering via Gradually Refined Attention over
    Appearance and Motion", ACM MM 2017 (MSRVTT-QA, MSVD-QA); BLIP (ICML 2022), Tables 8 and 11.
    """
    if isinstance(predictions, str) or isinstance(labels, str):
        raise ValueError("predictions and labels must be sequences of items, not a single string")
    if len(predictions) != len(labels):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(labels)} labels; they must be aligned one-to-one"
        )
    if len(labels) == 0:
        raise ValueError("no predictions; accuracy over zero samples is undefined")
    correct = sum(bool(prediction == label) for prediction, label in zip(predictions, labels, strict=True))
    return 100.0 * correct / len(labels)
