"""Top-1 accuracy on booleans and answer strings."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.classification import accuracy


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
