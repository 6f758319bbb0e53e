"""COCO captioning (Karpathy splits) and NoCaps validation, as BLIP evaluates them.

Each image gets one caption from the model's ``Captioner`` with the protocol's prompt and beam
settings (BLIP: "a picture of ", 3 beams, 5 to 20 tokens counting the prompt; NoCaps with a
repetition penalty of 1.1). Captions are scored against the reference files BLIP's evaluation
reads, both in COCO caption format: ``coco_karpathy_{test,val}_gt.json`` for COCO and the official
``nocaps_val_4500_captions.json`` for NoCaps, whose image entries also carry each image's domain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness.annotations import fingerprint, read_json, require_fields
from harness.capabilities import GenerationSettings
from harness.errors import ConfigError, DataError
from harness.examples import Example, ExampleSection, Line, Thumb, section
from harness.metrics import caption_scores, cider_per_example, distinct_n, nocaps_scores, vocabulary_size
from harness.results import write_json_atomic
from harness.task import Dataset
from harness_tasks.images import Gather, ImageTask, encoded_samples
from harness_tasks.records import MediaPaths, collect_records, split_entry

if TYPE_CHECKING:
    from harness.context import RunContext


@dataclass(frozen=True)
class CaptionFiles:
    """Where a captioning benchmark keeps each split: the records to caption and the references."""

    splits: Mapping[str, tuple[str, str]]
    image_id_field: str | None
    """Record field holding the integer image id; None: the number ending the file name (COCO)."""
    has_domains: bool


BENCHMARKS: dict[str, CaptionFiles] = {
    "coco_captioning": CaptionFiles(
        splits={
            "karpathy_test": ("coco_karpathy_test.json", "coco_karpathy_test_gt.json"),
            "karpathy_val": ("coco_karpathy_val.json", "coco_karpathy_val_gt.json"),
        },
        image_id_field=None,
        has_domains=False,
    ),
    "nocaps": CaptionFiles(
        splits={"val": ("nocaps_val.json", "nocaps_val_4500_captions.json")},
        image_id_field="img_id",
        has_domains=True,
    ),
}


@dataclass(frozen=True)
class CaptionSample:
    sample_id: str
    image_id: int
    images: tuple[Path]


@dataclass(frozen=True)
class References:
    """Reference captions and (NoCaps) domains by image id, from a COCO-format caption file."""

    captions: dict[int, list[str]]
    domains: dict[int, str]


def coco_image_id(image: str, path: Path, index: int) -> int:
    """The COCO image id BLIP derives from a file name: the number after its last underscore
    (``val2014/COCO_val2014_000000391895.jpg`` -> 391895)."""
    digits = PurePosixPath(image).stem.rsplit("_", 1)[-1]
    if not digits.isdigit():
        raise DataError(
            f"{path}: record {index}: cannot read an image id from {image!r} "
            "(expected a file name ending in _<number>, as COCO_val2014_000000391895.jpg)"
        )
    return int(digits)


def read_references(path: Path, with_domains: bool) -> References:
    """Captions (and domains) of a COCO caption file; any malformed entry is fatal, since a
    missing or wrong reference would change every score without a trace."""
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("images", "annotations")):
        raise DataError(f"{path}: expected a COCO caption file, an object with 'images' and 'annotations' lists")
    image_fields: dict[str, Any] = {"id": int, "domain": str} if with_domains else {"id": int}
    domains: dict[int, str] = {}
    captions: dict[int, list[str]] = {}
    for index, image in enumerate(data["images"]):
        require_fields(image, image_fields, Path(f"{path} (images)"), index)
        captions.setdefault(image["id"], [])
        if with_domains:
            domains[image["id"]] = image["domain"]
    for index, annotation in enumerate(data["annotations"]):
        require_fields(annotation, {"image_id": int, "caption": str}, Path(f"{path} (annotations)"), index)
        captions.setdefault(annotation["image_id"], []).append(annotation["caption"])
    return References({k: v for k, v in captions.items() if v}, domains)


def generation_settings(protocol: Mapping[str, Any]) -> GenerationSettings:
    """The captioning protocol's decoding settings."""
    try:
        return GenerationSettings(
            num_beams=int(protocol["num_beams"]),
            max_length=int(protocol["max_length"]),
            min_length=int(protocol["min_length"]),
            repetition_penalty=float(protocol["repetition_penalty"]),
            sample=bool(protocol["sample"]),
            top_p=float(protocol["top_p"]),
            prompt=str(protocol["prompt"]),
            length_normalization=str(protocol["length_normalization"]),
        )
    except KeyError as missing:
        raise ConfigError(f"captioning protocol lacks {missing}") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"captioning protocol has a malformed decoding setting ({error})") from None


