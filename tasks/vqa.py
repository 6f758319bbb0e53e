"""VQA v2 with BLIP's question files, scored with the official VQA accuracy.

BLIP answers a question in one of two ways: ``rank`` (the paper's setting) picks the best of the
closed ``answer_list.json`` (its decoder scores the top ``k_test`` candidates by their first-token
probability, then each in full), ``generate`` decodes an answer freely (3 beams, 1 to 10 tokens).
Questions go through ``pre_question`` as in BLIP's loader. Every image is encoded once, however
many questions it has. Splits without answers (test-dev / test-std) produce only the official
submission file ``[{"question_id", "answer"}]``, which is written for every split. Accuracy
follows the current official ``vqaEval.py`` by default; ``vqa_scorer=2016`` selects the 2016
version that LAVIS ships (see ``harness.metrics.vqa``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.annotations import fingerprint, read_json, require_fields
from harness.capabilities import GenerationSettings
from harness.errors import ConfigError, DataError
from harness.examples import RIGHT, WRONG, Example, ExampleSection, Line, Thumb, section
from harness.metrics import normalize_answer, per_sample_vqa_accuracy, vqa_accuracy_score
from harness.metrics.vqa import VQA_SCORERS, check_vqa_scorer
from harness.results import write_json_atomic
from harness.task import Dataset
from harness_tasks.images import Gather, ImageTask, encoded_samples
from harness_tasks.records import MediaPaths, collect_records, split_entry
from harness_tasks.text import pre_question

if TYPE_CHECKING:
    from harness.context import RunContext

QUESTION_FILES = {"val": "vqa_val.json", "test": "vqa_test.json"}
SPLITS_WITH_ANSWERS = frozenset({"val"})
ANSWER_LIST_FILE = "answer_list.json"
MODES = ("rank", "generate")


@dataclass(frozen=True)
class VQASample:
    sample_id: str
    question_id: int
    question: str
    """After ``pre_question``, as the model sees it."""
    images: tuple[Path]
    answers: tuple[str, ...] | None
    """The annotators' answers; None on splits without ground truth."""


def answer_settings(protocol: Mapping[str, Any]) -> GenerationSettings:
    """The generate mode's decoding settings, shared by image and video QA. ``prompt`` is a question
    template ("" asks the question as it is, as BLIP does; BLIP-2: "Question: {} Short answer:"),
    ``length_penalty`` the beams' length exponent and ``length_normalization`` which length it
    divides by (BLIP's beam search: the whole sequence, as transformers 4.15 did), all passed to the
    model."""
    try:
        settings = GenerationSettings(
            num_beams=int(protocol["num_beams"]),
            max_length=int(protocol["max_length"]),
            min_length=int(protocol["min_length"]),
            prompt=str(protocol.get("prompt", "")),
            length_penalty=float(protocol.get("length_penalty", 1.0)),
            length_normalization=str(protocol.get("length_normalization", "blip")),
        )
    except KeyError as missing:
        raise ConfigError(f"VQA protocol lacks {missing}") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"VQA protocol has a malformed decoding setting ({error})") from None
    if settings.num_beams < 1 or settings.max_length < 1 or settings.min_length < 0:
        raise ConfigError(
            f"VQA protocol needs num_beams and max_length >= 1 and min_length >= 0, got {settings.num_beams}, "
            f"{settings.max_length}, {settings.min_length}"
        )
    return settings


