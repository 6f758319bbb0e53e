"""VQA v2: BLIP's question files, rank and generate modes, the official accuracy, the submission
file, one encoding per image, resume, and bad input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
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

from harness.capabilities import GenerationSettings, VisualFeatures
from harness.errors import ConfigError, DataError
from harness.metrics import normalize_answer
from harness.toy.suite import BUILDERS

ANSWER_LIST = ["red", "green", "blue", "yellow", "2", "1", "yes", "no"]
IMAGES = {1: "red", 2: "green", 3: "blue", 4: "yellow"}
QUESTIONS = [
    (10, 1, "What color is the square?", ["red"] * 10),
    (20, 2, "What color is the square?", ["green"] * 9 + ["dark green"]),
    (21, 2, "How many squares are there?", ["1"] * 10),
    (30, 3, "What color is the square?", ["blue"] * 10),
    (40, 4, "Is the square yellow?", ["yes"] * 10),
    (11, 1, "How many squares are there?", ["2"] * 6 + ["two"] * 4),
]
"""Image 1's questions are first and last, so encoding it once takes grouping by image."""


class ColourVQA(ColourEncoder):
    """Answers colour, count and yes/no questions about flat one-square images; spells counts out."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: list[GenerationSettings] = []
        self.k: list[int] = []
        self.questions: list[str] = []

    def _answers(self, visual: VisualFeatures, questions: Sequence[str]) -> list[str]:
        self.calls["questions"] += len(questions)
        self.questions += questions
        answers = []
        for colour, question in zip(self.colour_names(visual), questions, strict=True):
            if question.startswith("what color"):
                answers.append(colour)
            elif question.startswith("how many"):
                answers.append("two" if colour == "red" else "one")
            else:
                answers.append("yes")
        return answers

    def answer(self, visual: VisualFeatures, questions: Sequence[str], settings: GenerationSettings) -> list[str]:
        self.settings.append(settings)
        return self._answers(visual, questions)

    def rank_answers(self, visual: VisualFeatures, questions: Sequence[str], answer_list: Sequence[str], k: int) -> list[int]:
        self.k.append(k)
        normalized = [normalize_answer(a) for a in answer_list]
        return [normalized.index(normalize_answer(a)) for a in self._answers(visual, questions)]


def image_path(split: str, image_id: int) -> str:
    folder = {"val": "val2014", "test": "test2015"}[split]
    return f"{folder}/COCO_{folder}_{image_id:012d}.jpg"


def write_vqa(root: Path, split: str = "val", extra: Sequence[dict] = (), answer_list: bool = True) -> Path:
    vqa = root / "vqav2"
    for image_id, colour in IMAGES.items():
        write_image(vqa / "images" / image_path(split, image_id), COLOURS[colour])
    records = []
    for question_id, image_id, question, answers in QUESTIONS:
        record = {"question_id": question_id, "question": question, "image": image_path(split, image_id), "dataset": "vqa"}
        if split == "val":
            record["answer"] = answers
        records.append(record)
    (vqa / "annotations").mkdir(parents=True, exist_ok=True)
    (vqa / "annotations" / f"vqa_{split}.json").write_text(json.dumps(records + list(extra)))
    if answer_list:
        (vqa / "annotations" / "answer_list.json").write_text(json.dumps(ANSWER_LIST))
    return vqa


def load(root: Path, split: str = "val", skip_bad: bool = False, **protocol):
    spec = task_spec("vqav2")
    task = spec.build()
    merged = {**spec.protocol, **protocol}
    return task, task.load(root, split, merged, skip_bad=skip_bad), merged


def test_rank_mode_answers_from_the_list_with_each_image_encoded_once(tmp_path):
    write_vqa(tmp_path)
    task, dataset, protocol = load(tmp_path)
    model = ColourVQA()
    ctx = make_context(tmp_path / "run", protocol, batch_size=2)

    predictions, metrics = evaluate_and_score(task, dataset, model, ctx)

    assert predictions == {"10": "red", "11": "2", "20": "green", "21": "1", "30": "blue", "40": "yes"}
    assert metrics == {"accuracy": pytest.approx(100.0)}
    assert model.calls["images"] == len(IMAGES)
    assert set(model.k) == {len(ANSWER_LIST)}  # k_test 128 capped at the list's length
    assert "what color is the square?" in model.questions  # pre_question: lowercased, '?' kept
    per_sample = task.per_sample_metrics(dataset, predictions, protocol)
    assert per_sample == {str(q[0]): {"accuracy": pytest.approx(100.0)} for q in QUESTIONS}


def test_generate_mode_uses_the_vqa_decoding_settings_and_scores_by_the_chosen_scorer(tmp_path):
    write_vqa(tmp_path, answer_list=False)
    task, dataset, protocol = load(tmp_path, mode="generate")
    model = ColourVQA()

    predictions, metrics = evaluate_and_score(task, dataset, model, make_context(tmp_path / "run", protocol))

    assert predictions["11"] == "two" and predictions["21"] == "one"
    # current vqaEval.py: "two" matches the disagreeing "2"/"two" answers once both are
    # normalised, but "one" is compared as given with the unanimous "1" answers and scores 0
    assert metrics["accuracy"] == pytest.approx(500.0 / 6)
    # the 2016 script normalises every prediction: "one" -> "1" matches
    assert task.score(dataset, predictions, {**protocol, "vqa_scorer": "2016"}) == {"accuracy": pytest.approx(100.0)}
    assert set(model.settings) == {GenerationSettings(num_beams=3, max_length=10, min_length=1, length_normalization="blip")}


def test_generate_mode_passes_the_question_template_and_length_penalty(tmp_path):
    write_vqa(tmp_path, answer_list=False)
    task, dataset, protocol = load(
        tmp_path, mode="generate", prompt="Question: {} Short answer:", length_penalty=0.0, num_beams=5
    )
    model = ColourVQA()

    evaluate_and_score(task, dataset, model, make_context(tmp_path / "run", protocol))

    assert set(model.settings) == {
        GenerationSettings(num_beams=5, max_length=10, min_length=1, prompt="Question: {} Short answer:", length_penalty=0.0)
    }


@pytest.mark.parametrize(
    ("protocol", "message"),
    [({"num_beams": 0}, "num_beams and max_length >= 1"), ({"length_penalty": "long"}, "malformed decoding setting")],
)
def test_malformed_decoding_settings_are_one_line_errors(tmp_path, protocol, message):
    write_vqa(tmp_path, answer_list=False)
    # Refused while loading, before any model runs.
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, mode="generate", **protocol)


def test_the_majority_answer_is_the_reference_level(tmp_path):
    write_vqa(tmp_path)
    task, dataset, protocol = load(tmp_path)
    # "red", "1", "blue" and "yes" are each given 10 times; "red" is reached first. Only one
    # question is answered right by it.
    assert task.reference_levels(dataset, protocol) == {"accuracy": pytest.approx(100.0 / 6)}


def test_a_split_without_answers_gets_no_metrics_but_the_official_submission_file(tmp_path):
    write_vqa(tmp_path, split="test")
    task, dataset, protocol = load(tmp_path, split="test")
    ctx = make_context(tmp_path / "run", protocol)

    predictions, metrics = evaluate_and_score(task, dataset, ColourVQA(), ctx)

    assert metrics == {}
    assert task.reference_levels(dataset, protocol) == {}
    assert task.per_sample_metrics(dataset, predictions, protocol) == {}
    (path,) = task.write_outputs(dataset, predictions, tmp_path / "run")
    assert path.name == "vqav2_test_submission.json"
    submission = json.loads(path.read_text())
    assert submission == [{"question_id": q[0], "answer": predictions[str(q[0])]} for q in QUESTIONS]
    assert all(isinstance(row["question_id"], int) for row in submission)


def test_a_finished_run_recomputes_nothing(tmp_path):
    write_vqa(tmp_path)
    task, dataset, protocol = load(tmp_path)
    ctx = make_context(tmp_path / "run", protocol)
    task.evaluate(ColourVQA(), dataset, ctx)
    ctx.predictions.close()

    again = ColourVQA()
    resumed = make_context(tmp_path / "run", protocol)
    task.evaluate(again, dataset, resumed)
    assert again.calls == {}
    assert len(resumed.predictions.predictions) == len(QUESTIONS)


def test_an_unreadable_image_skips_all_its_questions_under_skip_bad(tmp_path):
    vqa = write_vqa(tmp_path)
    bad = write_corrupt_image(vqa / "images" / image_path("val", 2))
    task, dataset, protocol = load(tmp_path)

    with pytest.raises(DataError, match=rf"{bad}.*needed by sample 2[01]"):
        task.evaluate(ColourVQA(), dataset, make_context(tmp_path / "strict", protocol))

    ctx = make_context(tmp_path / "skip", protocol, skip_bad=True)
    predictions, metrics = evaluate_and_score(task, dataset, ColourVQA(), ctx)
    assert sorted(ctx.predictions.skipped) == ["20", "21"]
    assert sorted(predictions) == ["10", "11", "30", "40"]
    assert metrics["accuracy"] == pytest.approx(100.0)
    (problem,) = task.check(tmp_path, "val", protocol)
    assert problem.startswith(f"{bad}: cannot decode image") and problem.endswith("(needed by sample 20, 21)")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"question_id": "50", "question": "q", "image": image_path("val", 1), "answer": ["a"]}, r"record 6: field 'question_id' has type str \(expected int\)"),
        ({"question_id": 50, "question": "q", "image": image_path("val", 1)}, r"record 6: field 'answer' missing \(expected list of str\)"),
        ({"question_id": 50, "question": "q", "image": image_path("val", 1), "answer": []}, r"record 6: field 'answer' is empty"),
        ({"question_id": 50, "question": "q", "image": image_path("val", 1), "answer": ["a", 2]}, r"record 6: field 'answer' has type list"),
        ({"question_id": 10, "question": "q", "image": image_path("val", 1), "answer": ["a"]}, r"duplicate sample id '10' \(records 0 and 6\)"),
        ({"question_id": 50, "question": "q", "image": "val2014/missing.jpg", "answer": ["a"]}, r"record 6: image 'val2014/missing.jpg' not found"),
    ],
)
def test_a_malformed_record_names_the_file_and_record_or_is_skipped(tmp_path, record, message):
    write_vqa(tmp_path, extra=[record])
    with pytest.raises(DataError, match=rf"vqa_val.json.*{message}"):
        load(tmp_path)
    _, dataset, _ = load(tmp_path, skip_bad=True)
    assert len(dataset.samples) == len(QUESTIONS)
    assert [s.sample_id for s in dataset.skipped] == ["vqa_val.json[6]"]


def test_rank_mode_needs_the_answer_list_and_modes_are_checked(tmp_path):
    write_vqa(tmp_path, answer_list=False)
    with pytest.raises(DataError, match="answer_list.json: annotation file not found"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="mode must be one of rank, generate"):
        load(tmp_path, mode="beam")
    with pytest.raises(ConfigError, match="vqa_scorer: vqa scorer must be one of official, 2016"):
        load(tmp_path, vqa_scorer="2021")
    with pytest.raises(ConfigError, match="length_normalization must be one of blip, generated"):
        load(tmp_path, length_normalization="none")
    (tmp_path / "vqav2" / "annotations" / "answer_list.json").write_text(json.dumps({"yes": 1}))
    with pytest.raises(DataError, match="answer_list.json: expected a non-empty JSON list"):
        load(tmp_path)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    BUILDERS["vqav2"](root / "vqav2", 0)
    return root


@pytest.mark.parametrize(("split", "count"), [("val", 150), ("test", 30)])
def test_the_toy_suite_loads_and_checks_clean(toy_root, split, count):
    task, dataset, protocol = load(toy_root, split)
    assert len(dataset.samples) == count and not dataset.skipped
    assert all((s.answers is None) == (split == "test") for s in dataset.samples)
    assert task.check(toy_root, split, protocol) == []


@pytest.mark.parametrize("mode", ["rank", "generate"])
def test_blip_tiny_answers_toy_questions_deterministically(toy_root, tmp_path, mode):
    spec = task_spec("vqav2")
    task = spec.build()
    runs = []
    for attempt in ("first", "second"):
        model, protocol = blip_tiny("vqav2", {**spec.protocol, "mode": mode})
        dataset = task.load(toy_root, "val", protocol)
        dataset.samples = dataset.samples[:6]
        ctx = make_context(tmp_path / attempt, protocol, batch_size=4)
        task.evaluate(model, dataset, ctx)
        runs.append(dict(ctx.predictions.predictions))
    assert runs[0] == runs[1]
    assert len(runs[0]) == 6 and all(isinstance(answer, str) for answer in runs[0].values())
    if mode == "rank":
        assert set(runs[0].values()) <= set(dataset.extra["answer_list"])
    assert 0.0 <= task.score(dataset, runs[0], protocol)["accuracy"] <= 100.0
