"""COCO and Flickr30k image-text retrieval, with BLIP's two-stage evaluation.

Stage one ranks every text for every image (and every image for every text) by the model's ITC
similarity (``harness.capabilities.image_text_similarity``: the cosine of the normalised
embeddings without a temperature for BLIP and CLIP; the maximum over query embeddings for BLIP-2). Stage two re-scores each query's top
``k_test`` candidates with the ITM head: score = ITM match logit + ITC similarity, every candidate
outside the top k keeps -100. An image is retrieved at the best rank of any of its captions.

BLIP re-ranks one query per forward pass (k_test pairs each). Here all pairs the pending queries
need, in both directions, are collected first; a pair chosen by both directions (an image's own
caption, a hard negative that is mutual) is scored once; and the pairs, sorted by image, go
through ``ImageTextMatcher.match`` in large batches mixing many images. The scores and ranks are
the same; the number of forward passes is not.

A sample is one image together with its captions: its prediction holds the image's
text-retrieval result and the image-retrieval result of each of its captions, so a resumed run
skips every query of a finished sample. Ranks are 1-based with ties counted against the target
(``harness.metrics.retrieval.ranks_of_targets``); ``top`` lists the ten best candidates as
indices: texts by position in the split's captions in sample order, images by sample position.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.annotations import fingerprint, read_json, require_fields
from harness.capabilities import ImageTextMatcher, TextFeatures, VisualFeatures, image_text_similarity
from harness.errors import CapabilityError, ConfigError, DataError
from harness.examples import RIGHT, WRONG, Example, ExampleSection, Line, Thumb, section
from harness.metrics.retrieval import ranks_of_targets, recall_at_k
from harness.task import Dataset, Task
from harness_tasks.images import ImageTask, encoded_samples
from harness_tasks.records import MediaPaths, collect_records, split_entry
from harness_tasks.text import pre_caption

if TYPE_CHECKING:
    import torch

    from harness.context import RunContext

RECALL_KS = (1, 5, 10)
TOP_STORED = 10
TOP_SHOWN = 5
"""Best candidates a report shows of a query."""
TEXT_BATCH = 256
"""Texts per ``encode_texts`` call (BLIP's evaluation uses 256; text encoding is cheap)."""
PAIRS_PER_IMAGE_IN_BATCH = 8
"""ITM pairs per ``match`` call, per image of ``--batch-size``: a pair is a short text attending to
one image's tokens, far cheaper than encoding the image, so batches of pairs are larger."""

ANNOTATION_FILES: dict[str, dict[str, str]] = {
    "coco": {"karpathy_test_5k": "coco_karpathy_test.json", "karpathy_val_5k": "coco_karpathy_val.json"},
    "flickr30k": {"karpathy_test_1k": "flickr30k_test.json", "karpathy_val_1k": "flickr30k_val.json"},
}
"""Annotation file of each split, by the task's data folder (BLIP's released file names)."""


@dataclass(frozen=True)
class CaptionedImage:
    """A retrieval sample: one image and its captions (already normalised with ``pre_caption``)."""

    sample_id: str
    images: tuple[Path]
    captions: tuple[str, ...]


@dataclass(frozen=True)
class QueryResult:
    """Where one query's correct candidate landed: 1-based rank and the best candidates."""

    rank: int
    top: list[int]

    def as_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "top": self.top}


# -- protocol -------------------------------------------------------------------------------------


def resolve_rerank(model: Any, protocol: Mapping[str, Any]) -> bool:
    """``rerank``: "auto" re-ranks when the model has an ITM head (BLIP) and keeps the ITC order
    otherwise (CLIP); true demands an ITM head; false never re-ranks."""
    value = protocol.get("rerank", "auto")
    if isinstance(value, str):
        value = {"auto": "auto", "true": True, "false": False}.get(value.strip().lower(), value)
    if value == "auto":
        return isinstance(model, ImageTextMatcher)
    if value is True:
        if not isinstance(model, ImageTextMatcher):
            raise CapabilityError(
                "protocol rerank=true needs a model with ImageTextMatcher (ITM); "
                "this model has none (use rerank=auto or false to rank by ITC similarity only)"
            )
        return True
    if value is False:
        return False
    raise ConfigError(f"rerank must be 'auto', true or false, got {value!r}")


