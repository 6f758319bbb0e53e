"""NLVR2: does a statement hold for a pair of images? Accuracy and consistency on dev and test-P.

Records are BLIP's ``nlvr_{dev,test}.json`` ``{"images": [left, right], "sentence", "label":
"True"|"False"}`` or, when those are absent, the official JSON-lines ``dev.json`` /
``test1.json`` (``identifier`` ``split-set-pair-sentence``, ``sentence``, ``label``; the images
are ``{split}/{split-set-pair}-img0.png`` and ``-img1.png`` as the official release names them).
Sentences go through ``pre_caption`` (40 words). Consistency is the official
``nlvr2/eval/metrics.py``'s: the share of sentences (identifier with the pair number blanked)
judged right on every pair; BLIP's files carry no identifier, so there a sentence is its set
(from the left image's name) and its text. BLIP's loader swaps the two
images (and the words left/right) at random in every split; evaluation here never does, so a
run is deterministic and each statement is judged on the pair as annotated. A statement is
predicted true when the model's probability exceeds 0.5, which is BLIP's argmax over its two
classes (a tie goes to false).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness.annotations import fingerprint, read_json, read_jsonl, require_fields
from harness.errors import DataError
from harness.examples import RIGHT, WRONG, Example, ExampleSection, Line, Thumb, section
from harness.metrics import accuracy, consistency
from harness.task import Dataset
from harness_tasks.images import Gather, ImageTask, encoded_samples
from harness_tasks.records import MediaPaths, collect_records, split_entry
from harness_tasks.text import pre_caption

if TYPE_CHECKING:
    from harness.context import RunContext

SENTENCE_FILES = {"dev": "nlvr_dev.json", "test_p": "nlvr_test.json"}
OFFICIAL_FILES = {"dev": "dev.json", "test_p": "test1.json"}
"""The official JSON-lines files (github.com/lil-lab/nlvr, ``nlvr2/data``), read when BLIP's are absent."""
LABELS = {"True": True, "False": False}


@dataclass(frozen=True)
class NLVR2Sample:
    sample_id: str
    """The official identifier, or the record's position in BLIP's file (which has none)."""
    sentence: str
    images: tuple[Path, Path]
    label: bool
    sentence_group: str
    """The same for every pair judged against one sentence (for consistency)."""


def official_sentence_group(identifier: str) -> str:
    """The official metrics' sentence key: ``split-set-pair-sentence`` with ``pair`` blanked
    (``"dev-850-2-0"`` -> ``"dev-850--0"``)."""
    fields = identifier.split("-")
    fields[2] = ""
    return "-".join(fields)


def blip_sentence_group(left_image: str, sentence: str) -> str:
    """A sentence key for BLIP's files: the set of the left image's official name
    (``dev/dev-850-0-img0.png`` -> ``dev-850``) and the sentence's text."""
    fields = PurePosixPath(left_image).name.split("-")
    image_set = "-".join(fields[:2]) if len(fields) >= 4 else left_image
    return f"{image_set}: {sentence}"


def _label(record: Mapping[str, Any], path: Path, index: int) -> bool:
    if record["label"] not in LABELS:
        raise DataError(f"{path}: record {index}: field 'label' is {record['label']!r} (expected 'True' or 'False')")
    return LABELS[record["label"]]


class NLVR2Task(ImageTask):
    """NLVR2 with a ``PairVerifier``; predictions are ``{"probability", "label"}``."""

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        root = data_root / self.spec.data_dir
        path = root / "annotations" / split_entry(self.name, split, SENTENCE_FILES)
        official_path = root / "annotations" / OFFICIAL_FILES[split]
        max_words = int(protocol["max_words"])
        media = MediaPaths(root / "images")

        def parse_blip(record: Any, index: int) -> NLVR2Sample:
            require_fields(record, {"images": list[str], "sentence": str, "label": str}, path, index)
            if len(record["images"]) != 2:
                raise DataError(f"{path}: record {index}: field 'images' has {len(record['images'])} paths (expected [left, right])")
            left, right = (media(image, path, index) for image in record["images"])
            return NLVR2Sample(
                sample_id=str(index),
                sentence=pre_caption(record["sentence"], max_words),
                images=(left, right),
                label=_label(record, path, index),
                sentence_group=blip_sentence_group(record["images"][0], record["sentence"]),
            )

        def parse_official(record: Any, index: int) -> NLVR2Sample:
            require_fields(record, {"identifier": str, "sentence": str, "label": str}, official_path, index)
            fields = record["identifier"].split("-")
            if len(fields) != 4 or not all(fields):
                raise DataError(
                    f"{official_path}: record {index}: identifier {record['identifier']!r} is not split-set-pair-sentence"
                )
            pair = "-".join(fields[:3])
            return NLVR2Sample(
                sample_id=record["identifier"],
                sentence=pre_caption(record["sentence"], max_words),
                images=(media(f"{fields[0]}/{pair}-img0.png", official_path, index),
                        media(f"{fields[0]}/{pair}-img1.png", official_path, index)),
                label=_label(record, official_path, index),
                sentence_group=official_sentence_group(record["identifier"]),
            )

        parse: Callable[[Any, int], NLVR2Sample]
        if path.is_file() or not official_path.is_file():
            parse, records_path, records = parse_blip, path, read_json(path)
        else:
            parse, records_path, records = parse_official, official_path, read_jsonl(official_path)
        samples, skipped = collect_records(records, records_path, parse, lambda sample: sample.sample_id, skip_bad=skip_bad)
        return Dataset(
            task=self.name, split=split, root=root, samples=samples, fingerprint=fingerprint([records_path]), skipped=skipped
        )

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
        """``accuracy`` and ``consistency`` (sentences judged right on every pair) in percent."""
        judged = self._judged(dataset, predictions)
        if not judged:
            return {}
        predicted = [predictions[s.sample_id]["label"] for s in judged]
        labels = [s.label for s in judged]
        return {
            "accuracy": accuracy(predicted, labels),
            "consistency": consistency(predicted, labels, [s.sentence_group for s in judged]),
        }

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """``accuracy`` and ``consistency`` of always answering the split's more frequent label."""
        if not dataset.samples:
            return {}
        labels = [sample.label for sample in dataset.samples]
        majority = [2 * sum(labels) > len(labels)] * len(labels)
        groups = [sample.sentence_group for sample in dataset.samples]
        return {"accuracy": accuracy(majority, labels), "consistency": consistency(majority, labels, groups)}

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
