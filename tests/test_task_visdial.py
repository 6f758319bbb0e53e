"""VisDial v1.0: the official dialog and dense-annotation files, one sample per round with its
history, exact scores in the predictions, MRR / R@k / mean rank / NDCG, the random-ranking
levels, resume and bad input."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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

from harness.capabilities import DialogContext, VisualFeatures
from harness.errors import ConfigError, DataError
from harness.metrics import visdial_metrics
from harness.toy.suite import BUILDERS
from harness_tasks.visdial import float32_scores, random_ranking_levels

IMAGES = {7: "red", 8: "green", 9: "blue"}
ANSWERS = [*COLOURS, "yes", "no", "it is red", "it is green", "it is blue"] + [f"filler {i}" for i in range(95)]
QUESTIONS = ["what color is the square", "is it a square", "is it red"]
IMAGE_NAME = "VisualDialog_val2018_{:012d}.jpg"


def right_answer(colour: str, question: str) -> str:
    return {"what color is the square": colour, "is it a square": "yes", "is it red": "yes" if colour == "red" else "no"}[question]


class ColourRanker(ColourEncoder):
    """Scores the right answer 2, colour and yes/no answers 1, "it is <colour>" 0.5, others 0."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        super().__init__()
        self.contexts: list[DialogContext] = []
        self.interrupt_after = interrupt_after

    def score_dialog_answers(
        self, visual: VisualFeatures, contexts: Sequence[DialogContext], candidates: Sequence[Sequence[str]]
    ) -> torch.Tensor:
        if self.interrupt_after is not None and self.calls["rounds"] >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls["rounds"] += len(contexts)
        self.contexts += contexts
        rows = []
        for colour, context, options in zip(self.colour_names(visual), contexts, candidates, strict=True):
            right = right_answer(colour, context.question)
            rows.append([
                2.0 if option == right else 1.0 if option in (*COLOURS, "yes", "no") else 0.5 if option.startswith("it is") else 0.0
                for option in options
            ])
        return torch.tensor(rows)


def write_visdial(root: Path, dialogs: list | None = None, dense: list | None = None) -> Path:
    visdial = root / "visdial"
    rng = random.Random(0)
    for image_id, colour in IMAGES.items():
        write_image(visdial / "images" / IMAGE_NAME.format(image_id), COLOURS[colour])
    if dialogs is None:
        dialogs = []
        for image_id, colour in IMAGES.items():
            rounds = []
            for q, question in enumerate(QUESTIONS):
                options = list(range(100))
                rng.shuffle(options)
                answer = ANSWERS.index(right_answer(colour, question))
                rounds.append({"question": q, "answer": answer, "answer_options": options, "gt_index": options.index(answer)})
            dialogs.append({"image_id": image_id, "caption": f"a {colour} square", "dialog": rounds})
    if dense is None:
        # Dialog 7 round 1: the ground truth "red" and the paraphrase "it is red"; dialog 8
        # round 3: only the ground truth "no"; dialog 9 has none.
        dense = [
            {"image_id": 7, "round_id": 1, "gt_relevance": relevance(dialogs[0]["dialog"][0], {"red": 1.0, "it is red": 0.5})},
            {"image_id": 8, "round_id": 3, "gt_relevance": relevance(dialogs[1]["dialog"][2], {"no": 1.0})},
        ]
    data = {"version": "1.0", "split": "val2018", "data": {"questions": QUESTIONS, "answers": ANSWERS, "dialogs": dialogs}}
    (visdial / "annotations").mkdir(parents=True, exist_ok=True)
    (visdial / "annotations" / "visdial_1.0_val.json").write_text(json.dumps(data))
    (visdial / "annotations" / "visdial_1.0_val_dense_annotations.json").write_text(json.dumps(dense))
    return visdial


def relevance(turn: dict, gains: dict[str, float]) -> list[float]:
    return [gains.get(ANSWERS[option], 0.0) for option in turn["answer_options"]]


def load(root: Path, skip_bad: bool = False, **protocol):
    spec = task_spec("visdial")
    task = spec.build()
    merged = {**spec.protocol, **protocol}
    return task, task.load(root, "v1.0_val", merged, skip_bad=skip_bad), merged


