"""NLVR2: BLIP's statement files, the image pair passed in its annotated order, accuracy, the
majority-label level, resume and bad input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from image_task_doubles import (
    COLOURS,
    ColourEncoder,
    blip_tiny,
    evaluate_and_score,
    make_context,
    task_spec,
    write_corrupt_image,
)
from media_files import write_image

from harness.capabilities import VisualFeatures
from harness.errors import DataError
from harness.toy.sizes import NLVR2_PAIRS
from harness.toy.suite import BUILDERS
from harness_tasks.nlvr2 import blip_sentence_group, official_sentence_group

PAIRS = {"a": ("red", "blue"), "b": ("green", "green"), "c": ("blue", "yellow"), "d": ("yellow", "red")}
STATEMENTS = [
    ("a", "The left image is red.", "True"),
    ("a", "The right image is red.", "False"),
    ("b", "Both images are the same colour.", "True"),
    ("c", "Both images are the same colour.", "False"),
    ("d", "The right image is red!", "True"),
]


class ColourVerifier(ColourEncoder):
    """Judges statements about the colours of the left and right image."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    def verify(self, left: VisualFeatures, right: VisualFeatures, statements: Sequence[str]) -> torch.Tensor:
        self.calls["statements"] += len(statements)
        self.statements += statements
        truths = []
        for lc, rc, statement in zip(self.colour_names(left), self.colour_names(right), statements, strict=True):
            if statement == "both images are the same colour":
                truths.append(lc == rc)
            else:
                side, colour = statement.split()[1], statement.split()[-1]
                truths.append((lc if side == "left" else rc) == colour)
        return torch.tensor([0.8 if truth else 0.2 for truth in truths])


class UndecidedVerifier(ColourVerifier):
    def verify(self, left: VisualFeatures, right: VisualFeatures, statements: Sequence[str]) -> torch.Tensor:
        return torch.full((len(statements),), 0.5)


def pair_paths(pair: str) -> list[str]:
    return [f"dev/dev-{pair}-0-img{k}.png" for k in (0, 1)]


def write_nlvr2(root: Path, extra: Sequence = ()) -> Path:
    nlvr2 = root / "nlvr2"
    for pair, colours in PAIRS.items():
        for rel, colour in zip(pair_paths(pair), colours, strict=True):
            write_image(nlvr2 / "images" / rel, COLOURS[colour], fmt="PNG")
    records = [{"images": pair_paths(p), "sentence": s, "label": label} for p, s, label in STATEMENTS]
    (nlvr2 / "annotations").mkdir(parents=True, exist_ok=True)
    (nlvr2 / "annotations" / "nlvr_dev.json").write_text(json.dumps(records + list(extra)))
    return nlvr2


def load(root: Path, split: str = "dev", skip_bad: bool = False):
    spec = task_spec("nlvr2")
    task = spec.build()
    return task, task.load(root, split, spec.protocol, skip_bad=skip_bad), spec.protocol


def test_statements_are_judged_on_the_pair_as_annotated(tmp_path):
    write_nlvr2(tmp_path)
    task, dataset, protocol = load(tmp_path)
    model = ColourVerifier()

    predictions, metrics = evaluate_and_score(task, dataset, model, make_context(tmp_path / "run", protocol))

    assert predictions["0"] == {"probability": pytest.approx(0.8), "label": True}
    assert predictions["1"] == {"probability": pytest.approx(0.2), "label": False}
    assert metrics == {"accuracy": 100.0, "consistency": 100.0}
    assert model.calls["images"] == 2 * len(PAIRS)  # pair "a" serves two statements
    assert model.statements[0] == "the left image is red"  # pre_caption
    assert task.per_sample_metrics(dataset, predictions, protocol) == {str(i): {"accuracy": 100.0} for i in range(5)}
    # five sentences (the set from the image name, and the text), each on one pair
    assert task.reference_levels(dataset, protocol) == {"accuracy": 60.0, "consistency": 60.0}


def test_probability_one_half_is_judged_false_as_blips_argmax_does(tmp_path):
    write_nlvr2(tmp_path)
    task, dataset, protocol = load(tmp_path)
    predictions, metrics = evaluate_and_score(task, dataset, UndecidedVerifier(), make_context(tmp_path / "run", protocol))
    assert {p["label"] for p in predictions.values()} == {False}
    assert metrics == {"accuracy": 40.0, "consistency": 40.0}


