"""Top-1 accuracy on booleans and answer strings; NLVR2 consistency by hand."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.classification import accuracy, consistency


def test_accuracy_on_booleans_and_strings():
    assert accuracy([True, False, True, True], [True, True, True, False]) == 50.0
    assert accuracy(["dog", "cat", "man"], ["dog", "cat", "woman"]) == pytest.approx(200 / 3)
    assert accuracy(np.array([1, 0, 1]), np.array([1, 0, 1])) == 100.0


def test_accuracy_is_exact_match():
    assert accuracy(["Dog", "dog "], ["dog", "dog"]) == 0.0


@pytest.mark.parametrize(
    ("predictions", "labels", "message"),
    [
        ([1, 2], [1], "2 predictions but 1 labels"),
        ([], [], "zero samples"),
        ("ab", ["a", "b"], "single string"),
    ],
)
def test_accuracy_rejects_bad_input(predictions, labels, message):
    with pytest.raises(ValueError, match=message):
        accuracy(predictions, labels)


def test_consistency_counts_sentences_right_on_every_pair():
    # sentence s0: 3 pairs, one wrong -> inconsistent; s1: 2 pairs, both right; s2: 1 pair, right;
    # s3: 1 pair, wrong. Consistent: s1, s2 -> 2 of 4 sentences; accuracy 5 of 7.
    predictions = [True, False, True, False, True, True, False]
    labels = [True, True, True, False, True, True, True]
    groups = ["s0", "s0", "s0", "s1", "s1", "s2", "s3"]
    assert consistency(predictions, labels, groups) == 50.0
    assert accuracy(predictions, labels) == pytest.approx(500 / 7)
    # order does not matter, only membership
    assert consistency(predictions[::-1], labels[::-1], groups[::-1]) == 50.0


def test_consistency_rejects_misaligned_groups():
    with pytest.raises(ValueError, match="groups must name the group of each of the 2 samples"):
        consistency([True, True], [True, True], ["s0"])
    with pytest.raises(ValueError, match="zero samples"):
        consistency([], [], [])
