"""Filter quality: how well a model separates matching image-text pairs from noisy ones.

CapFilt (BLIP, section 3.3) keeps a web or synthetic text when the filter says it matches its
image. This task measures such a filter on pairs whose truth is known:

- ``web``: the toy suite's web-style collection (``web/web_pretrain.json`` in BLIP's pre-training
  format, truth in ``web/web_labels.json``), where each image has one text: its own caption,
  another image's, its caption with one detail changed, or boilerplate ("click here").
- a retrieval split (COCO or Flickr30k, Karpathy format, read by the retrieval task's loader):
  every (image, caption) slot becomes one pair; a seeded plan replaces a fraction
  ``wrong_fraction`` of the slots by another image's caption and a fraction
  ``partial_fraction`` by the caption edited to contradict the image
  (``harness_tasks.caption_edits``; a caption with no swappable word gets another image's
  caption instead). The plan is a pure function of the split, ``plan_seed`` and the fractions;
  its SHA-256 is recorded in the protocol as ``pair_plan_fingerprint`` and the pairs are written
  to ``capfilt_filter_<split>_pairs.json``.

The score is the match probability (``ImageTextMatchProbability``; BLIP: softmax of the ITM
logits) when the model has it, else the cosine of the ITC embeddings (a CLIP-score filter). The
default threshold is on that score's scale: 0.5 for a probability (BLIP's CapFilt), 0.28 for a
cosine (LAION-400M's CLIP threshold); the recorded protocol holds the one used.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.annotations import fingerprint, read_json, require_fields
from harness.capabilities import ImageTextMatchProbability
from harness.errors import CapabilityError, ConfigError, DataError
from harness.examples import RIGHT, WRONG, Example, ExampleSection, Line, Thumb, section
from harness.metrics.filtering import filtering_metrics
from harness.results import write_json_atomic
from harness.task import Dataset, SkippedSample
from harness_tasks.caption_edits import contradict
from harness_tasks.images import Gather, ImageTask, encoded_samples
from harness_tasks.records import MediaPaths, collect_records
from harness_tasks.specs import TASK_SPECS
from harness_tasks.text import pre_caption

if TYPE_CHECKING:
    import torch

    from harness.context import RunContext

WEB_SPLIT = "web"
RETRIEVAL_SPLITS: dict[str, tuple[str, str]] = {
    "coco_karpathy_test_5k": ("coco_retrieval", "karpathy_test_5k"),
    "coco_karpathy_val_5k": ("coco_retrieval", "karpathy_val_5k"),
    "flickr30k_karpathy_test_1k": ("flickr30k_retrieval", "karpathy_test_1k"),
    "flickr30k_karpathy_val_1k": ("flickr30k_retrieval", "karpathy_val_1k"),
}
"""Split of this task -> (retrieval task whose loader reads it, that task's split)."""

DEFAULT_THRESHOLDS: dict[str, float] = {"itm": 0.5, "itc": 0.28}
"""``threshold=auto`` by score: BLIP's CapFilt keeps ITM probability >= 0.5; LAION-400M kept
CLIP ViT-B/32 cosine >= 0.28."""

KINDS = ("clean", "wrong", "partial", "boilerplate")
"""What a pair's text is: the image's own caption (the only matching kind), another image's,
the image's caption with one detail wrong, or boilerplate alt-text (web split only)."""


@dataclass(frozen=True)
class FilterPair:
    """One image with one text; ``label`` 1 when the text describes the image."""

    sample_id: str
    images: tuple[Path]
    text: str
    label: int
    kind: str
    image: str
    """The image as the annotation names it (recorded in the pairs file, machine-independent)."""


# -- protocol -------------------------------------------------------------------------------------


def resolve_score(model: Any, protocol: Mapping[str, Any]) -> str:
    """``score``: "auto" uses the match probability when the model has one ("itm") and the ITC
    cosine otherwise ("itc"); "itm" demands the probability."""
    value = str(protocol.get("score", "auto")).strip().lower()
    if value == "auto":
        return "itm" if isinstance(model, ImageTextMatchProbability) else "itc"
    if value == "itm" and not isinstance(model, ImageTextMatchProbability):
        raise CapabilityError(
            "protocol score=itm needs a model with ImageTextMatchProbability (an ITM head); "
            "this model has none (use score=auto or itc to filter by ITC cosine)"
        )
    if value not in DEFAULT_THRESHOLDS:
        raise ConfigError(f"score must be 'auto', 'itm' or 'itc', got {protocol.get('score')!r}")
    return value


def resolve_threshold(protocol: Mapping[str, Any], score: str) -> float:
    """``threshold``: a number, or "auto" for the default of the score's scale."""
    value = protocol.get("threshold", "auto")
    if isinstance(value, str) and value.strip().lower() == "auto":
        if score not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"threshold=auto needs score 'itm' or 'itc', got {score!r}")
        return DEFAULT_THRESHOLDS[score]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number or 'auto', got {value!r}") from None