def test_an_image_recurring_in_a_later_batch_is_encoded_once_and_kept(tmp_path):
    # Pair "a"'s left (red) image returns as the right image of a pair whose left image is
    # encoded two batches later.
    write_nlvr2(tmp_path, extra=[{"images": [pair_paths("c")[0], pair_paths("a")[0]], "sentence": "The right image is red", "label": "True"}])
    task, dataset, protocol = load(tmp_path)
    model = ColourVerifier()
    predictions, metrics = evaluate_and_score(task, dataset, model, make_context(tmp_path / "run", protocol, batch_size=2))
    assert model.calls["images"] == 2 * len(PAIRS)
    assert predictions["5"]["label"] is True
    assert metrics == {"accuracy": 100.0, "consistency": 100.0}


OFFICIAL = [  # identifier split-set-pair-sentence, (left, right), sentence, label
    ("dev-7-0-0", ("green", "green"), "Both images are the same colour.", "True"),
    ("dev-7-1-0", ("blue", "yellow"), "Both images are the same colour.", "False"),
    ("dev-7-2-1", ("blue", "yellow"), "The left image is red.", "False"),
    ("dev-7-3-1", ("yellow", "red"), "The left image is red.", "False"),
    ("dev-8-0-0", ("red", "blue"), "The left image is red.", "True"),
]


def write_official_nlvr2(root: Path) -> Path:
    """The official JSON-lines dev.json and images named as the official release names them."""
    nlvr2 = root / "nlvr2"
    lines = []
    for identifier, colours, sentence, label in OFFICIAL:
        pair = identifier.rsplit("-", 1)[0]
        for k, colour in enumerate(colours):
            write_image(nlvr2 / "images" / "dev" / f"{pair}-img{k}.png", COLOURS[colour], fmt="PNG")
        lines.append(json.dumps({"identifier": identifier, "sentence": sentence, "label": label,
                                 "left_url": "https://example.org/l.jpg", "right_url": "https://example.org/r.jpg"}))
    (nlvr2 / "annotations").mkdir(parents=True, exist_ok=True)
    (nlvr2 / "annotations" / "dev.json").write_text("\n".join(lines) + "\n")
    return nlvr2


def test_official_json_lines_are_read_and_consistency_is_per_sentence(tmp_path):
    write_official_nlvr2(tmp_path)
    task, dataset, protocol = load(tmp_path)
    assert [s.sample_id for s in dataset.samples] == [o[0] for o in OFFICIAL]
    assert dataset.samples[3].images[1].name == "dev-7-3-img1.png"
    predictions, metrics = evaluate_and_score(task, dataset, ColourVerifier(), make_context(tmp_path / "run", protocol))
    assert metrics == {"accuracy": 100.0, "consistency": 100.0}
    # Always "false": right on dev-7-1-0, dev-7-2-1, dev-7-3-1 (3 of 5). Sentences (pair number
    # blanked): dev-7--0 (one pair wrong), dev-7--1 (both right), dev-8--0 (wrong): 1 of 3.
    predictions, metrics = evaluate_and_score(task, dataset, UndecidedVerifier(), make_context(tmp_path / "run2", protocol))
    assert metrics == {"accuracy": 60.0, "consistency": pytest.approx(100 / 3)}


def test_sentence_groups_follow_the_official_metrics():
    assert official_sentence_group("dev-850-2-0") == "dev-850--0"
    assert official_sentence_group("test1-0-1-1") == "test1-0--1"
    assert blip_sentence_group("dev/dev-850-3-img0.png", "Two dogs.") == "dev-850: Two dogs."


def test_a_malformed_official_identifier_is_named(tmp_path):
    nlvr2 = write_official_nlvr2(tmp_path)
    path = nlvr2 / "annotations" / "dev.json"
    path.write_text(path.read_text() + json.dumps({"identifier": "dev-9-0", "sentence": "x", "label": "True"}) + "\n")
    with pytest.raises(DataError, match=r"dev.json: record 5: identifier 'dev-9-0' is not split-set-pair-sentence"):
        load(tmp_path)


def test_sentences_are_cut_to_the_protocols_forty_words(tmp_path):
    write_nlvr2(tmp_path, extra=[{"images": pair_paths("a"), "sentence": " ".join(["word"] * 50), "label": "True"}])
    _, dataset, _ = load(tmp_path)
    assert len(dataset.samples[-1].sentence.split()) == 40