def test_every_round_is_ranked_and_scored_with_ndcg_over_the_dense_rounds(tmp_path):
    write_visdial(tmp_path)
    task, dataset, protocol = load(tmp_path)
    model = ColourRanker()
    ctx = make_context(tmp_path / "run", protocol, batch_size=2)

    predictions, metrics = evaluate_and_score(task, dataset, model, ctx)

    assert sorted(predictions) == sorted(f"{i}_{r}" for i in IMAGES for r in (1, 2, 3))
    assert all(len(row) == 100 for row in predictions.values())
    assert model.calls["images"] == len(IMAGES)
    # Dialog 7 round 1 ranks "red" first, then a colour word (relevance 0) before "it is red":
    # NDCG@2 = 1 / (1 + 0.5 / log2 3); dialog 8 round 3 ranks its only relevant answer first.
    expected_ndcg = 100 * (1 / (1 + 0.5 / math.log2(3)) + 1.0) / 2
    assert metrics == pytest.approx({"mrr": 100.0, "r1": 100.0, "r5": 100.0, "r10": 100.0, "mean_rank": 1.0, "ndcg": expected_ndcg})

    per_sample = task.per_sample_metrics(dataset, predictions, protocol)
    assert per_sample["7_1"]["ndcg"] == pytest.approx(100 / (1 + 0.5 / math.log2(3)))
    assert "ndcg" not in per_sample["9_2"]
    assert per_sample["9_2"] == {"mrr": 100.0, "r1": 100.0, "r5": 100.0, "r10": 100.0, "mean_rank": 1.0}


def test_the_context_carries_the_caption_and_the_most_recent_history_rounds(tmp_path):
    write_visdial(tmp_path)
    _, dataset, _ = load(tmp_path)
    third = next(s for s in dataset.samples if s.sample_id == "7_3")
    assert third.context == DialogContext(
        caption="a red square",
        history=(("what color is the square", "red"), ("is it a square", "yes")),
        question="is it red",
    )
    _, short, _ = load(tmp_path, history_rounds=1)
    assert next(s for s in short.samples if s.sample_id == "7_3").context.history == (("is it a square", "yes"),)
    _, none, _ = load(tmp_path, history_rounds=0)
    assert next(s for s in none.samples if s.sample_id == "7_3").context.history == ()
    with pytest.raises(ConfigError, match="history_rounds"):
        load(tmp_path, history_rounds=-1)


def test_stored_scores_keep_every_comparison_of_the_float32_scores():
    raw = np.array([0.1, np.nextafter(np.float32(0.1), np.float32(1)), 1 / 3, 1 / 3, -2.5e-7, 7.0], dtype=np.float32)
    stored = json.loads(json.dumps(float32_scores(torch.from_numpy(raw))))
    assert np.array_equal(np.asarray(stored, dtype=np.float32), raw)
    assert (np.argsort(stored, kind="stable") == np.argsort(raw, kind="stable")).all()
    assert stored[2] == stored[3] and stored[0] < stored[1]
    assert max(len(json.dumps(v)) for v in stored) <= 14


