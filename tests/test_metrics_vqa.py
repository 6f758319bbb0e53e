"""VQA accuracy against the rules of the official VQA evaluation script, worked by hand."""

from __future__ import annotations

import pytest

from harness.metrics.vqa import normalize_answer, per_sample_vqa_accuracy, vqa_accuracy, vqa_accuracy_score


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # case and surrounding whitespace
        ("YES", "yes"),
        ("  yes\n", "yes"),
        ("red\tand blue", "red and blue"),
        # number words become digits, including "none"
        ("Two", "2"),
        ("ten", "10"),
        ("none", "0"),
        ("one hundred", "1 hundred"),
        # articles are dropped
        ("The dog", "dog"),
        ("a cat and an owl", "cat and owl"),
        ("the two", "2"),
        # contractions written without apostrophe are restored; real ones are kept
        ("dont", "don't"),
        ("I dont know", "i don't know"),
        ("whats that", "what's that"),
        ("can't", "can't"),
        ("couldnt've", "couldn't've"),
        # the official table's backwards entry, kept for parity with the server
        ("somebody'd", "somebodyd"),
        # a mark touching no space separates words; one next to a space is just deleted
        ("black/white", "black white"),
        ("t-shirt", "t shirt"),
        ("yes, it is", "yes it is"),
        ("hello!", "hello"),
        ("(left)", "left"),
        # any digit,digit group deletes every mark
        ("1,000", "1000"),
        ("1,000 black/white", "1000 blackwhite"),
        # a period goes unless a digit follows it
        ("yes.", "yes"),
        ("3.5", "3.5"),
        (".5", ".5"),
        ("st.louis", "stlouis"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_answer_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a string"):
        normalize_answer(2)


@pytest.mark.parametrize(
    ("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]
)
def test_accuracy_with_ten_answers(matches, expected):
    # with m matching annotators, leaving out a match leaves m-1, leaving out another leaves m:
    # (m * min(1, (m-1)/3) + (10-m) * min(1, m/3)) / 10
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_2016_scorer_always_normalises_the_prediction():
    answers = ["2"] * 10
    assert vqa_accuracy("Two.", answers, scorer="2016") == 1.0
    assert vqa_accuracy("the two", answers, scorer="2016") == 1.0
    assert vqa_accuracy("dont", ["don't"] * 10, scorer="2016") == 1.0


def test_official_scorer_normalises_nothing_when_answers_are_unanimous():
    # identical answers: the prediction is only stripped of edge whitespace, newlines and tabs
    assert vqa_accuracy("Two.", ["2"] * 10) == 0.0
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0
    assert vqa_accuracy("two", ["two"] * 10) == 1.0


def test_unanimous_answers_are_compared_as_given_by_2016_scorer():
    # The 2016 script only processes ground truth when annotators disagree (the released
    # annotations are already normalised), so a raw "two" in the ground truth never matches.
    assert vqa_accuracy("two", ["two"] * 10, scorer="2016") == 0.0


def test_2016_scorer_gives_disagreeing_answers_the_punctuation_step_only():
    # "yes." loses its period; "Yes" keeps its capital and "two" its letters
    assert vqa_accuracy("yes", ["yes."] * 3 + ["no"] * 7, scorer="2016") == pytest.approx(0.9)
    assert vqa_accuracy("yes", ["Yes"] * 3 + ["no"] * 7, scorer="2016") == 0.0
    assert vqa_accuracy("2", ["two"] * 3 + ["2"] + ["3"] * 6, scorer="2016") == pytest.approx(0.3)


def test_official_scorer_normalises_disagreeing_answers_and_prediction_alike():
    assert vqa_accuracy("yes", ["yes."] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("yes", ["Yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)
    # "two" x3 and "2" all become "2": four matches
    assert vqa_accuracy("2", ["two"] * 3 + ["2"] + ["3"] * 6) == 1.0
    assert vqa_accuracy("The Two!", ["two"] * 3 + ["2"] + ["3"] * 6) == 1.0


def test_official_scorer_strips_answers_before_testing_unanimity():
    # " yes" and "yes\t" are the same answer once stripped: unanimous, so "Yes" is not lowercased
    answers = [" yes", "yes\t"] + ["yes"] * 8
    assert vqa_accuracy("yes", answers) == 1.0
    assert vqa_accuracy("Yes", answers) == 0.0
    # the 2016 script sees three different strings and de-punctuates only; the edge spaces stay
    assert vqa_accuracy("yes", answers, scorer="2016") == 1.0
    assert vqa_accuracy("yes", [" yes"] * 3 + ["no"] * 7, scorer="2016") == 0.0
    assert vqa_accuracy("yes", [" yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)


def test_at_most_32_periods_are_removed():
    # the script passes re.UNICODE (32) as re.sub's count
    assert normalize_answer("." * 40 + "x") == "." * 8 + "x"


def test_unknown_scorer_is_rejected():
    with pytest.raises(ValueError, match="official, 2016"):
        vqa_accuracy("yes", ["yes"] * 10, scorer="2017")


def test_fewer_than_ten_answers_use_the_same_leave_one_out_rule():
    # leaving out either "cat" leaves 1 match (1/3), leaving out "dog" leaves 2 (2/3)
    assert vqa_accuracy("cat", ["cat", "cat", "dog"]) == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    # a single answer: leaving it out leaves nothing to match
    assert vqa_accuracy("cat", ["cat"]) == 0.0


@pytest.mark.parametrize(
    ("answers", "message"),
    [([], "empty"), ("yes", "single string"), (["yes", None], "must be a string")],
)
def test_accuracy_rejects_bad_answers(answers, message):
    with pytest.raises(ValueError, match=message):
        vqa_accuracy("yes", answers)


def test_score_is_the_mean_in_percent():
    predictions = ["yes", "2", "blue"]
    answers = [["yes"] * 10, ["2", "2", "3"] + ["4"] * 7, ["red"] * 10]
    assert per_sample_vqa_accuracy(predictions, answers) == pytest.approx([1.0, 0.6, 0.0])
    assert vqa_accuracy_score(predictions, answers) == pytest.approx(160 / 3)
    # "Yes" against ten "yes": 1 for the 2016 scorer, 0 for the current one
    assert vqa_accuracy_score(["Yes"], [["yes"] * 10], scorer="2016") == 100.0
    assert per_sample_vqa_accuracy(["Yes"], [["yes"] * 10]) == [0.0]


@pytest.mark.parametrize("function", [per_sample_vqa_accuracy, vqa_accuracy_score])
def test_score_rejects_mismatched_or_empty_input(function):
    with pytest.raises(ValueError, match="2 predictions but 1"):
        function(["yes", "no"], [["yes"] * 10])
    with pytest.raises(ValueError, match="no predictions"):
        function([], [])
