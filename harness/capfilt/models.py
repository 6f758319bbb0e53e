"""CapFilt's captioners and filter: built through the registry as ``harness run`` builds a model,
and used only through capability protocols.

A model plugin builds the head a task needs, so each role is built for the task whose head it
is: the captioner for ``coco_captioning`` (BLIP's CapFilt captioner is its captioning decoder
fine-tuned on COCO), the filter for ``coco_retrieval`` (the ITM head fine-tuned on COCO). Those
tasks' protocols (resolution, prompt, lengths) with the model's own adjustments are the settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.capabilities import (
    CAPABILITIES,
    GenerationSettings,
    ImageTextEmbedder,
    ImageTextMatchProbability,
)
from harness.config import merge_protocol
from harness.errors import CapabilityError, ConfigError
from harness.registry import Registry
from harness.results import weights_identity
from harness.specs import ModelRequest

CAPTIONER_TASK = "coco_captioning"
FILTER_TASK = "coco_retrieval"
CAPTIONER_NEEDS = ("ImagePreprocessor", "ImageEncoder", "Captioner")
FILTER_NEEDS = {
    "itm": ("ImagePreprocessor", "ImageEncoder", "ImageTextEmbedder", "ImageTextMatchProbability"),
    "cosine": ("ImagePreprocessor", "ImageEncoder", "ImageTextEmbedder"),
}
FILTER_SCORES = ("auto", *FILTER_NEEDS)


@dataclass(frozen=True)
class Device:
    device: str
    precision: str
    seed: int


def _build(registry: Registry, name: str, weights: str | None, task: str, needs: Sequence[str],
           role: str, device: Device) -> tuple[Any, dict[str, Any]]:
    spec = registry.model(name)
    missing = [c for c in needs if c not in spec.capabilities]
    if missing:
        raise CapabilityError(f"model {name!r} cannot be the CapFilt {role}: it lacks {', '.join(missing)}")
    task_spec = registry.task(task)
    protocol = merge_protocol(task, task_spec.protocol, spec.protocol_overrides, {}, strict=False)
    model = spec.build(ModelRequest(task=task, protocol=protocol, weights=weights, device=device.device,
                                    precision=device.precision, seed=device.seed))
    absent = [c for c in needs if not isinstance(model, CAPABILITIES[c])]
    if absent:
        raise CapabilityError(f"model {name!r} built as the CapFilt {role} does not implement {', '.join(absent)}")
    return model, protocol


def identity(name: str, model: Any) -> dict[str, Any]:
    """Name, weights and their SHA-256, for the record."""
    record = weights_identity(name, getattr(model, "weights_files", []))
    record["weights"] = getattr(model, "weights_name", None)
    return record


def build_captioner(registry: Registry, name: str, weights: str | None, device: Device, sampling: str,
                    top_p: float) -> SyntheticCaptioner:
    model, protocol = _build(registry, name, weights, CAPTIONER_TASK, CAPTIONER_NEEDS, "captioner", device)
    return SyntheticCaptioner(name, model, protocol, sampling, top_p)


def build_filter(registry: Registry, name: str, weights: str | None, device: Device, score: str) -> TextFilter:
    """``score`` is ``itm`` or ``cosine`` (``auto`` resolved by the caller)."""
    if score not in FILTER_NEEDS:
        raise ConfigError(f"--filter-score {score!r}: expected one of {', '.join(FILTER_SCORES)}")
    model, _ = _build(registry, name, weights, FILTER_TASK, FILTER_NEEDS[score], "filter", device)
    return TextFilter(name, model, score)


class SyntheticCaptioner:
    """One captioner: ``n`` captions per image, by nucleus sampling (the paper's) or beam search
    with the captioning protocol's decoding settings (prompt, lengths, beams)."""

    def __init__(self, name: str, model: Any, protocol: dict[str, Any], sampling: str, top_p: float) -> None:
        self.name, self.model = name, model
        self.settings = GenerationSettings(
            num_beams=int(protocol.get("num_beams", 3)), max_length=int(protocol.get("max_length", 20)),
            min_length=int(protocol.get("min_length", 5)), prompt=str(protocol.get("prompt", "")),
            repetition_penalty=float(protocol.get("repetition_penalty", 1.0)),
            sample=sampling == "nucleus", top_p=top_p,
        )

    def captions(self, images: Sequence[Any], n: int, seed: int) -> list[list[str]]:
        """``n`` captions for each image; sampling draws from a generator seeded with ``seed``, so
        a shard's captions do not depend on what ran before it."""
        import torch

        torch.manual_seed(seed)
        visual = self.model.encode_images(self.model.preprocess(images))
        repeated = type(visual)(
            embeds=None if visual.embeds is None else visual.embeds.repeat_interleave(n, dim=0),
            tokens=visual.tokens.repeat_interleave(n, dim=0),
        )
        flat = self.model.caption(repeated, self.settings)
        return [flat[i * n : (i + 1) * n] for i in range(len(images))]

    def record(self) -> dict[str, Any]:
        return {**identity(self.name, self.model), "generation": self.settings.__dict__}


class TextFilter:
    """Scores (image, text) pairs: the model's match probability (``itm``) or the cosine of its
    contrastive embeddings (``cosine``, a CLIP-score filter for models without a matching head)."""

    def __init__(self, name: str, model: Any, score: str) -> None:
        self.name, self.model, self.score = name, model, score

    def scores(self, images: Sequence[Any], texts: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each image, the scores of its texts, in order."""
        import torch

        flat = [text for group in texts for text in group]
        if not flat:
            return [[] for _ in images]
        image_rows = torch.repeat_interleave(torch.arange(len(images)), torch.tensor([len(g) for g in texts]))
        visual = self.model.encode_images(self.model.preprocess(images))
        text_features = self.model.encode_texts(flat)
        if isinstance(self.model, ImageTextMatchProbability) and self.score == "itm":
            pairs = torch.stack([image_rows, torch.arange(len(flat))], dim=1)
            values = self.model.match_probability(visual, text_features, pairs).float().cpu()
        elif isinstance(self.model, ImageTextEmbedder) and visual.embeds is not None:
            values = (visual.embeds.float().cpu()[image_rows] * text_features.embeds.float().cpu()).sum(dim=1)
        else:
            raise CapabilityError(f"model {self.name!r} gave no image embeddings for a cosine filter")
        out, start = [], 0
        for group in texts:
            out.append([round(float(v), 6) for v in values[start : start + len(group)]])
            start += len(group)
        return out

    def record(self) -> dict[str, Any]:
        return {**identity(self.name, self.model), "score": self.score}


def shard_seed(seed: int, *parts: object) -> int:
    """A seed derived from the run's seed and a position (shard, round, captioner, batch)."""
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big")
