"""Caption diversity metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from harness.metrics.diversity import caption_tokens, distinct_n, mbleu4, vocabulary_size


def test_tokens_lowercase_and_drop_punctuation():
    assert caption_tokens("Two DOGS; one's asleep!") == ["two", "dogs", "one's", "asleep"]


def test_distinct_counts_ngrams_within_captions_only():
    captions = ["a b c", "c a b"]
    # unigrams: a b c c a b -> 3 unique of 6; bigrams: ab bc ca ab -> 3 unique of 4.
    assert distinct_n(captions, 1) == pytest.approx(3 / 6)
    assert distinct_n(captions, 2) == pytest.approx(3 / 4)
    # No bigram "c c" across the caption boundary: trigrams abc, cab -> 2 of 2.
    assert distinct_n(captions, 3) == 1.0


def test_distinct_of_short_captions_and_bad_input():
    assert distinct_n(["dog", "cat"], 2) == 0.0
    with pytest.raises(ValueError, match="zero captions"):
        distinct_n([], 1)
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(["a dog"], 0)
    with pytest.raises(ValueError, match="single string"):
        distinct_n("a dog", 1)


def test_vocabulary_size():
    assert vocabulary_size(["A dog.", "a DOG runs", "cats"]) == 4


def test_mbleu4_hand_computed():
    # Caption 1 against caption 2: 5 of 6 unigrams, 4 of 5 bigrams, 3 of 4 trigrams and 2 of 3
    # 4-grams match ("a dog runs on the" is shared; "grass" and "lawn" differ); same lengths,
    # so no brevity penalty. Symmetric for caption 2.
    expected = 100.0 * math.exp((math.log(5 / 6) + math.log(4 / 5) + math.log(3 / 4) + math.log(2 / 3)) / 4)
    value = mbleu4([["a dog runs on the grass", "a dog runs on the lawn"]])
    assert value == pytest.approx(expected, rel=1e-6)


def test_mbleu4_lower_for_more_diverse_groups_and_skips_singletons():
    same = mbleu4([["a red car on a road", "a red car on a road", "a red car on a road"]])
    varied = mbleu4([["a red car on a road", "two people ride bikes past a shop", "a cat sleeps on a sofa"]])
    assert same == pytest.approx(100.0)
    assert varied < 1.0
    assert mbleu4([["only one caption"], ["a b c d e", "a b c d e"]]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="two or more"):
        mbleu4([["lonely"]])