def plan_settings(protocol: Mapping[str, Any]) -> tuple[int, float, float]:
    """(``plan_seed``, ``wrong_fraction``, ``partial_fraction``), validated."""
    seed = protocol.get("plan_seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"protocol plan_seed must be an integer, got {seed!r}")
    fractions = []
    for key in ("wrong_fraction", "partial_fraction"):
        value = protocol.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"protocol {key} must be a number from 0 to 1, got {value!r}")
        fractions.append(float(value))
    if sum(fractions) > 1:
        raise ConfigError(f"protocol wrong_fraction + partial_fraction must be at most 1, got {sum(fractions)}")
    return seed, fractions[0], fractions[1]


def max_words(protocol: Mapping[str, Any]) -> int:
    value = protocol.get("max_words")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"protocol max_words must be a positive integer, got {value!r}")
    return value


# -- pairs ----------------------------------------------------------------------------------------


def plan_pairs(
    images: Sequence[tuple[str, Path, Sequence[str]]], seed: int, wrong_fraction: float, partial_fraction: float
) -> list[FilterPair]:
    """The pairs of a retrieval split: one per (image, caption) slot, ``round(wrong_fraction * n)``
    slots given another image's caption and ``round(partial_fraction * n)`` their caption
    contradicted, chosen by a ``random.Random`` seeded with ``seed``; ``images`` are (id, path,
    captions)."""
    slots = [(row, j) for row, (_, _, captions) in enumerate(images) for j in range(len(captions))]
    rng = random.Random(f"capfilt_filter/{seed}")
    order = list(range(len(slots)))
    rng.shuffle(order)
    n_wrong, n_partial = round(wrong_fraction * len(slots)), round(partial_fraction * len(slots))
    kind_of = {slot: "wrong" for slot in order[:n_wrong]}
    kind_of |= {slot: "partial" for slot in order[n_wrong : n_wrong + n_partial]}
    vocabulary = {word for _, _, captions in images for caption in captions for word in caption.split(" ")}
    pairs = []
    for number, (row, j) in enumerate(slots):
        image_id, path, captions = images[row]
        kind, text = kind_of.get(number, "clean"), captions[j]
        if kind == "partial":
            edited = contradict(text, vocabulary, rng)
            kind, text = ("partial", edited) if edited is not None else ("wrong", text)
        if kind == "wrong" and len(images) > 1:
            other = rng.choice([r for r in range(len(images)) if r != row])
            text = rng.choice(list(images[other][2]))
        elif kind == "wrong":
            raise DataError("capfilt_filter needs at least two images to pair one with another image's caption")
        pairs.append(FilterPair(f"{image_id}#{j}", (path,), text, int(kind == "clean"), kind, image_id))
    return pairs


