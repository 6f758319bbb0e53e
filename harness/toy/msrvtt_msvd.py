"""MSRVTT retrieval (JSONL, ``{clip_name, caption}``) and MSRVTT-QA / MSVD-QA
(``{question_id, question, answer, video}`` + answer list), on toy mp4 clips of moving shapes.

The MSRVTT test split has one caption per video like the 1k-A split; the train JSONL has several.
MSRVTT-QA asks about the MSRVTT clips; MSVD-QA has its own clips, as in the real benchmarks.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from harness.toy.captions import clip_captions
from harness.toy.output import stream, write_json, write_jsonl
from harness.toy.questions import VIDEO_QA_ANSWERS, clip_questions
from harness.toy.scenes import Clip, Palette, motion_clip, split_items
from harness.toy.sizes import (
    MSRVTT_TRAIN_CAPTIONS_PER_VIDEO,
    MSRVTT_VIDEOS,
    MSVD_VIDEOS,
    VIDEO_QA_PER_VIDEO,
)
from harness.toy.video import write_clip

PALETTE = Palette()


def _clips(seed: int, dataset: str, sizes: dict[str, int]) -> dict[str, list[Clip]]:
    """Clips per split: train may repeat a signature, test never does."""
    return {
        split: split_items(
            partial(motion_clip, stream(seed, dataset, split, "clips"), PALETTE), n, split != "train"
        )
        for split, n in sizes.items()
    }


def _write_qa(annotations: Path, seed: int, dataset: str, videos: dict[str, list[tuple[str, Clip]]]) -> None:
    """``{dataset}_qa_{split}.json`` for each split, question ids unique across splits."""
    next_id = 0
    for split, named in videos.items():
        rng = stream(seed, dataset, split, "qa")
        records = []
        for name, clip in named:
            for qa in rng.sample(clip_questions(clip), VIDEO_QA_PER_VIDEO[split]):
                records.append(
                    {
                        "question_id": next_id,
                        "question": qa.question,
                        "answer": qa.answer,
                        "video": f"{name}.mp4",
                    }
                )
                next_id += 1
        write_json(annotations / f"{dataset}_qa_{split}.json", records)
    write_json(annotations / f"{dataset}_qa_answer_list.json", list(VIDEO_QA_ANSWERS))


def _encode_all(videos_dir: Path, videos: dict[str, list[tuple[str, Clip]]]) -> None:
    for named in videos.values():
        for name, clip in named:
            write_clip(clip, videos_dir / f"{name}.mp4")


def build_msrvtt(root: Path, seed: int) -> None:
    """msrvtt/videos/video<N>.mp4, msrvtt/annotations/msrvtt_{train,test}.jsonl and the QA files."""
    clips = _clips(seed, "msrvtt", MSRVTT_VIDEOS)
    videos = {
        "train": [(f"video{i}", clip) for i, clip in enumerate(clips["train"])],
        "test": [(f"video{7010 + i}", clip) for i, clip in enumerate(clips["test"])],
    }
    _encode_all(root / "videos", videos)
    per_video = {"train": MSRVTT_TRAIN_CAPTIONS_PER_VIDEO, "test": 1}
    for split, named in videos.items():
        rng = stream(seed, "msrvtt", split, "captions")
        write_jsonl(
            root / "annotations" / f"msrvtt_{split}.jsonl",
            (
                {"clip_name": name, "caption": caption}
                for name, clip in named
                for caption in clip_captions(clip, rng, per_video[split])
            ),
        )
    _write_qa(root / "annotations", seed, "msrvtt", videos)


def build_msvd(root: Path, seed: int) -> None:
    """msvd/videos/vid<N>.mp4 and msvd/annotations/msvd_qa_{train,test}.json + answer list."""
    clips = _clips(seed, "msvd", MSVD_VIDEOS)
    numbers = iter(range(1, sum(MSVD_VIDEOS.values()) + 1))
    videos = {
        split: [(f"vid{next(numbers)}", clip) for clip in split_clips] for split, split_clips in clips.items()
    }
    _encode_all(root / "videos", videos)
    _write_qa(root / "annotations", seed, "msvd", videos)
