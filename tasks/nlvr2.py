"""NLVR2: does a statement hold for a pair of images? Accuracy on dev and test-P.

Records are BLIP's ``nlvr_{dev,test}.json`` ``{"images": [left, right], "sentence", "label":
"True"|"False"}``; sentences go through ``pre_caption`` (40 words). BLIP's loader swaps the two
images (and the words left/right) at random in every split; evaluation here never does, so a
run is deterministic and each statement is judged on the pair as annotated. A statement is
predicted true when the model's probability exceeds 0.5, which is BLIP's argmax over its two
classes (a tie goes to false).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.annotations import fingerprint, read_json, require_fields
from harness.errors import DataError
from harness.examples import RIGHT, WRONG, Example, ExampleSection, Line, Thumb, section
from harness.metrics import accuracy
from harness.task import Dataset
from harness_tasks.images import Gather, ImageTask, encoded_samples
from harness_tasks.records import MediaPaths, collect_records, split_entry
from harness_tasks.text import pre_caption

if TYPE_CHECKING:
    from harness.context import RunContext

SENTENCE_FILES = {"dev": "nlvr_dev.json", "test_p": "nlvr_test.json"}
LABELS = {"True": True, "False": False}


@dataclass(frozen=True)
class NLVR2Sample:
    sample_id: str
    """The record's position in the file (BLIP's files carry no identifier)."""
    sentence: str
    images: tuple[Path, Path]
    label: bool


class NLVR2Task(ImageTask):
    """NLVR2 with a ``PairVerifier``; predictions are ``{"probability", "label"}``."""

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        root = data_root / self.spec.data_dir
        path = root / "annotations" / split_entry(self.name, split, SENTENCE_FILES)
        max_words = int(protocol["max_words"])
        media = MediaPaths(root / "images")

        def parse(record: Any, index: int) -> NLVR2Sample:
            require_fields(record, {"images": list[str], "sentence": str, "label": str}, path, index)
            if len(record["images"]) != 2:
                raise DataError(f"{path}: record {index}: field 'images' has {len(record['images'])} paths (expected [left, right])")
            if record["label"] not in LABELS:
                raise DataError(f"{path}: record {index}: field 'label' is {record['label']!r} (expected 'True' or 'False')")
            left, right = (media(image, path, index) for image in record["images"])
            return NLVR2Sample(
                sample_id=str(index),
                sentence=pre_caption(record["sentence"], max_words),
                images=(left, right),
                label=LABELS[record["label"]],
            )

        samples, skipped = collect_records(read_json(path), path, parse, lambda sample: sample.sample_id, skip_bad=skip_bad)
        return Dataset(task=self.name, split=split, root=root, samples=samples, fingerprint=fingerprint([path]), skipped=skipped)

    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        def verify(gather: Gather, chunk: list[NLVR2Sample]) -> list[float]:
            with ctx.stage("verify", items=len(chunk)):
                left, right = gather(chunk)
                return model.verify(left, right, [sample.sentence for sample in chunk]).float().tolist()

        for ready, gather in encoded_samples(model, ctx.pending(dataset), ctx):
            for chunk, probabilities in ctx.map_batches(ready, partial(verify, gather), desc="verify"):
                ctx.predictions.add_many(
                    (sample.sample_id, {"probability": p, "label": p > 0.5})
                    for sample, p in zip(chunk, probabilities, strict=True)
                )

    def _judged(self, dataset: Dataset, predictions: Mapping[str, Any]) -> list[NLVR2Sample]:
        return [sample for sample in dataset.samples if sample.sample_id in predictions]

    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """``accuracy`` in percent."""
        judged = self._judged(dataset, predictions)
        if not judged:
            return {}
        return {"accuracy": accuracy([predictions[s.sample_id]["label"] for s in judged], [s.label for s in judged])}

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """``accuracy`` of always answering the split's more frequent label."""
        if not dataset.samples:
            return {}
        labels = [sample.label for sample in dataset.samples]
        majority = 2 * sum(labels) > len(labels)
        return {"accuracy": accuracy([majority] * len(labels), labels)}

    def per_sample_metrics(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        """100 for a correct judgement, 0 otherwise; their mean is ``accuracy``."""
        return {
            s.sample_id: {"accuracy": 100.0 if predictions[s.sample_id]["label"] == s.label else 0.0}
            for s in self._judged(dataset, predictions)
        }

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """Statements by the probability the model gave the right label, so the worst are the
        confidently wrong ones: the image pair, the statement, the label and the judgement."""
        samples = {s.sample_id: s for s in self._judged(dataset, predictions)}
        right_probability = {
            sid: p if s.label else 1.0 - p
            for sid, s in samples.items()
            for p in (float(predictions[sid]["probability"]),)
        }

        def example(sample_id: str) -> Example:
            sample, prediction = samples[sample_id], predictions[sample_id]
            correct = prediction["label"] == sample.label
            return Example(
                sample_id=sample_id,
                summary=f"{'right' if correct else 'wrong'}: P(true) = {prediction['probability']:.2f}",
                thumbs=(Thumb(sample.images[0], "left"), Thumb(sample.images[1], "right")),
                lines=(
                    Line("statement", (sample.sentence,)),
                    Line("label", (str(sample.label).lower(),)),
                    Line("model says", (str(prediction["label"]).lower(),), (RIGHT if correct else WRONG,)),
                ),
            )

        return [section("statements", right_probability, example, worst, best)]
