"""MSRVTT text-video retrieval and MSRVTT-QA / MSVD-QA, zero-shot as in the BLIP paper.

A video is a stack of frames decoded with decord (``harness.media.load_video_frames``), scaled to
``image_size`` by decord itself as BLIP's video loader does (``frame_resize=decord``; ``pil``
decodes at native size and lets the model's preprocessing resize); the model's ``VideoEncoder``
pools them its own way (BLIP: the frames' projected CLS averaged, then normalised; the tokens of
all frames concatenated for cross-attention). Retrieval then runs
exactly the image-text ranking of ``tasks/retrieval.py`` (ITC shortlist, ITM re-rank of the top
``k_test``), with videos in place of images. Video QA encodes each video once and answers all
of its questions with the model's ``VisualQuestionAnswerer``, by ranking the answer list (the
default) or by generation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.annotations import fingerprint, read_json, read_jsonl, require_fields, resolve_media_path
from harness.cache import cached_batches, feature_store
from harness.capabilities import VisualFeatures
from harness.errors import ConfigError, DataError
from harness.examples import RIGHT, WRONG, Example, ExampleSection, Line, Thumb, section
from harness.media import FRAME_SAMPLINGS, decoder_threads, load_video_frames, pixel_batches
from harness.metrics.classification import accuracy
from harness.metrics.retrieval import mean_rank, median_rank, recall_at_k
from harness.task import Dataset, Task
from harness_tasks.images import encode_halving
from harness_tasks.records import collect_records, split_entry
from harness_tasks.retrieval import RECALL_KS, CaptionRetrievalTask, positive_int
from harness_tasks.text import pre_caption, pre_question
from harness_tasks.vqa import answer_mode, answer_settings, read_answer_list

if TYPE_CHECKING:
    from harness.context import RunContext

VIDEO_SUFFIX = ".mp4"
RETRIEVAL_FILES = {"test_1k_a": "msrvtt_test.jsonl"}
QA_FILES: dict[str, dict[str, tuple[str, str]]] = {
    "msrvtt": {"test": ("msrvtt_qa_test.json", "msrvtt_qa_answer_list.json")},
    "msvd": {"test": ("msvd_qa_test.json", "msvd_qa_answer_list.json")},
}
"""Question file and answer list of each split, by the task's data folder."""
OFFICIAL_MSVD_QA: dict[str, str] = {"test": "test_qa.json"}
"""The official MSVD-QA release's question file of each split (Xu et al. 2017), read when the
harness's own file is absent: ``{"id", "question", "answer", "video_id"}`` records whose integer
``video_id`` N names ``vidN`` in ``youtube_mapping.txt``."""
MSVD_MAPPING = "youtube_mapping.txt"
QA_FRAMES_SHOWN = 3
"""Frames a report shows of a question's video, so questions about motion can be judged."""


def frame_settings(protocol: Mapping[str, Any]) -> tuple[int, str]:
    """``num_frames`` and ``frame_sampling`` from the protocol, validated."""
    sampling = protocol.get("frame_sampling")
    if sampling not in FRAME_SAMPLINGS:
        raise ConfigError(f"frame_sampling must be one of {', '.join(FRAME_SAMPLINGS)}, got {sampling!r}")
    return positive_int(protocol, "num_frames"), sampling


FRAME_RESIZES = ("decord", "pil")
"""``frame_resize``: ``decord`` scales frames to ``image_size`` while decoding, as BLIP's video
loader does; ``pil`` decodes at native size and leaves the resize to the model's preprocessing."""


def decode_size(protocol: Mapping[str, Any]) -> int | None:
    """The side decord scales frames to (``image_size`` under ``frame_resize=decord``), or None
    for a native-size decode."""
    resize = protocol.get("frame_resize")
    if resize not in FRAME_RESIZES:
        raise ConfigError(f"frame_resize must be one of {', '.join(FRAME_RESIZES)}, got {resize!r}")
    return positive_int(protocol, "image_size") if resize == "decord" else None