def test_random_ranking_levels_are_the_exact_expectations():
    gains = np.array([[0.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    permutations = list(itertools.permutations(range(4)))
    brute = {name: 0.0 for name in ("mrr", "r1", "r5", "r10", "mean_rank", "ndcg")}
    for order in permutations:
        scores = np.array([[4.0 - order.index(i) for i in range(4)]] * 2)
        for name, value in visdial_metrics(scores, [1, 3], gains).items():
            brute[name] += value / len(permutations)
    assert random_ranking_levels(4, gains) == pytest.approx(brute)


def test_random_ranking_levels_of_the_100_candidates(tmp_path):
    write_visdial(tmp_path)
    task, dataset, protocol = load(tmp_path)
    levels = task.reference_levels(dataset, protocol)
    harmonic = sum(1 / n for n in range(1, 101))
    dense_1 = 0.015 * (1 + 1 / math.log2(3)) / (1 + 0.5 / math.log2(3))
    assert levels == pytest.approx(
        {"mrr": harmonic, "r1": 1.0, "r5": 5.0, "r10": 10.0, "mean_rank": 50.5, "ndcg": 100 * (dense_1 + 0.01) / 2}
    )


def test_a_resumed_run_ranks_only_the_rounds_left(tmp_path):
    write_visdial(tmp_path)
    task, dataset, protocol = load(tmp_path)
    ctx = make_context(tmp_path / "run", protocol, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        task.evaluate(ColourRanker(interrupt_after=4), dataset, ctx)
    ctx.predictions.close()
    resumed = ColourRanker()
    ctx = make_context(tmp_path / "run", protocol, batch_size=2)
    _, metrics = evaluate_and_score(task, dataset, resumed, ctx)
    assert resumed.calls["rounds"] == 9 - 4
    assert metrics["mrr"] == 100.0


def test_an_unreadable_image_skips_its_dialogs_rounds(tmp_path):
    visdial = write_visdial(tmp_path)
    bad = write_corrupt_image(visdial / "images" / IMAGE_NAME.format(8))
    task, dataset, protocol = load(tmp_path)
    with pytest.raises(DataError, match=rf"{bad}.*needed by sample 8_1"):
        task.evaluate(ColourRanker(), dataset, make_context(tmp_path / "strict", protocol))
    ctx = make_context(tmp_path / "skip", protocol, skip_bad=True)
    _, metrics = evaluate_and_score(task, dataset, ColourRanker(), ctx)
    assert sorted(ctx.predictions.skipped) == ["8_1", "8_2", "8_3"]
    assert metrics["ndcg"] == pytest.approx(100 / (1 + 0.5 / math.log2(3)))


def _good_dialogs(tmp_path: Path) -> list:
    write_visdial(tmp_path)
    return json.loads((tmp_path / "visdial" / "annotations" / "visdial_1.0_val.json").read_text())["data"]["dialogs"]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: d[1].pop("caption"), r"visdial_1.0_val.json: record 1: field 'caption' missing"),
        (lambda d: d[1]["dialog"][1]["answer_options"].pop(), r"dialog 1 \(image 8\) round 2: 99 answer_options"),
        (lambda d: d[1]["dialog"][0].update(gt_index=(d[1]["dialog"][0]["gt_index"] + 1) % 100), r"round 1: gt_index .* does not point at the round's answer"),
        (lambda d: d[1]["dialog"][2].update(question=17), r"round 3: question index 17 is not a string of data.questions \(3 entries\)"),
        (lambda d: d[1]["dialog"][2].update(answer="no"), r"rounds: record 2: field 'answer' has type str \(expected int\)"),
        (lambda d: d[1].update(image_id=7), r"duplicate sample id '7'"),
        (lambda d: d[1].update(image_id=99), r"record 1: image 'VisualDialog_val2018_000000000099.jpg' not found"),
    ],
)
def test_a_malformed_dialog_names_the_file_and_record_or_is_skipped(tmp_path, break_it, message):
    dialogs = _good_dialogs(tmp_path)
    break_it(dialogs)
    write_visdial(tmp_path, dialogs=dialogs, dense=[])
    with pytest.raises(DataError, match=message):
        load(tmp_path)
    _, dataset, _ = load(tmp_path, skip_bad=True)
    assert {s.image_id for s in dataset.samples} == {7, 9}
    assert [s.sample_id for s in dataset.skipped] == ["visdial_1.0_val.json[1]"]


def test_dense_annotation_problems_are_fatal_but_those_of_skipped_dialogs_are_ignored(tmp_path):
    dialogs = _good_dialogs(tmp_path)
    good_dense = json.loads((tmp_path / "visdial" / "annotations" / "visdial_1.0_val_dense_annotations.json").read_text())
    write_visdial(tmp_path, dialogs=dialogs, dense=[*good_dense, {"image_id": 9, "round_id": 4, "gt_relevance": [1.0] * 100}])
    with pytest.raises(DataError, match=r"dense_annotations.json: record 2: no dialog round 9_4"):
        load(tmp_path, skip_bad=True)
    write_visdial(tmp_path, dialogs=dialogs, dense=[{"image_id": 9, "round_id": 1, "gt_relevance": [0.0] * 100}])
    with pytest.raises(DataError, match=r"record 0: gt_relevance must hold 100 non-negative values, not all zero"):
        load(tmp_path)

    dialogs[1]["dialog"][0]["answer_options"].pop()
    write_visdial(tmp_path, dialogs=dialogs, dense=good_dense)
    _, dataset, _ = load(tmp_path, skip_bad=True)
    assert set(dataset.extra["relevance"]) == {"7_1"}


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    BUILDERS["visdial"](root / "visdial", 0)
    return root


def test_the_toy_suite_loads_and_checks_clean(toy_root):
    task, dataset, protocol = load(toy_root)
    assert len(dataset.samples) == 200 and not dataset.skipped
    assert len(dataset.extra["relevance"]) == 20
    assert task.check(toy_root, "v1.0_val", protocol) == []


def test_blip_tiny_ranks_toy_answers_deterministically(toy_root, tmp_path):
    spec = task_spec("visdial")
    task = spec.build()
    runs = []
    for attempt in ("first", "second"):
        model, protocol = blip_tiny("visdial", spec.protocol)
        _, dataset, _ = load(toy_root, **protocol)
        dense = next(s for s in dataset.samples if s.sample_id in dataset.extra["relevance"])
        dataset.samples = [dataset.samples[0], dense]
        ctx = make_context(tmp_path / attempt, protocol)
        task.evaluate(model, dataset, ctx)
        runs.append(dict(ctx.predictions.predictions))
    assert runs[0] == runs[1]
    metrics = task.score(dataset, runs[0], protocol)
    assert set(metrics) == {"mrr", "r1", "r5", "r10", "mean_rank", "ndcg"}
    assert 1.0 <= metrics["mean_rank"] <= 100.0
