"""Caption metrics through the real pycocoevalcap scorers (Java PTB tokenizer and METEOR).

METEOR loads its paraphrase table for several seconds on every call, so each real evaluation
runs once per module and the tests inspect its result.
"""

from __future__ import annotations

import warnings

import pytest

from harness.errors import ConfigError
from harness.metrics.captioning import caption_scores, cider_per_example, nocaps_scores, spice_models_present

COCO_KEYS = {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"}


def rouge_l(candidate_words: int, reference_words: int, lcs: int, beta: float = 1.2) -> float:
    """ROUGE-L F-measure with pycocoevalcap's beta, for one candidate and one reference."""
    precision, recall = lcs / candidate_words, lcs / reference_words
    if lcs == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


@pytest.fixture(scope="module")
def perfect_scores() -> dict[str, float]:
    # Each prediction equals its reference up to case, punctuation and whitespace, which the PTB
    # tokenizer removes. The carriage return would shift every later caption onto the wrong image
    # if it reached the line-based tokenizer unchanged.
    predictions = {
        "img1": "A man riding a horse.",
        "img2": "two dogs play in the grass",
        "img3": "a red bus\ron a street",
    }
    references = {
        "img1": ["a man riding a horse"],
        "img2": ["Two dogs play in the grass!"],
        "img3": ["a red bus on a street"],
    }
    return caption_scores(predictions, references, spice=False)


def test_keys_are_the_coco_metrics(perfect_scores):
    assert perfect_scores.keys() == COCO_KEYS


def test_identical_captions_score_full_marks_in_percent(perfect_scores):
    for name in ("bleu1", "bleu2", "bleu3", "bleu4"):
        assert perfect_scores[name] == pytest.approx(100.0, abs=1e-4)
    assert perfect_scores["meteor"] == pytest.approx(100.0)
    assert perfect_scores["rouge_l"] == pytest.approx(100.0)
    # CIDEr-D gives 10 to a candidate identical to its references: 1000 in percent
    assert perfect_scores["cider"] == pytest.approx(1000.0)


# NoCaps: two images per domain; in-domain captions are perfect, near- and out-domain partial.
NOCAPS_PREDICTIONS = {
    "in1": "a man riding a horse",
    "in2": "two dogs play in the grass",
    "near1": "a red bus on a street",
    "near2": "a plate",
    "out1": "a man riding",
    "out2": "zebra",
}
NOCAPS_REFERENCES = {
    "in1": ["a man riding a horse"],
    "in2": ["Two dogs play in the grass."],
    "near1": ["a red bus on a street"],
    "near2": ["a plate of food"],
    "out1": ["a man riding a horse"],
    "out2": ["a giraffe eating leaves"],
}
NOCAPS_DOMAINS = {
    "in1": "in-domain",
    "in2": "in-domain",
    "near1": "near-domain",
    "near2": "near-domain",
    "out1": "out-domain",
    "out2": "out-domain",
}


@pytest.fixture(scope="module")
def nocaps_result() -> dict[str, float]:
    return nocaps_scores(NOCAPS_PREDICTIONS, NOCAPS_REFERENCES, NOCAPS_DOMAINS, spice=False)


def test_nocaps_keys_per_domain_and_overall(nocaps_result):
    expected = {f"{prefix}_{name}" for prefix in ("in", "near", "out", "overall") for name in COCO_KEYS}
    assert nocaps_result.keys() == expected


def test_nocaps_domains_are_scored_separately(nocaps_result):
    # ROUGE-L is a per-image mean, so each domain's value can be worked out by hand.
    plate = rouge_l(candidate_words=2, reference_words=4, lcs=2)
    riding = rouge_l(candidate_words=3, reference_words=5, lcs=3)
    assert nocaps_result["in_rouge_l"] == pytest.approx(100.0)
    assert nocaps_result["near_rouge_l"] == pytest.approx(100 * (1 + plate) / 2)
    assert nocaps_result["out_rouge_l"] == pytest.approx(100 * (riding + 0) / 2)
    assert nocaps_result["overall_rouge_l"] == pytest.approx(100 * (3 + plate + riding) / 6)
    assert nocaps_result["in_bleu4"] == pytest.approx(100.0, abs=1e-4)
    assert nocaps_result["out_bleu4"] < 1.0
    assert nocaps_result["in_cider"] == pytest.approx(1000.0)
    assert nocaps_result["in_cider"] > nocaps_result["overall_cider"] > nocaps_result["out_cider"]


def test_missing_java_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="need Java.*install a JRE"):
        caption_scores({"1": "a cat"}, {"1": ["a cat"]}, spice=False)