def test_a_finished_run_recomputes_nothing(tmp_path):
    write_nlvr2(tmp_path)
    task, dataset, protocol = load(tmp_path)
    ctx = make_context(tmp_path / "run", protocol)
    task.evaluate(ColourVerifier(), dataset, ctx)
    ctx.predictions.close()
    again = ColourVerifier()
    task.evaluate(again, dataset, make_context(tmp_path / "run", protocol))
    assert again.calls == {}


def test_an_unreadable_image_skips_every_statement_about_its_pair(tmp_path):
    nlvr2 = write_nlvr2(tmp_path)
    bad = write_corrupt_image(nlvr2 / "images" / "dev" / "dev-a-0-img1.png")
    task, dataset, protocol = load(tmp_path)

    with pytest.raises(DataError, match=rf"{bad}.*needed by sample 0"):
        task.evaluate(ColourVerifier(), dataset, make_context(tmp_path / "strict", protocol))

    ctx = make_context(tmp_path / "skip", protocol, skip_bad=True)
    predictions, metrics = evaluate_and_score(task, dataset, ColourVerifier(), ctx)
    assert sorted(ctx.predictions.skipped) == ["0", "1"]
    assert sorted(predictions) == ["2", "3", "4"]
    assert metrics == {"accuracy": 100.0, "consistency": 100.0}
    (problem,) = task.check(tmp_path, "dev", protocol)
    assert str(bad) in problem and "needed by sample 0, 1" in problem


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"images": pair_paths("a")[:1], "sentence": "s", "label": "True"}, r"record 5: field 'images' has 1 paths"),
        ({"images": pair_paths("a"), "sentence": "s", "label": True}, r"record 5: field 'label' has type bool \(expected str\)"),
        ({"images": pair_paths("a"), "sentence": "s", "label": "yes"}, r"record 5: field 'label' is 'yes'"),
        ({"images": pair_paths("a"), "label": "True"}, r"record 5: field 'sentence' missing"),
        ({"images": "dev/x.png", "sentence": "s", "label": "True"}, r"record 5: field 'images' has type str"),
        ({"images": ["dev/none.png", pair_paths("a")[1]], "sentence": "s", "label": "True"}, r"record 5: image 'dev/none.png' not found"),
    ],
)
def test_a_malformed_record_names_the_file_and_record_or_is_skipped(tmp_path, record, message):
    write_nlvr2(tmp_path, extra=[record])
    with pytest.raises(DataError, match=rf"nlvr_dev.json: {message}"):
        load(tmp_path)
    _, dataset, _ = load(tmp_path, skip_bad=True)
    assert len(dataset.samples) == len(STATEMENTS)
    assert [s.sample_id for s in dataset.skipped] == ["nlvr_dev.json[5]"]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    BUILDERS["nlvr2"](root / "nlvr2", 0)
    return root


@pytest.mark.parametrize("split", ["dev", "test_p"])
def test_the_toy_suite_loads_and_checks_clean(toy_root, split):
    task, dataset, protocol = load(toy_root, split)
    assert len(dataset.samples) == NLVR2_PAIRS["dev"] and not dataset.skipped
    assert task.check(toy_root, split, protocol) == []
    assert task.reference_levels(dataset, protocol) == {"accuracy": 50.0, "consistency": 50.0}


def test_blip_tiny_judges_toy_statements_deterministically(toy_root, tmp_path):
    spec = task_spec("nlvr2")
    task = spec.build()
    runs = []
    for attempt in ("first", "second"):
        model, protocol = blip_tiny("nlvr2", spec.protocol)
        dataset = task.load(toy_root, "dev", protocol)
        dataset.samples = dataset.samples[:8]
        ctx = make_context(tmp_path / attempt, protocol, batch_size=4)
        task.evaluate(model, dataset, ctx)
        runs.append(dict(ctx.predictions.predictions))
    assert runs[0] == runs[1]
    assert all(0.0 <= p["probability"] <= 1.0 and p["label"] == (p["probability"] > 0.5) for p in runs[0].values())
    assert task.score(dataset, runs[0], protocol)["accuracy"] in {100.0 * k / 8 for k in range(9)}
