"""Small models that implement the capability protocols with real torch ops, for testing task logic.

They read an item's identity from its pixels (the red channel of a flat-colour image or video:
``colour_of(i)``) and a text's from the numbers in it ("item 3 view 1"), so a test knows exactly
which ranking each model must produce: ``CircleModel`` places everything on a half circle where
an item's own captions are its nearest texts (ITC alone is perfect), and its optional ITM rule
can disagree with ITC to prove the re-rank is applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

from harness.capabilities import GenerationSettings, TextFeatures, VisualFeatures

STEP = 0.2
"""Angle between consecutive items on the circle; caption j of item i sits at i*STEP + 0.01*(j+1)."""


def colour_of(item: int) -> tuple[int, int, int]:
    return (10 * item + 5, 100, 100)


def caption_of(item: int, view: int) -> str:
    return f"Item {item} view {view}."


def _unit(angles: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


class CircleModel:
    """ImagePreprocessor, ImageEncoder, VideoEncoder, ImageTextEmbedder (+ ImageTextMatcher when
    ``itm`` is given: ``itm(image_item, text_item) -> logit``). Records every ``match`` call."""

    image_size = 4

    def __init__(self, itm: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.match_calls: list[list[tuple[int, int, int]]] = []
        if itm is not None:
            self.itm = itm
            self.match = self._match

    def preprocess(self, images: Sequence) -> torch.Tensor:
        arrays = [np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32) / 255 for image in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)

    @staticmethod
    def _items(pixels: torch.Tensor) -> torch.Tensor:
        red = pixels[..., 0, :, :].mean(dim=(-1, -2)) * 255
        return torch.round((red - 5) / 10)

    def _features(self, items: torch.Tensor) -> VisualFeatures:
        tokens = torch.zeros(len(items), 2, 3)
        tokens[:, 0, 0] = items
        return VisualFeatures(embeds=_unit(items * STEP), tokens=tokens)

    def encode_images(self, pixels: torch.Tensor) -> VisualFeatures:
        return self._features(self._items(pixels))

    def encode_videos(self, frames: torch.Tensor) -> VisualFeatures:
        visual = self._features(self._items(frames).mean(dim=1))
        # Every frame's tokens, concatenated, as a video's features carry them.
        return VisualFeatures(embeds=visual.embeds, tokens=visual.tokens.repeat(1, frames.shape[1], 1))

    def encode_texts(self, texts: Sequence[str]) -> TextFeatures:
        ids = [[int(n) for n in re.findall(r"\d+", text)] for text in texts]
        items = torch.tensor([i for i, _ in ids], dtype=torch.float32)
        views = torch.tensor([j for _, j in ids], dtype=torch.float32)
        input_ids = torch.tensor([[101, i, j] for i, j in ids])
        return TextFeatures(
            embeds=_unit(items * STEP + 0.01 * (views + 1)), input_ids=input_ids, attention_mask=torch.ones_like(input_ids)
        )

    def _match(self, visual: VisualFeatures, texts: TextFeatures, pairs: torch.Tensor) -> torch.Tensor:
        image_items = visual.tokens[pairs[:, 0], 0, 0].long()
        text_ids = texts.input_ids[pairs[:, 1]]
        self.match_calls.append(
            [(int(i), int(t[1]), int(t[2])) for i, t in zip(image_items, text_ids, strict=True)]
        )
        return self.itm(image_items, text_ids[:, 1])


class ConstantModel(CircleModel):
    """Gives every item and text the same embedding and every pair the same ITM logit."""

    def __init__(self) -> None:
        super().__init__(itm=lambda images, texts: torch.zeros(len(images)))

    def _features(self, items: torch.Tensor) -> VisualFeatures:
        visual = super()._features(items)
        return VisualFeatures(embeds=_unit(torch.zeros(len(items))), tokens=visual.tokens)

    def encode_texts(self, texts: Sequence[str]) -> TextFeatures:
        features = super().encode_texts(texts)
        return TextFeatures(_unit(torch.zeros(len(texts))), features.input_ids, features.attention_mask)


ANSWERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class VideoAnswerModel(CircleModel):
    """VisualQuestionAnswerer: answers ``ANSWERS[item]`` for a video of ``colour_of(item)``."""

    def __init__(self) -> None:
        super().__init__()
        self.rank_calls: list[tuple[int, int]] = []
        self.settings: list[GenerationSettings] = []
        self.videos_encoded = 0

    def encode_videos(self, frames: torch.Tensor) -> VisualFeatures:
        self.videos_encoded += len(frames)
        return super().encode_videos(frames)

    def _video_items(self, visual: VisualFeatures) -> list[int]:
        return [int(item) for item in visual.tokens[:, 0, 0].round()]

    def rank_answers(self, visual: VisualFeatures, questions: Sequence[str], answer_list: Sequence[str], k: int) -> list[int]:
        assert len(visual.tokens) == len(questions)
        self.rank_calls.append((len(questions), k))
        return [answer_list.index(ANSWERS[item]) for item in self._video_items(visual)]

    def answer(self, visual: VisualFeatures, questions: Sequence[str], settings: GenerationSettings) -> list[str]:
        assert len(visual.tokens) == len(questions)
        self.settings.append(settings)
        return [ANSWERS[item] for item in self._video_items(visual)]



def blip_score_matrices(model: CircleModel, visual: VisualFeatures, texts: TextFeatures, k: int) -> tuple[np.ndarray, np.ndarray]:
    """BLIP's retrieval scores written plainly, one query at a time: (visual x texts, texts x
    visual) matrices holding ITM logit + ITC cosine for each query's top k and -100 elsewhere
    (a shortlist is never longer than the gallery)."""
    visual_items = visual.tokens[:, 0, 0].long()
    text_items = texts.input_ids[:, 1]
    sims = visual.embeds @ texts.embeds.T
    to_text = torch.full(sims.shape, -100.0)
    k_text = min(k, sims.shape[1])
    for v in range(sims.shape[0]):
        values, idx = sims[v].topk(k_text)
        to_text[v, idx] = model.itm(visual_items[v].repeat(k_text), text_items[idx]) + values
    to_visual = torch.full(sims.T.shape, -100.0)
    k_visual = min(k, sims.shape[0])
    for t in range(sims.shape[1]):
        values, idx = sims[:, t].topk(k_visual)
        to_visual[t, idx] = model.itm(visual_items[idx], text_items[t].repeat(k_visual)) + values
    return to_text.numpy(), to_visual.numpy()
