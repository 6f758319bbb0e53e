"""The toy suite's train splits as tensors, for ``harness toy train``.

Every image is decoded and preprocessed once, exactly as evaluation does it (``load_image`` and
``blip_pixels``: PIL bicubic resize, BLIP's mean and std), so the model learns the pixel
statistics it is evaluated on and a changed normalisation shows up as a regression. Texts go
through the same ``pre_caption`` / ``pre_question`` as the tasks' loaders. No augmentation: the
toy captions name left and right, which a horizontal flip would falsify.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import DataError
from harness.media import load_image, load_video_frames
from harness_plugins.common.preprocess import blip_pixels
from harness_tasks.text import pre_caption, pre_question

CAPTION_MAX_WORDS = 30
NLVR2_MAX_WORDS = 40
QUESTION_MAX_WORDS = 50
VIDEO_QA_FRAMES = 16
"""MSRVTT-QA / MSVD-QA evaluate with 16 uniformly sampled frames; training sees the same frames."""


@dataclass
class CaptionSet:
    """Images (N, 3, S, S) and captions; ``image_of[i]`` is the row of caption i's image."""

    pixels: torch.Tensor
    captions: list[str]
    image_of: torch.Tensor


@dataclass
class VQASet:
    """Question i asks about image ``image_of[i]``; its distinct answers and their weights
    (the share of annotators who gave each), as BLIP's VQA training weights them."""

    pixels: torch.Tensor
    questions: list[str]
    image_of: torch.Tensor
    answers: list[list[str]]
    weights: list[list[float]]


@dataclass
class NLVR2Set:
    pixels: torch.Tensor
    sentences: list[str]
    left: torch.Tensor
    right: torch.Tensor
    labels: torch.Tensor


@dataclass
class DialogSet:
    """One VisDial round per entry: its image row, the text before the answer (caption, history,
    question, as the ranker joins them) and the candidate answers with the true one's index."""

    pixels: torch.Tensor
    contexts: list[str]
    image_of: torch.Tensor
    candidates: list[list[str]]
    gt_index: torch.Tensor


@dataclass
class VideoQASet:
    """Frames (V, F, 3, S, S) per video; question i asks about video ``video_of[i]``."""

    frames: torch.Tensor
    questions: list[str]
    video_of: torch.Tensor
    answers: list[str]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: toy train split missing; rebuild the suite with `harness toy build`") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc


def _pixels(paths: Sequence[Path], image_size: int) -> tuple[torch.Tensor, dict[Path, int]]:
    """Distinct images in first-seen order, preprocessed as evaluation does, and their rows."""
    rows = {path: index for index, path in enumerate(dict.fromkeys(paths))}
    return blip_pixels([load_image(path) for path in rows], image_size), rows


def caption_set(root: Path, image_size: int) -> CaptionSet:
    """COCO and Flickr30k Karpathy train captions (one record per caption)."""
    records = []
    for folder, name in (("coco", "coco_karpathy_train.json"), ("flickr30k", "flickr30k_train.json")):
        records += [(root / folder / "images" / r["image"], r["caption"]) for r in _read_json(root / folder / "annotations" / name)]
    pixels, rows = _pixels([path for path, _ in records], image_size)
    return CaptionSet(
        pixels,
        [pre_caption(caption, CAPTION_MAX_WORDS) for _, caption in records],
        torch.tensor([rows[path] for path, _ in records]),
    )


def vqa_set(root: Path, image_size: int) -> VQASet:
    records = _read_json(root / "vqav2" / "annotations" / "vqa_train.json")
    pixels, rows = _pixels([root / "vqav2" / "images" / r["image"] for r in records], image_size)
    answers, weights = [], []
    for record in records:
        counts = Counter(record["answer"])
        answers.append(list(counts))
        weights.append([n / len(record["answer"]) for n in counts.values()])
    return VQASet(
        pixels,
        [pre_question(r["question"], QUESTION_MAX_WORDS) for r in records],
        torch.tensor([rows[root / "vqav2" / "images" / r["image"]] for r in records]),
        answers,
        weights,
    )


def nlvr2_set(root: Path, image_size: int) -> NLVR2Set:
    records = _read_json(root / "nlvr2" / "annotations" / "nlvr_train.json")
    images = root / "nlvr2" / "images"
    pixels, rows = _pixels([images / p for r in records for p in r["images"]], image_size)
    return NLVR2Set(
        pixels,
        [pre_caption(r["sentence"], NLVR2_MAX_WORDS) for r in records],
        torch.tensor([rows[images / r["images"][0]] for r in records]),
        torch.tensor([rows[images / r["images"][1]] for r in records]),
        torch.tensor([int(r["label"] == "True") for r in records]),
    )


def dialog_set(root: Path, image_size: int, history_rounds: int) -> DialogSet:
    """VisDial v1.0 train rounds, their texts joined as ``retrieval.dialog_text`` joins them."""
    from harness.capabilities import DialogContext
    from harness_plugins.blip.heads.retrieval import dialog_text

    data = _read_json(root / "visdial" / "annotations" / "visdial_1.0_train.json")["data"]
    questions, answers = data["questions"], data["answers"]
    paths, contexts, candidates, gt_index = [], [], [], []
    for dialog in data["dialogs"]:
        history: list[tuple[str, str]] = []
        path = root / "visdial" / "images" / f"COCO_train2014_{dialog['image_id']:012d}.jpg"
        for turn in dialog["dialog"]:
            question = questions[turn["question"]]
            context = DialogContext(caption=dialog["caption"], history=tuple(history[-history_rounds:]), question=question)
            paths.append(path)
            contexts.append(dialog_text(context, "", history_rounds))
            candidates.append([answers[option] for option in turn["answer_options"]])
            gt_index.append(turn["gt_index"])
            history.append((question, answers[turn["answer"]]))
    pixels, rows = _pixels(paths, image_size)
    return DialogSet(pixels, contexts, torch.tensor([rows[p] for p in paths]), candidates, torch.tensor(gt_index))


def video_qa_set(root: Path, image_size: int, datasets: Sequence[str] = ("msrvtt", "msvd")) -> VideoQASet:
    """MSRVTT-QA and MSVD-QA train questions with the frames their tasks evaluate on."""
    videos: dict[Path, int] = {}
    questions, video_of, answers = [], [], []
    for name in datasets:
        for record in _read_json(root / name / "annotations" / f"{name}_qa_train.json"):
            path = root / name / "videos" / record["video"]
            video_of.append(videos.setdefault(path, len(videos)))
            questions.append(pre_question(record["question"], QUESTION_MAX_WORDS))
            answers.append(record["answer"])
    frames = torch.stack(
        [blip_pixels(load_video_frames(path, VIDEO_QA_FRAMES, "uniform"), image_size) for path in videos]
    )
    return VideoQASet(frames, questions, torch.tensor(video_of), answers)