@pytest.mark.skipif(spice_models_present(), reason="SPICE models are installed here")
def test_absent_spice_models_give_a_warning_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # stop right after the SPICE decision
    with pytest.warns(UserWarning, match="SPICE skipped: .*stanford-corenlp|SPICE skipped: .*CoreNLP"):
        with pytest.raises(ConfigError, match="Java"):
            caption_scores({"1": "a cat"}, {"1": ["a cat"]})


@pytest.mark.skipif(spice_models_present(), reason="SPICE models are installed here")
def test_requested_spice_without_models_is_a_config_error_not_a_download():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError, match="SPICE was requested.*CoreNLP 3.6.0 models"):
            caption_scores({"1": "a cat"}, {"1": ["a cat"]}, spice=True)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        ({}, {}, "predictions is empty"),
        ({"1": "a cat", "2": "a dog"}, {"1": ["a cat"]}, "example '2' has a prediction but no references"),
        ({"1": "a cat"}, {"1": ["a cat"], "7": ["a dog"]}, "example '7' has references but no prediction"),
        ({"1": "a cat"}, {"1": "a cat"}, "references of example '1' must be a non-empty list"),
        ({"1": "a cat"}, {"1": []}, "references of example '1' must be a non-empty list"),
        ({"1": None}, {"1": ["a cat"]}, "prediction of example '1' must be a string"),
    ],
)
def test_caption_scores_rejects_mismatched_examples(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        caption_scores(predictions, references, spice=False)


@pytest.mark.parametrize(
    ("domains", "message"),
    [
        ({"1": "in-domain"}, "example '2' has no domain"),
        ({"1": "in-domain", "2": "in"}, "example '2' has domain 'in'; expected one of"),
    ],
)
def test_nocaps_rejects_bad_domains(domains, message):
    predictions = {"1": "a cat", "2": "a dog"}
    references = {"1": ["a cat"], "2": ["a dog"]}
    with pytest.raises(ValueError, match=message):
        nocaps_scores(predictions, references, domains, spice=False)


def test_cider_per_example_by_hand():
    # Two images, one reference each, no n-gram shared between them: every n-gram's document
    # frequency is 1, so idf = log(2) for all; a caption equal to its reference has cosine 1 at
    # n = 1..4 and no length penalty, CIDEr-D = 10 * mean(1, 1, 1, 1) = 10 (1000 percent); a
    # caption sharing nothing with its reference gets 0.
    scores = cider_per_example(
        {"1": "red cube on grass", "2": "blue sky with clouds"},
        {"1": ["red cube on grass"], "2": ["a dog runs fast"]},
    )
    assert scores == pytest.approx({"1": 1000.0, "2": 0.0})


def test_cider_per_example_averages_to_the_split_cider():
    predictions = {"1": "a man riding a horse", "2": "two dogs in the grass", "3": "a red bus on a street"}
    references = {
        "1": ["a man rides a brown horse", "a person on a horse"],
        "2": ["two dogs play in the grass", "dogs running on grass"],
        "3": ["a red double decker bus", "a bus drives down the street"],
    }
    per_example = cider_per_example(predictions, references)
    assert per_example.keys() == predictions.keys()
    split = caption_scores(predictions, references, spice=False)["cider"]
    assert sum(per_example.values()) / 3 == pytest.approx(split)
    assert per_example["2"] > per_example["1"] > 0