def spice_setting(protocol: Mapping[str, Any]) -> bool | None:
    """``spice``: "auto" (when its models are installed), true or false; a config file may also
    spell the booleans as strings, so case-insensitive strings are accepted."""
    value = protocol.get("spice", "auto")
    text = str(value).lower()
    if text == "auto":
        return None
    if text in ("true", "false"):
        return text == "true"
    raise ConfigError(f"spice must be 'auto', true or false, got {value!r}")


def caption_diversity(captions: list[str]) -> dict[str, float]:
    """Diversity of the generated captions (BLIP section 4.3: "diversity is key"): distinct-1 and
    distinct-2 in percent and the vocabulary size, over all images. mBLEU-4 compares the captions
    of one image with each other, and these runs write one caption per image, so it is left out
    (CapFilt reports it for its several synthetic captions per image)."""
    return {
        "distinct_1": 100.0 * distinct_n(captions, 1),
        "distinct_2": 100.0 * distinct_n(captions, 2),
        "vocabulary_size": float(vocabulary_size(captions)),
    }


def most_frequent_caption(references: Mapping[str, list[str]], max_words: int) -> str:
    """The reference caption written most often in the split (case and spacing ignored; the
    first one reached in dataset order wins a tie), cut to its first ``max_words`` words.

    The cut keeps the floor a captioner could reach under the protocol, whose captions are at
    most ``max_length`` tokens long, and keeps scoring bounded: one pathological reference (a
    10,000-word "caption" reached first in a split of unique captions) given to every image would
    otherwise keep METEOR's alignment busy for hours.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    counts = Counter(" ".join(caption.lower().split()) for captions in references.values() for caption in captions)
    return " ".join(counts.most_common(1)[0][0].split()[:max_words])


class CaptioningTask(ImageTask):
    """COCO captioning and NoCaps: one caption per image, scored with pycocoevalcap."""

    @property
    def files(self) -> CaptionFiles:
        try:
            return BENCHMARKS[self.name]
        except KeyError:
            raise ConfigError(f"CaptioningTask has no file layout for task {self.name!r} (known: {', '.join(BENCHMARKS)})") from None

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        files = self.files
        records_name, references_name = split_entry(self.name, split, files.splits)
        root = data_root / self.spec.data_dir
        records_path = root / "annotations" / records_name
        references_path = root / "annotations" / references_name
        references = read_references(references_path, files.has_domains)
        media = MediaPaths(root / "images")

        def parse(record: Any, index: int) -> CaptionSample:
            fields: dict[str, Any] = {"image": str}
            if files.image_id_field is not None:
                fields[files.image_id_field] = int
            require_fields(record, fields, records_path, index)
            image = media(record["image"], records_path, index)
            if files.image_id_field is None:
                image_id = coco_image_id(record["image"], records_path, index)
            else:
                image_id = record[files.image_id_field]
            if image_id not in references.captions:
                raise DataError(f"{records_path}: record {index}: image id {image_id} has no reference captions in {references_path}")
            if files.has_domains and image_id not in references.domains:
                raise DataError(f"{records_path}: record {index}: image id {image_id} has no domain in {references_path}")
            return CaptionSample(sample_id=str(image_id), image_id=image_id, images=(image,))

        samples, skipped = collect_records(
            read_json(records_path), records_path, parse, lambda sample: sample.sample_id, skip_bad=skip_bad
        )
        extra: dict[str, Any] = {"references": {s.sample_id: references.captions[s.image_id] for s in samples}}
        if files.has_domains:
            extra["domains"] = {s.sample_id: references.domains[s.image_id] for s in samples}
        return Dataset(
            task=self.name,
            split=split,
            root=root,
            samples=samples,
            fingerprint=fingerprint([records_path, references_path]),
            skipped=skipped,
            extra=extra,
        )

    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        settings = generation_settings(ctx.protocol)

        def caption(gather: Gather, chunk: list[CaptionSample]) -> list[str]:
            with ctx.stage("generate_captions", items=len(chunk)):
                (visual,) = gather(chunk)
                return model.caption(visual, settings)

        for ready, gather in encoded_samples(model, ctx.pending(dataset), ctx):
            for chunk, captions in ctx.map_batches(ready, partial(caption, gather), desc="caption"):
                ctx.predictions.add_many(
                    (sample.sample_id, text) for sample, text in zip(chunk, captions, strict=True)
                )

    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE) in percent over the captioned images;
        NoCaps per domain (``in_``, ``near_``, ``out_``) and ``overall_``; and the captions'
        diversity (``caption_diversity``) over all of them."""
        ids = [sample.sample_id for sample in dataset.samples if sample.sample_id in predictions]
        if not ids:
            return {}
        return self._scores({sid: predictions[sid] for sid in ids}, dataset, spice_setting(protocol))

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """The scores of a captioner that ignores the image: the split's most frequent reference
        caption (see ``most_frequent_caption``), cut to ``max_length`` words, given for every
        image. SPICE is left out (it takes minutes on a full split and adds nothing to this
        floor)."""
        if not dataset.samples:
            return {}
        constant = most_frequent_caption(dataset.extra["references"], int(protocol["max_length"]))
        return self._scores({sample.sample_id: constant for sample in dataset.samples}, dataset, False)

    def _scores(self, captions: dict[str, str], dataset: Dataset, spice: bool | None) -> dict[str, float]:
        references = {sid: dataset.extra["references"][sid] for sid in captions}
        if self.files.has_domains:
            scores = nocaps_scores(captions, references, dataset.extra["domains"], spice=spice)
        else:
            scores = caption_scores(captions, references, spice=spice)
        return scores | caption_diversity(list(captions.values()))

    def write_outputs(
        self, dataset: Dataset, predictions: Mapping[str, Any], run_dir: Path
    ) -> list[Path]:
        """The captions in the COCO / EvalAI result format ``[{"image_id", "caption"}]``."""
        results = [
            {"image_id": sample.image_id, "caption": predictions[sample.sample_id]}
            for sample in dataset.samples
            if sample.sample_id in predictions
        ]
        return [write_json_atomic(run_dir / f"{dataset.task}_{dataset.split}_captions.json", results)]

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """Images by the CIDEr-D of their caption (``cider_per_example``): the image, the
        generated caption, the references and (NoCaps) the domain."""
        samples = {s.sample_id: s for s in dataset.samples if s.sample_id in predictions}
        if not samples:
            return []
        references = dataset.extra["references"]
        cider = cider_per_example({sid: predictions[sid] for sid in samples}, {sid: references[sid] for sid in samples})
        domains = dataset.extra.get("domains", {})

        def example(sample_id: str) -> Example:
            lines = [Line("generated", (predictions[sample_id],)), Line("references", tuple(references[sample_id]))]
            if sample_id in domains:
                lines.append(Line("domain", (domains[sample_id],)))
            return Example(
                sample_id=sample_id,
                summary=f"CIDEr {cider[sample_id]:.1f}",
                thumbs=(Thumb(samples[sample_id].images[0]),),
                lines=tuple(lines),
            )

        return [section("captions", cider, example, worst, best)]