def positive_int(protocol: Mapping[str, Any], key: str) -> int:
    value = protocol.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"protocol {key} must be a positive integer, got {value!r}")
    return value


# -- features -------------------------------------------------------------------------------------


def encode_texts(model: Any, texts: Sequence[str], ctx: RunContext) -> TextFeatures:
    """All texts' features in one TextFeatures; token ids are right-padded (mask 0) to the
    longest batch, so a model that pads per batch still yields one id matrix."""
    import torch

    parts: list[TextFeatures] = []
    with ctx.stage("encode_texts", items=len(texts)):
        for _, features in ctx.map_batches(list(texts), model.encode_texts, desc="encode texts", batch_size=TEXT_BATCH):
            parts.append(features)
    width = max(part.input_ids.shape[1] for part in parts)

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]))

    return TextFeatures(
        embeds=torch.cat([part.embeds for part in parts]),
        input_ids=torch.cat([pad(part.input_ids) for part in parts]),
        attention_mask=torch.cat([pad(part.attention_mask) for part in parts]),
    )


# -- ranking --------------------------------------------------------------------------------------


@dataclass
class _Group:
    """Queries finished together: some visual items (to-text queries) and their captions
    (to-visual queries), with their top-k candidates and where their pairs sit in the pair list."""

    visual: list[int]
    texts: list[int]
    to_text_idx: torch.Tensor | None = None
    to_text_sim: torch.Tensor | None = None
    to_visual_idx: torch.Tensor | None = None
    to_visual_sim: torch.Tensor | None = None
    pair_offset: int = 0


@dataclass
class GroupResult:
    """Results of one group: ``to_text[j]`` for ``visual[j]``; ``to_visual[j]`` for ``texts[j]``."""

    visual: list[int]
    texts: list[int]
    to_text: list[QueryResult]
    to_visual: list[QueryResult]


def _query_results(rows: torch.Tensor, targets: Sequence[Sequence[int]]) -> list[QueryResult]:
    ranks = ranks_of_targets(rows.float().cpu().numpy(), targets)
    top = rows.topk(min(TOP_STORED, rows.shape[1]), dim=1).indices.tolist()
    return [QueryResult(int(rank), best) for rank, best in zip(ranks, top, strict=True)]