def pairs_fingerprint(pairs: Sequence[FilterPair]) -> str:
    """SHA-256 of the pairs (id, image, text, label, kind), independent of where the data lives."""
    rows = [[p.sample_id, p.image, p.text, p.label, p.kind] for p in pairs]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def _pair_scores(model: Any, score: str, gather: Gather, chunk: Sequence[FilterPair]) -> torch.Tensor:
    import torch

    (visual,) = gather(chunk)
    texts = model.encode_texts([pair.text for pair in chunk])
    if score == "itm":
        rows = torch.arange(len(chunk))
        return model.match_probability(visual, texts, torch.stack([rows, rows], dim=1)).float().cpu()
    if visual.embeds is None:
        raise CapabilityError("score=itc needs ITC embeddings, but the model's visual features have none")
    embeds = visual.embeds.float()
    return (embeds * texts.embeds.to(embeds.device).float()).sum(dim=-1).cpu()


class CapFiltFilterTask(ImageTask):
    """Scores a filter on pairs of known truth: ROC-AUC, average precision, P/R/F1 at the threshold."""

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        words = max_words(protocol)
        if split == WEB_SPLIT:
            return self._load_web(data_root, words, skip_bad)
        if split not in RETRIEVAL_SPLITS:
            raise ConfigError(f"{self.name}: unknown split {split!r} (splits: {', '.join([WEB_SPLIT, *RETRIEVAL_SPLITS])})")
        seed, wrong_fraction, partial_fraction = plan_settings(protocol)
        source_task, source_split = RETRIEVAL_SPLITS[split]
        spec = next(spec for spec in TASK_SPECS if spec.name == source_task)
        source = spec.build().load(data_root, source_split, {"max_words": words}, skip_bad=skip_bad)
        images = [(sample.sample_id, sample.images[0], sample.captions) for sample in source.samples]
        pairs = plan_pairs(images, seed, wrong_fraction, partial_fraction)
        return self._dataset(split, source.root, pairs, source.fingerprint, source.skipped)

    def _load_web(self, data_root: Path, words: int, skip_bad: bool) -> Dataset:
        root = data_root / "web"
        pretrain_path, labels_path = root / "web_pretrain.json", root / "web_labels.json"
        records, labels = read_json(pretrain_path), read_json(labels_path)
        if not isinstance(labels, list) or not isinstance(records, list) or len(labels) != len(records):
            raise DataError(f"{labels_path}: expected a JSON list with one label per record of {pretrain_path}")
        media = MediaPaths(root)

        def parse(record: Any, index: int) -> FilterPair:
            require_fields(record, {"image": str, "caption": str}, pretrain_path, index)
            truth = labels[index]
            require_fields(truth, {"image": str, "key": str, "label": int, "noise": str}, labels_path, index)
            if truth["image"] != record["image"] or truth["label"] not in (0, 1) or truth["noise"] not in KINDS:
                raise DataError(
                    f"{labels_path}: record {index}: expected the image of {pretrain_path} record {index} "
                    f"({record['image']!r}), label 0 or 1 and noise one of {', '.join(KINDS)}"
                )
            path = media(record["image"], pretrain_path, index)
            text = pre_caption(record["caption"], words)
            return FilterPair(truth["key"], (path,), text, truth["label"], truth["noise"], record["image"])

        pairs, skipped = collect_records(records, pretrain_path, parse, lambda pair: pair.sample_id, skip_bad=skip_bad)
        return self._dataset(WEB_SPLIT, root, pairs, fingerprint([pretrain_path, labels_path]), skipped)

    def _dataset(
        self, split: str, root: Path, pairs: list[FilterPair], data_fingerprint: str, skipped: list[SkippedSample]
    ) -> Dataset:
        return Dataset(
            task=self.name, split=split, root=root, samples=pairs, fingerprint=data_fingerprint,
            skipped=skipped, extra={"plan_fingerprint": pairs_fingerprint(pairs)},
        )

    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        score = resolve_score(model, ctx.protocol)
        threshold = resolve_threshold(ctx.protocol, score)
        # The recorded protocol says what ran: the score, its threshold and the exact pairs.
        ctx.protocol = {
            **ctx.protocol, "score": score, "threshold": threshold,
            "pair_plan_fingerprint": dataset.extra["plan_fingerprint"],
        }
        for ready, gather in encoded_samples(model, ctx.pending(dataset), ctx):
            for chunk, scores in ctx.map_batches(ready, partial(self._scores, ctx, model, score, gather), desc="filter"):
                ctx.predictions.add_many(
                    (pair.sample_id, {"score": value, "kept": value >= threshold, "label": pair.label, "kind": pair.kind})
                    for pair, value in zip(chunk, scores.tolist(), strict=True)
                )

    @staticmethod
    def _scores(ctx: RunContext, model: Any, score: str, gather: Gather, chunk: list[FilterPair]) -> torch.Tensor:
        with ctx.stage("filter_scores", items=len(chunk)):
            return _pair_scores(model, score, gather, chunk)

    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """``filtering_metrics`` at the recorded threshold, plus ``kept_<kind>``: the percent of
        each kind of pair the filter keeps (ideally 100 for clean, 0 for the others)."""
        pairs = [pair for pair in dataset.samples if pair.sample_id in predictions]
        if not pairs:
            return {}
        threshold = resolve_threshold(protocol, str(protocol.get("score", "itm")))
        scores = [predictions[pair.sample_id]["score"] for pair in pairs]
        metrics = filtering_metrics([pair.label for pair in pairs], scores, threshold)
        total, kept = Counter(pair.kind for pair in pairs), Counter()
        for pair, value in zip(pairs, scores, strict=True):
            kept[pair.kind] += value >= threshold
        return metrics | {f"kept_{kind}": 100.0 * kept[kind] / total[kind] for kind in KINDS if total[kind]}

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """Pairs by how far the filter's score sits from the threshold on the right side, so the
        worst are the confident mistakes: a noisy text kept with a high score, a true caption
        dropped with a low one. Shows the image, the text, its kind and the filter's decision."""
        pairs = {pair.sample_id: pair for pair in dataset.samples if pair.sample_id in predictions}
        threshold = resolve_threshold(protocol, str(protocol.get("score", "itm")))
        margins = {
            sid: (score - threshold) if pair.label else (threshold - score)
            for sid, pair in pairs.items()
            for score in (float(predictions[sid]["score"]),)
        }

        def example(sample_id: str) -> Example:
            pair, prediction = pairs[sample_id], predictions[sample_id]
            correct = bool(prediction["kept"]) == bool(pair.label)
            return Example(
                sample_id=sample_id,
                summary=f"{'right' if correct else 'wrong'}: score {prediction['score']:.3f} (threshold {threshold:g})",
                thumbs=(Thumb(pair.images[0], pair.kind),),
                lines=(
                    Line("text", (pair.text,)),
                    Line("truth", ("matches" if pair.label else f"noise ({pair.kind})",)),
                    Line("filter", ("kept" if prediction["kept"] else "removed",), (RIGHT if correct else WRONG,)),
                ),
            )

        return [section("pairs", margins, example, worst, best)]

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """A filter that cannot tell pairs apart: ROC-AUC 50 and average precision equal to the
        share of matching pairs (a random order); precision, recall, F1 and kept of keeping every
        text (no filter at all)."""
        if not dataset.samples:
            return {}
        share = sum(pair.label for pair in dataset.samples) / len(dataset.samples)
        levels = {"roc_auc": 50.0, "average_precision": 100.0 * share} if 0 < share < 1 else {}
        f1 = 2 * share / (1 + share)
        levels |= {"precision": 100.0 * share, "recall": 100.0 if share else 0.0, "f1": 100.0 * f1, "kept": 100.0}
        kinds = Counter(pair.kind for pair in dataset.samples)
        return levels | {f"kept_{kind}": 100.0 for kind in KINDS if kinds[kind]}

    def write_outputs(
        self, dataset: Dataset, predictions: Mapping[str, Any], run_dir: Path
    ) -> list[Path]:
        """The pairs the filter saw, with their truth: ``[{sample_id, image, text, label, kind}]``."""
        pairs = [
            {"sample_id": p.sample_id, "image": p.image, "text": p.text, "label": p.label, "kind": p.kind}
            for p in dataset.samples
        ]
        return [write_json_atomic(run_dir / f"{dataset.task}_{dataset.split}_pairs.json", pairs)]