def encoded_videos(
    model: Any, videos: Sequence[Path], ctx: RunContext
) -> Iterator[tuple[list[Path], VisualFeatures | None, list[tuple[Path, DataError]]]]:
    """Decode (in DataLoader workers with ``--num-workers``) and encode ``videos`` in batches of
    ``--batch-size`` videos: ``(decoded videos, their features, failures)`` per batch. A batch
    that runs out of accelerator memory is encoded in halves. With a feature cache, cached
    videos come first, read from disk."""
    num_frames, sampling = frame_settings(ctx.protocol)
    size = decode_size(ctx.protocol)
    store = feature_store(
        ctx, model, media="video", num_frames=num_frames, frame_sampling=sampling, frame_resize=ctx.protocol["frame_resize"]
    )
    cached, videos = store.split(list(videos)) if store is not None else ([], videos)
    yield from cached_batches(store, cached, ctx)
    load = partial(
        load_video_frames, num_frames=num_frames, sampling=sampling, num_threads=decoder_threads(ctx.num_workers),
        size=size,
    )
    batches = pixel_batches(videos, load, model.preprocess, ctx.batch_size, ctx.num_workers)
    total = -(-len(videos) // ctx.batch_size)
    for good, frames, failed in ctx.progress(batches, total=total, desc="encode videos"):
        if frames is None:
            yield [], None, failed
            continue
        with ctx.stage("encode_videos", items=len(good)):
            visual = encode_halving(ctx, model.encode_videos, frames)
        if store is not None:
            store.save(good, visual)
        yield good, visual, failed


def unreadable_videos(users: Mapping[Path, Sequence[str]], protocol: Mapping[str, Any], max_workers: int = 8) -> list[str]:
    """One problem line per video that does not yield the protocol's frames, naming the samples
    that need it (decord decodes outside the GIL, so threads check a split in parallel)."""
    num_frames, sampling = frame_settings(protocol)
    size = decode_size(protocol)

    def problem(path: Path) -> str | None:
        try:
            load_video_frames(path, num_frames, sampling, size=size)
        except DataError as error:
            needed = list(users[path])
            more = f" and {len(needed) - 3} more" if len(needed) > 3 else ""
            return f"{error} (needed by sample {', '.join(needed[:3])}{more})"
        return None

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return [line for line in pool.map(problem, users) if line is not None]


def read_youtube_mapping(path: Path) -> dict[int, str]:
    """The official MSVD release's ``youtube_mapping.txt``: one ``<clip name> vid<N>`` per line
    (``-4wsuPCjDBc_5_15 vid1``) -> {N: clip name}; the clip's file is ``<clip name>.avi``."""
    if not path.is_file():
        raise DataError(f"{path}: missing; the official MSVD-QA questions name videos by video_id, which this file maps to clip names")
    clips: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("vid") or not parts[1][3:].isdigit():
            raise DataError(f"{path}: line {number}: expected '<clip name> vid<N>', got {line!r}")
        clips[int(parts[1][3:])] = parts[0]
    return clips


def _media_root(data_root: Path, data_dir: str) -> Path:
    return data_root / data_dir / "videos"


# -- retrieval ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionedVideo:
    """A retrieval sample: one clip and its captions (after ``pre_caption``)."""

    sample_id: str
    video: Path
    captions: tuple[str, ...]


class VideoTextRetrievalTask(CaptionRetrievalTask):
    """MSRVTT 1k-A text-to-video and video-to-text retrieval."""

    TO_TEXT = "v2t"
    TO_VISUAL = "t2v"
    VISUAL = "video"

    def thumb(self, sample: Any, label: str = "", verdict: bool | None = None) -> Thumb:
        return Thumb(sample.video, label, verdict, frames=1)

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        root = data_root / self.spec.data_dir
        path = root / "annotations" / split_entry(self.name, split, RETRIEVAL_FILES)
        max_words = positive_int(protocol, "max_words")
        frame_settings(protocol)
        decode_size(protocol)
        media_root = _media_root(data_root, self.spec.data_dir)
        videos: dict[str, Path] = {}

        def parse(record: Any, index: int) -> tuple[int, str, str]:
            require_fields(record, {"clip_name": str, "caption": str}, path, index)
            name = record["clip_name"]
            if name not in videos:
                videos[name] = resolve_media_path(media_root, name + VIDEO_SUFFIX, path, index)
            return index, name, pre_caption(record["caption"], max_words)

        # A clip may have several caption lines, so lines are keyed by position, not by clip.
        lines, skipped = collect_records(read_jsonl(path), path, parse, lambda line: str(line[0]), skip_bad=skip_bad)
        captions: dict[str, list[str]] = {}
        for _, name, caption in lines:
            captions.setdefault(name, []).append(caption)
        samples = [CaptionedVideo(name, videos[name], tuple(texts)) for name, texts in captions.items()]
        return Dataset(
            task=self.name, split=split, root=root, samples=samples, fingerprint=fingerprint([path]), skipped=skipped
        )

    def check(self, data_root: Path, split: str, protocol: Mapping[str, Any]) -> list[str]:
        try:
            dataset = self.load(data_root, split, protocol, skip_bad=True)
        except DataError as error:
            return [str(error)]
        problems = [f"{item.sample_id}: {item.reason}" for item in dataset.skipped]
        return problems + unreadable_videos({s.video: [s.sample_id] for s in dataset.samples}, protocol)

    def visual_features(
        self, model: Any, samples: Sequence[CaptionedVideo], ctx: RunContext
    ) -> tuple[list[CaptionedVideo], VisualFeatures | None]:
        by_video = {sample.video: sample for sample in samples}
        gallery: list[CaptionedVideo] = []
        parts: list[VisualFeatures] = []
        for good, visual, failed in encoded_videos(model, list(by_video), ctx):
            for video, error in failed:
                if by_video[video].sample_id not in ctx.predictions:
                    ctx.skip_or_raise(by_video[video].sample_id, error)
            if visual is not None:
                gallery += [by_video[video] for video in good]
                parts.append(visual)
        return gallery, VisualFeatures.concat(parts) if parts else None

    def metrics_from_ranks(self, to_text: Sequence[int], to_visual: Sequence[int]) -> dict[str, float]:
        """``t2v_*`` (text-to-video, per caption) and ``v2t_*`` (per video): R@1/5/10, median
        and mean rank, the names of ``harness.metrics.retrieval.video_text_retrieval_metrics``."""
        metrics: dict[str, float] = {}
        for prefix, ranks in (("t2v", to_visual), ("v2t", to_text)):
            metrics |= {f"{prefix}_r{k}": recall_at_k(ranks, k) for k in RECALL_KS}
            metrics[f"{prefix}_median_rank"] = median_rank(ranks)
            metrics[f"{prefix}_mean_rank"] = mean_rank(ranks)
        return metrics

    def per_sample_names(self) -> tuple[str, str]:
        return "v2t_r{k}", "t2v_r{k}"

    def chance_metrics(
        self, to_text: Mapping[int, float], to_visual: Mapping[int, float], num_texts: int, num_visual: int
    ) -> dict[str, float]:
        """Random-ranking recalls, and the expected rank of a random ranking, (N + 1) / 2 for
        one correct candidate among N (also the median of that uniform rank)."""
        levels = {f"t2v_r{k}": to_visual[k] for k in RECALL_KS} | {f"v2t_r{k}": to_text[k] for k in RECALL_KS}
        per_video = num_texts / num_visual
        levels["t2v_median_rank"] = levels["t2v_mean_rank"] = (num_visual + 1) / 2
        levels["v2t_median_rank"] = levels["v2t_mean_rank"] = (num_texts + 1) / (per_video + 1)
        return levels


# -- question answering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoQuestion:
    sample_id: str
    question: str
    """After ``pre_question``, as the model sees it."""
    video: Path
    answer: str


def normalise_answer(answer: str) -> str:
    """Case and spacing do not count: MSRVTT-QA and MSVD-QA answers are single lowercase words,
    and a generated answer must match one exactly otherwise."""
    return " ".join(answer.lower().split())


class VideoQATask(Task):
    """MSRVTT-QA and MSVD-QA: top-1 accuracy of one answer per question."""

    def load(
        self, data_root: Path, split: str, protocol: Mapping[str, Any], *, skip_bad: bool = False
    ) -> Dataset:
        answer_mode(protocol)
        answer_settings(protocol)
        frame_settings(protocol)
        decode_size(protocol)
        root = data_root / self.spec.data_dir
        questions_name, answers_name = split_entry(self.name, split, QA_FILES.get(self.spec.data_dir, {}))
        path = root / "annotations" / questions_name
        answers_path = root / "annotations" / answers_name
        max_words = positive_int(protocol, "max_question_words")
        media_root = _media_root(data_root, self.spec.data_dir)

        official = self.spec.data_dir == "msvd" and not path.exists() and split in OFFICIAL_MSVD_QA
        if official:
            path = root / "annotations" / OFFICIAL_MSVD_QA[split]
            clips = read_youtube_mapping(root / "annotations" / MSVD_MAPPING)

        def parse(record: Any, index: int) -> VideoQuestion:
            if official:
                require_fields(record, {"id": int, "question": str, "answer": str, "video_id": int}, path, index)
                clip = clips.get(record["video_id"])
                if clip is None:
                    raise DataError(f"{path}: record {index}: video_id {record['video_id']} is not in {MSVD_MAPPING}")
                record = {"question_id": record["id"], "question": record["question"], "answer": record["answer"],
                          "video": f"{clip}.avi"}
            require_fields(record, {"question_id": (int, str), "question": str, "answer": str, "video": str}, path, index)
            return VideoQuestion(
                sample_id=str(record["question_id"]),
                question=pre_question(record["question"], max_words),
                video=resolve_media_path(media_root, record["video"], path, index),
                answer=record["answer"],
            )

        samples, skipped = collect_records(read_json(path), path, parse, lambda s: s.sample_id, skip_bad=skip_bad)
        return Dataset(
            task=self.name, split=split, root=root, samples=samples,
            fingerprint=fingerprint([path, *([answers_path] if answers_path.exists() else []),
                                     *([root / "annotations" / MSVD_MAPPING] if official else [])]),
            skipped=skipped,
            # Generation needs no candidate list (the official MSVD-QA release ships none).
            extra={"answer_list": read_answer_list(answers_path)
                   if answer_mode(protocol) == "rank" or answers_path.exists() else []},
        )

    def check(self, data_root: Path, split: str, protocol: Mapping[str, Any]) -> list[str]:
        try:
            dataset = self.load(data_root, split, protocol, skip_bad=True)
        except DataError as error:
            return [str(error)]
        users: dict[Path, list[str]] = {}
        for sample in dataset.samples:
            users.setdefault(sample.video, []).append(sample.sample_id)
        return [f"{item.sample_id}: {item.reason}" for item in dataset.skipped] + unreadable_videos(users, protocol)

    def evaluate(self, model: Any, dataset: Dataset, ctx: RunContext) -> None:
        mode = answer_mode(ctx.protocol)
        answer_list: list[str] = dataset.extra["answer_list"]
        k = min(positive_int(ctx.protocol, "k_test"), len(answer_list))
        settings = answer_settings(ctx.protocol)
        questions: dict[Path, list[VideoQuestion]] = {}
        for sample in ctx.pending(dataset):
            questions.setdefault(sample.video, []).append(sample)

        def answer(batch: Sequence[tuple[VideoQuestion, int]], visual: VisualFeatures) -> list[str]:
            import torch

            rows = torch.tensor([row for _, row in batch], device=visual.tokens.device)
            picked = VisualFeatures(
                embeds=None if visual.embeds is None else visual.embeds[rows.to(visual.embeds.device)],
                tokens=visual.tokens[rows],
            )
            texts = [sample.question for sample, _ in batch]
            with ctx.stage("answer_questions", items=len(batch)):
                if mode == "generate":
                    return list(model.answer(picked, texts, settings))
                picks = [int(pick) for pick in model.rank_answers(picked, texts, answer_list, k)]
            if any(not 0 <= pick < len(answer_list) for pick in picks):
                raise ValueError(f"rank_answers returned an index outside the answer list of {len(answer_list)}: {picks}")
            return [answer_list[pick] for pick in picks]

        for good, visual, failed in encoded_videos(model, list(questions), ctx):
            for video, error in failed:
                for sample in questions[video]:
                    ctx.skip_or_raise(sample.sample_id, DataError(f"{error} (needed by question {sample.sample_id})"))
            if visual is None:
                continue
            batch = [(sample, row) for row, video in enumerate(good) for sample in questions[video]]
            for chunk, answers in ctx.map_batches(batch, partial(answer, visual=visual), desc="answer"):
                ctx.predictions.add_many((sample.sample_id, text) for (sample, _), text in zip(chunk, answers, strict=True))

    def _answered(self, dataset: Dataset, predictions: Mapping[str, Any]) -> list[VideoQuestion]:
        return [sample for sample in dataset.samples if sample.sample_id in predictions]

    def score(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, float]:
        """``accuracy``: percent of questions whose answer equals the ground truth (after
        ``normalise_answer``)."""
        answered = self._answered(dataset, predictions)
        if not answered:
            return {}
        return {
            "accuracy": accuracy(
                [normalise_answer(predictions[s.sample_id]) for s in answered],
                [normalise_answer(s.answer) for s in answered],
            )
        }

    def per_sample_metrics(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        return {
            s.sample_id: {"accuracy": 100.0 * (normalise_answer(predictions[s.sample_id]) == normalise_answer(s.answer))}
            for s in self._answered(dataset, predictions)
        }

    def reference_levels(self, dataset: Dataset, protocol: Mapping[str, Any]) -> dict[str, float]:
        """``accuracy`` of giving every question the split's most frequent answer."""
        if not dataset.samples:
            return {}
        answers = [normalise_answer(sample.answer) for sample in dataset.samples]
        majority = Counter(answers).most_common(1)[0][0]
        return {"accuracy": accuracy([majority] * len(answers), answers)}

    def examples(
        self, dataset: Dataset, predictions: Mapping[str, Any], protocol: Mapping[str, Any],
        worst: int, best: int,
    ) -> list[ExampleSection]:
        """Wrong answers first, then right ones: the video (three frames), the question,
        the answer and the ground truth."""
        correct = {sid: values["accuracy"] for sid, values in self.per_sample_metrics(dataset, predictions, protocol).items()}
        samples = {s.sample_id: s for s in dataset.samples}

        def example(sample_id: str) -> Example:
            sample, right = samples[sample_id], correct[sample_id] > 0
            return Example(
                sample_id=sample_id,
                summary="right" if right else "wrong",
                thumbs=(Thumb(sample.video, frames=QA_FRAMES_SHOWN),),
                lines=(
                    Line("question", (sample.question,)),
                    Line("answer", (predictions[sample_id],), (RIGHT if right else WRONG,)),
                    Line("ground truth", (sample.answer,)),
                ),
            )

        return [section("questions", correct, example, worst, best)] if correct else []