class CrossModalRanker:
    """Ranks texts for visual items and visual items for texts, optionally re-ranked with ITM.

    ``visual`` and ``texts`` are the whole gallery; ``visual_texts[v]`` lists the text rows of
    visual item ``v`` and ``text_visual[t]`` the visual row of text ``t``. Shared by image and
    video retrieval: a video's features carry its frames' tokens concatenated, which the matcher
    attends to exactly as to one image's.
    """

    def __init__(
        self,
        model: Any,
        visual: VisualFeatures,
        texts: TextFeatures,
        visual_texts: Sequence[Sequence[int]],
        text_visual: Sequence[int],
        k_test: int,
        rerank: bool,
    ) -> None:
        self.model = model
        self.visual = visual
        self.texts = texts
        self.visual_texts = visual_texts
        self.text_visual = text_visual
        self.k_test = k_test
        self.rerank = rerank
        if visual.embeds is None:
            raise CapabilityError("retrieval needs ITC embeddings, but the model's visual features have none")
        self.sims = image_text_similarity(model, visual, texts)
        self.num_visual, self.num_texts = self.sims.shape

    def rank(self, queries: Sequence[int], group_size: int, ctx: RunContext) -> Iterator[GroupResult]:
        """Results for the visual items ``queries`` and their captions, ``group_size`` visual
        items at a time; with re-ranking, every group's ITM pairs are scored before it is yielded,
        so a caller that stores each group loses at most one group to an interruption."""
        groups = [
            _Group(visual=list(chunk), texts=[t for v in chunk for t in self.visual_texts[v]])
            for chunk in (queries[i : i + group_size] for i in range(0, len(queries), group_size))
        ]
        if not self.rerank:
            for group in groups:
                yield self._finish(group, None)
            return
        yield from self._rerank(groups, ctx)

    def _rerank(self, groups: list[_Group], ctx: RunContext) -> Iterator[GroupResult]:
        import torch

        k_text = min(self.k_test, self.num_texts)
        k_visual = min(self.k_test, self.num_visual)
        keys: list[torch.Tensor] = []
        owners: list[torch.Tensor] = []
        offset = 0
        device = self.sims.device
        for number, group in enumerate(groups):
            visual_rows = torch.tensor(group.visual, device=device)
            text_rows = torch.tensor(group.texts, device=device, dtype=torch.long)
            group.to_text_sim, group.to_text_idx = self.sims[visual_rows].topk(k_text, dim=1)
            group.to_visual_sim, group.to_visual_idx = self.sims[:, text_rows].T.topk(k_visual, dim=1)
            group_keys = torch.cat([
                (visual_rows[:, None] * self.num_texts + group.to_text_idx).flatten(),
                (group.to_visual_idx * self.num_texts + text_rows[:, None]).flatten(),
            ])
            group.pair_offset = offset
            offset += group_keys.numel()
            keys.append(group_keys)
            owners.append(torch.full_like(group_keys, number))
        all_keys = torch.cat(keys)
        owner = torch.cat(owners)
        # Each distinct pair is scored once, in the first group that needs it; within a group the
        # pairs are sorted by key, i.e. by visual item, so a batch holds runs of pairs per image.
        unique_keys, inverse = torch.unique(all_keys, return_inverse=True)
        first_owner = torch.full_like(unique_keys, len(groups)).scatter_reduce(0, inverse, owner, reduce="amin")
        order = torch.argsort(first_owner, stable=True)
        stream = unique_keys[order]
        ready_after = torch.cumsum(torch.bincount(first_owner, minlength=len(groups)), 0).tolist()
        scores = torch.empty(unique_keys.numel(), device=device)

        def finish(group: _Group) -> GroupResult:
            return self._finish(group, scores[inverse[group.pair_offset : group.pair_offset + self._pairs_in(group, k_text, k_visual)]])

        done = 0
        next_group = 0
        batch = max(1, ctx.batch_size * PAIRS_PER_IMAGE_IN_BATCH)
        with ctx.stage("itm_rerank", items=stream.numel()):
            for chunk, chunk_scores in ctx.map_batches(stream, self._match, desc="ITM re-rank", batch_size=batch):
                scores[order[done : done + len(chunk)]] = chunk_scores.to(device=device, dtype=scores.dtype)
                done += len(chunk)
                while next_group < len(groups) and ready_after[next_group] <= done:
                    yield finish(groups[next_group])
                    next_group += 1
        for group in groups[next_group:]:
            yield finish(group)

    @staticmethod
    def _pairs_in(group: _Group, k_text: int, k_visual: int) -> int:
        return len(group.visual) * k_text + len(group.texts) * k_visual

    def _match(self, keys: torch.Tensor) -> torch.Tensor:
        """ITM logits of the pairs encoded as ``visual * num_texts + text``, passing the model only
        the rows the batch uses."""
        import torch

        visual_rows, visual_pos = torch.unique(keys // self.num_texts, return_inverse=True)
        text_rows, text_pos = torch.unique(keys % self.num_texts, return_inverse=True)

        def pick(tensor: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
            return None if tensor is None else tensor[rows.to(tensor.device)]

        visual = VisualFeatures(embeds=pick(self.visual.embeds, visual_rows), tokens=pick(self.visual.tokens, visual_rows))
        texts = TextFeatures(
            embeds=pick(self.texts.embeds, text_rows),
            input_ids=pick(self.texts.input_ids, text_rows),
            attention_mask=pick(self.texts.attention_mask, text_rows),
        )
        return self.model.match(visual, texts, torch.stack([visual_pos, text_pos], dim=1))

    def _finish(self, group: _Group, itm: torch.Tensor | None) -> GroupResult:
        import torch

        text_targets = [self.visual_texts[v] for v in group.visual]
        visual_targets = [[self.text_visual[t]] for t in group.texts]
        if itm is None:
            to_text_rows = self.sims[group.visual]
            to_visual_rows = self.sims[:, group.texts].T
        else:
            split = len(group.visual) * group.to_text_idx.shape[1]
            to_text_rows = torch.full((len(group.visual), self.num_texts), -100.0, device=self.sims.device)
            to_text_rows.scatter_(1, group.to_text_idx, itm[:split].view_as(group.to_text_sim) + group.to_text_sim)
            to_visual_rows = torch.full((len(group.texts), self.num_visual), -100.0, device=self.sims.device)
            to_visual_rows.scatter_(1, group.to_visual_idx, itm[split:].view_as(group.to_visual_sim) + group.to_visual_sim)
        return GroupResult(
            visual=group.visual,
            texts=group.texts,
            to_text=_query_results(to_text_rows, text_targets),
            to_visual=_query_results(to_visual_rows, visual_targets) if group.texts else [],
        )


# -- the tasks ------------------------------------------------------------------------------------


def chance_recall_at_k(num_candidates: int, num_targets: int, k: int) -> float:
    """Percent chance that a random ranking of ``num_candidates`` puts at least one of
    ``num_targets`` correct ones in the top ``k``: 1 - C(N - m, k) / C(N, k)."""
    if k >= num_candidates:
        return 100.0
    miss = 1.0
    for j in range(num_targets):
        miss *= max(0, num_candidates - k - j) / (num_candidates - j)
    return 100.0 * (1.0 - miss)


class CaptionRetrievalTask(Task):
    """Retrieval between visual items (images or videos) and their captions.

    Subclasses say how a split is read and how one item is decoded and encoded; ranking,
    resume, metrics and reference levels are shared. ``TO_TEXT`` / ``TO_VISUAL`` name the two
    directions in predictions and metrics.
    """

    TO_TEXT = "i2t"
    TO_VISUAL = "t2i"
    VISUAL = "image"
    """What a visual item is called in a report."""

    def thumb(self, sample: Any, label: str = "", verdict: bool | None = None) -> Thumb:
        """How a report shows a visual item of the gallery."""
        return Thumb(sample.images[0], label, verdict)

    @abstractmethod
    def visual_features(
        self, model: Any, samples: Sequence[Any], ctx: RunContext
    ) -> tuple[list[Any], VisualFeatures | None]:
        """The samples whose media decoded and their features, rows in the same order; the
        others go to ``ctx.skip_or_raise``."""

    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        rerank = resolve_rerank(model, ctx.protocol)
        # The recorded protocol says what actually ran, not "auto".
        ctx.protocol = {**ctx.protocol, "rerank": rerank}
        k_test = positive_int(ctx.protocol, "k_test")
        pending = {sample.sample_id for sample in ctx.pending(dataset)}
        if not pending:
            return
        gallery, visual = self.visual_features(model, dataset.samples, ctx)
        if visual is None:
            return
        position = {sample.sample_id: i for i, sample in enumerate(dataset.samples)}
        text_base = _text_offsets(dataset.samples)
        texts: list[str] = []
        visual_texts: list[list[int]] = []
        text_visual: list[int] = []
        for row, sample in enumerate(gallery):
            visual_texts.append(list(range(len(texts), len(texts) + len(sample.captions))))
            text_visual += [row] * len(sample.captions)
            texts += sample.captions
        ranker = CrossModalRanker(
            model, visual, encode_texts(model, texts, ctx), visual_texts, text_visual, k_test, rerank
        )
        # Gallery rows and texts -> dataset-wide indices (stable whatever is skipped).
        visual_index = [position[sample.sample_id] for sample in gallery]
        text_index = [text_base[position[sample.sample_id]] + j for sample in gallery for j in range(len(sample.captions))]
        queries = [row for row, sample in enumerate(gallery) if sample.sample_id in pending]
        for result in ranker.rank(queries, max(1, ctx.batch_size), ctx):
            to_visual = iter(result.to_visual)
            for row, to_text in zip(result.visual, result.to_text, strict=True):
                own = [next(to_visual) for _ in gallery[row].captions]
                ctx.predictions.add(gallery[row].sample_id, {
                    self.TO_TEXT: _global(to_text, text_index).as_json(),
                    self.TO_VISUAL: [_global(query, visual_index).as_json() for query in own],
                })

    def _ranks(self, dataset: Dataset, predictions: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        to_text: list[int] = []
        to_visual: list[int] = []
        for sample in dataset.samples:
            prediction = predictions.get(sample.sample_id)
            if prediction is None:
                continue
            to_text.append(prediction[self.TO_TEXT]["rank"])
            to_visual += [query["rank"] for query in prediction[self.TO_VISUAL]]
        return to_text, to_visual

    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        to_text, to_visual = self._ranks(dataset, predictions)
        if not to_text:
            return {}
        return self.metrics_from_ranks(to_text, to_visual)

    def metrics_from_ranks(self, to_text: Sequence[int], to_visual: Sequence[int]) -> dict[str, float]:
        """BLIP's names: ``txt_r*`` (text retrieval, per image), ``img_r*`` (per caption), means."""
        metrics = {f"txt_r{k}": recall_at_k(to_text, k) for k in RECALL_KS}
        metrics |= {f"img_r{k}": recall_at_k(to_visual, k) for k in RECALL_KS}
        metrics["txt_r_mean"] = sum(metrics[f"txt_r{k}"] for k in RECALL_KS) / len(RECALL_KS)
        metrics["img_r_mean"] = sum(metrics[f"img_r{k}"] for k in RECALL_KS) / len(RECALL_KS)
        metrics["r_mean"] = (metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2
        return metrics

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """Both directions by the rank of the right candidate, worst first: a text query with its
        top 5 visual items (the right one marked, and shown after them when it ranked lower), and
        a visual query with its top 5 texts (its own captions marked)."""
        samples = dataset.samples
        texts = [caption for sample in samples for caption in sample.captions]
        owner = [i for i, sample in enumerate(samples) for _ in sample.captions]
        done = [(i, s) for i, s in enumerate(samples) if s.sample_id in predictions]
        if not done:
            return []
        queries = {f"{s.sample_id} #{j + 1}": (i, j) for i, s in done for j in range(len(s.captions))}

        def text_query(key: str) -> Example:
            i, j = queries[key]
            result = predictions[samples[i].sample_id][self.TO_VISUAL][j]
            top = result["top"][:TOP_SHOWN]
            thumbs = [self.thumb(samples[v], f"#{n}", RIGHT if v == i else WRONG) for n, v in enumerate(top, start=1)]
            if i not in top:
                thumbs.append(self.thumb(samples[i], f"right one: #{result['rank']}", RIGHT))
            return Example(key, f"right {self.VISUAL} at rank {result['rank']} of {len(samples)}",
                           tuple(thumbs), (Line("query", (samples[i].captions[j],)),))

        position = {s.sample_id: i for i, s in done}

        def visual_query(sample_id: str) -> Example:
            i = position[sample_id]
            result = predictions[sample_id][self.TO_TEXT]
            top = result["top"][:TOP_SHOWN]
            lines = [Line(f"top {len(top)} texts", tuple(texts[t] for t in top),
                          tuple(RIGHT if owner[t] == i else WRONG for t in top))]
            if result["rank"] > len(top):
                lines.append(Line("its captions", samples[i].captions))
            return Example(sample_id, f"first right text at rank {result['rank']} of {len(texts)}",
                           (self.thumb(samples[i]),), tuple(lines))

        by_text = {key: -float(predictions[samples[i].sample_id][self.TO_VISUAL][j]["rank"]) for key, (i, j) in queries.items()}
        by_visual = {s.sample_id: -float(predictions[s.sample_id][self.TO_TEXT]["rank"]) for _, s in done}
        return [
            section(f"text \u2192 {self.VISUAL} queries", by_text, text_query, worst, best),
            section(f"{self.VISUAL} \u2192 text queries", by_visual, visual_query, worst, best),
        ]

    def per_sample_metrics(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        """Per image: its text-retrieval recalls (100 or 0) and the mean image-retrieval recalls
        of its captions; the means over samples equal the metrics when every image has the same
        number of captions (the Karpathy test splits: 5)."""
        names = self.per_sample_names()
        result: dict[str, dict[str, float]] = {}
        for sample in dataset.samples:
            prediction = predictions.get(sample.sample_id)
            if prediction is None:
                continue
            text_rank = prediction[self.TO_TEXT]["rank"]
            visual_ranks = [query["rank"] for query in prediction[self.TO_VISUAL]]
            values = {names[0].format(k=k): 100.0 * (text_rank <= k) for k in RECALL_KS}
            values |= {names[1].format(k=k): recall_at_k(visual_ranks, k) for k in RECALL_KS}
            result[sample.sample_id] = values
        return result

    def per_sample_names(self) -> tuple[str, str]:
        return "txt_r{k}", "img_r{k}"

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """Expected metrics of a uniformly random ranking of this split."""
        if not dataset.samples:
            return {}
        num_visual = len(dataset.samples)
        num_texts = sum(len(sample.captions) for sample in dataset.samples)
        to_text = {k: sum(chance_recall_at_k(num_texts, len(s.captions), k) for s in dataset.samples) / num_visual for k in RECALL_KS}
        to_visual = {k: chance_recall_at_k(num_visual, 1, k) for k in RECALL_KS}
        return self.chance_metrics(to_text, to_visual, num_texts, num_visual)

    def chance_metrics(
        self, to_text: Mapping[int, float], to_visual: Mapping[int, float], num_texts: int, num_visual: int
    ) -> dict[str, float]:
        levels = {f"txt_r{k}": to_text[k] for k in RECALL_KS} | {f"img_r{k}": to_visual[k] for k in RECALL_KS}
        levels["txt_r_mean"] = sum(to_text.values()) / len(RECALL_KS)
        levels["img_r_mean"] = sum(to_visual.values()) / len(RECALL_KS)
        levels["r_mean"] = (levels["txt_r_mean"] + levels["img_r_mean"]) / 2
        return levels


def _text_offsets(samples: Sequence[CaptionedImage]) -> list[int]:
    offsets, total = [], 0
    for sample in samples:
        offsets.append(total)
        total += len(sample.captions)
    return offsets


def _global(result: QueryResult, index: Sequence[int]) -> QueryResult:
    return QueryResult(result.rank, [index[i] for i in result.top])


class ImageTextRetrievalTask(CaptionRetrievalTask, ImageTask):
    """COCO (Karpathy 5k) and Flickr30k (1k) retrieval, fine-tuned or zero-shot."""

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        files = split_entry(self.name, split, ANNOTATION_FILES.get(self.spec.data_dir, {}))
        root = data_root / self.spec.data_dir
        path = root / "annotations" / files
        max_words = positive_int(protocol, "max_words")
        media = MediaPaths(root / "images")

        def parse(record: Any, index: int) -> CaptionedImage:
            require_fields(record, {"image": str, "caption": list[str]}, path, index)
            if not record["caption"]:
                raise DataError(f"{path}: record {index}: field 'caption' is empty (expected at least one caption)")
            image = media(record["image"], path, index)
            captions = tuple(pre_caption(caption, max_words) for caption in record["caption"])
            return CaptionedImage(sample_id=record["image"], images=(image,), captions=captions)

        samples, skipped = collect_records(read_json(path), path, parse, lambda s: s.sample_id, skip_bad=skip_bad)
        return Dataset(
            task=self.name, split=split, root=root, samples=samples, fingerprint=fingerprint([path]), skipped=skipped
        )

    def visual_features(
        self, model: Any, samples: Sequence[CaptionedImage], ctx: RunContext
    ) -> tuple[list[CaptionedImage], VisualFeatures | None]:
        gallery: list[CaptionedImage] = []
        parts: list[VisualFeatures] = []
        for ready, gather in encoded_samples(model, samples, ctx):
            gallery += ready
            parts += gather(ready)
        return gallery, VisualFeatures.concat(parts) if parts else None

