"""Top-1 accuracy, the metric of NLVR2 and of open-ended video QA (MSRVTT-QA, MSVD-QA), and
NLVR2's consistency (every judgement about one sentence right)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
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


def consistency(predictions: Sequence[Any], labels: Sequence[Any], groups: Sequence[Hashable]) -> float:
    """Percentage of groups whose every prediction equals its label.

    NLVR2 pairs each sentence with several image pairs; its official evaluation reports, beside
    accuracy, the fraction of unique sentences judged right on all of their pairs. ``groups``
    names each sample's sentence (for NLVR2, the identifier with the pair number blanked).

    Parameters
    ----------
    predictions : sequence
        One prediction per sample.
    labels : sequence
        The ground truth, aligned with ``predictions``.
    groups : sequence of hashable
        The group (sentence) of each sample, aligned with ``predictions``.

    Returns
    -------
    consistency : float in [0, 100]

    Examples
    --------
    >>> consistency([True, False, True, True], [True, True, True, True], ["s0", "s0", "s1", "s1"])
    50.0

    References
    ----------
    Suhr et al., "A Corpus for Reasoning About Natural Language Grounded in Photographs",
    ACL 2019, and ``nlvr2/eval/metrics.py`` in github.com/lil-lab/nlvr.
    """
    accuracy(predictions, labels)  # the same checks of alignment and emptiness
    if isinstance(groups, str) or len(groups) != len(labels):
        raise ValueError(f"groups must name the group of each of the {len(labels)} samples")
    all_right: dict[Hashable, bool] = {}
    for prediction, label, group in zip(predictions, labels, groups, strict=True):
        all_right[group] = all_right.get(group, True) and bool(prediction == label)
    return 100.0 * sum(all_right.values()) / len(all_right)