def answer_mode(protocol: Mapping[str, Any]) -> str:
    mode = protocol.get("mode", "rank")
    if mode not in MODES:
        raise ConfigError(f"vqa mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def vqa_scorer(protocol: Mapping[str, Any]) -> str:
    """The version of the official VQA scorer the protocol names (``vqa_scorer``)."""
    try:
        return check_vqa_scorer(protocol.get("vqa_scorer", VQA_SCORERS[0]))
    except ValueError as error:
        raise ConfigError(f"vqa_scorer: {error}") from None


def read_answer_list(path: Path) -> list[str]:
    answers = read_json(path)
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{path}: expected a non-empty JSON list of answer strings")
    return answers


def majority_answer(samples: Sequence[VQASample]) -> str:
    """The answer annotators gave most often over the whole split (the first reached wins a tie)."""
    return Counter(answer for sample in samples for answer in sample.answers or ()).most_common(1)[0][0]


class VQATask(ImageTask):
    """VQA v2: answer ranking or generation, official VQA accuracy, submission file."""

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        mode = answer_mode(protocol)
        vqa_scorer(protocol)
        answer_settings(protocol)
        root = data_root / self.spec.data_dir
        questions_path = root / "annotations" / split_entry(self.name, split, QUESTION_FILES)
        has_answers = split in SPLITS_WITH_ANSWERS
        max_words = int(protocol["max_question_words"])
        fields: dict[str, Any] = {"question_id": int, "question": str, "image": str}
        if has_answers:
            fields["answer"] = list[str]
        media = MediaPaths(root / "images")

        def parse(record: Any, index: int) -> VQASample:
            require_fields(record, fields, questions_path, index)
            if has_answers and not record["answer"]:
                raise DataError(f"{questions_path}: record {index}: field 'answer' is empty (expected the annotators' answers)")
            return VQASample(
                sample_id=str(record["question_id"]),
                question_id=record["question_id"],
                question=pre_question(record["question"], max_words),
                images=(media(record["image"], questions_path, index),),
                answers=tuple(record["answer"]) if has_answers else None,
            )

        samples, skipped = collect_records(
            read_json(questions_path), questions_path, parse, lambda sample: sample.sample_id, skip_bad=skip_bad
        )
        files = [questions_path]
        extra: dict[str, Any] = {}
        if mode == "rank":
            answer_list_path = root / "annotations" / ANSWER_LIST_FILE
            extra["answer_list"] = read_answer_list(answer_list_path)
            files.append(answer_list_path)
        return Dataset(
            task=self.name, split=split, root=root, samples=samples,
            fingerprint=fingerprint(files), skipped=skipped, extra=extra,
        )

    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        mode = answer_mode(ctx.protocol)
        answer_list: list[str] = dataset.extra.get("answer_list", [])
        if mode == "rank" and not answer_list:
            raise ConfigError(f"{self.name}: rank mode needs {ANSWER_LIST_FILE}; load the data with mode 'rank'")
        # BLIP keeps the k_test best first-token candidates; a shorter list keeps all of them.
        k = min(int(ctx.protocol["k_test"]), len(answer_list))
        settings = answer_settings(ctx.protocol)

        def answer(gather: Gather, chunk: list[VQASample]) -> list[str]:
            with ctx.stage("answer_questions", items=len(chunk)):
                (visual,) = gather(chunk)
                questions = [sample.question for sample in chunk]
                if mode == "generate":
                    return model.answer(visual, questions, settings)
                picks = model.rank_answers(visual, questions, answer_list, k)
            for pick in picks:
                if not 0 <= int(pick) < len(answer_list):
                    raise ValueError(f"rank_answers returned index {pick} outside the answer list of {len(answer_list)}")
            return [answer_list[int(pick)] for pick in picks]

        for ready, gather in encoded_samples(model, ctx.pending(dataset), ctx):
            for chunk, answers in ctx.map_batches(ready, partial(answer, gather), desc="answer"):
                ctx.predictions.add_many(
                    (sample.sample_id, text) for sample, text in zip(chunk, answers, strict=True)
                )

    def _answered(self, dataset: Dataset, predictions: Mapping[str, Any]) -> list[VQASample]:
        return [s for s in dataset.samples if s.answers is not None and s.sample_id in predictions]

    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """``accuracy``: the official VQA accuracy in percent; empty on a split without answers."""
        answered = self._answered(dataset, predictions)
        if not answered:
            return {}
        return {
            "accuracy": vqa_accuracy_score(
                [predictions[s.sample_id] for s in answered], [s.answers for s in answered],
                scorer=vqa_scorer(protocol),
            )
        }

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """``accuracy`` of answering every question with the split's most frequent answer
        (``majority_answer``; "yes" on VQA v2)."""
        answered = [s for s in dataset.samples if s.answers is not None]
        if not answered:
            return {}
        constant = majority_answer(answered)
        return {
            "accuracy": vqa_accuracy_score(
                [constant] * len(answered), [s.answers for s in answered], scorer=vqa_scorer(protocol)
            )
        }

    def per_sample_metrics(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        """Each question's VQA accuracy in percent; their mean is ``accuracy``."""
        answered = self._answered(dataset, predictions)
        if not answered:
            return {}
        scores = per_sample_vqa_accuracy(
            [predictions[s.sample_id] for s in answered], [s.answers for s in answered], scorer=vqa_scorer(protocol)
        )
        return {s.sample_id: {"accuracy": 100.0 * value} for s, value in zip(answered, scores, strict=True)}

    def write_outputs(
        self, dataset: Dataset, predictions: Mapping[str, Any], run_dir: Path
    ) -> list[Path]:
        """The official VQA result file ``[{"question_id": int, "answer": str}]`` (what the
        test-dev / test-std server takes)."""
        results = [
            {"question_id": sample.question_id, "answer": predictions[sample.sample_id]}
            for sample in dataset.samples
            if sample.sample_id in predictions
        ]
        return [write_json_atomic(run_dir / f"{dataset.task}_{dataset.split}_submission.json", results)]

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """Questions by VQA accuracy: the image, the question, the answer and the human answers
        with their counts (those matching the answer, as the metric normalises them, marked);
        none on a split without answers."""
        accuracies = {sid: values["accuracy"] for sid, values in self.per_sample_metrics(dataset, predictions, protocol).items()}
        if not accuracies:
            return []
        samples = {s.sample_id: s for s in dataset.samples}

        def example(sample_id: str) -> Example:
            sample, answer = samples[sample_id], predictions[sample_id]
            counts = Counter(sample.answers).most_common()
            return Example(
                sample_id=sample_id,
                summary=f"VQA accuracy {accuracies[sample_id]:.0f}",
                thumbs=(Thumb(sample.images[0]),),
                lines=(
                    Line("question", (sample.question,)),
                    Line("answer", (answer,), (RIGHT if accuracies[sample_id] > 0 else WRONG,)),
                    Line("human answers", tuple(f"{a} \u00d7{n}" for a, n in counts),
                         tuple(RIGHT if normalize_answer(a) == normalize_answer(answer) else None for a, _ in counts)),
                ),
            )

        return [section("questions", accuracies, example, worst, best)]
