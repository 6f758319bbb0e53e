"""Model factories of the ``blip``, ``blip-large`` and ``blip-tiny`` presets.

A factory picks the head the task needs (``catalog.TASK_HEADS``), the weights (``--weights`` or the
preset's checkpoint for that task), loads them at the protocol's resolution and returns the head's
model object, which implements exactly the capabilities those weights support.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.errors import ConfigError, ModelLoadError
from harness.specs import ModelRequest
from harness_plugins.blip.catalog import (
    BASE_WEIGHTS,
    CAPTION,
    LARGE_WEIGHTS,
    NLVR2,
    RETRIEVAL,
    TASK_HEADS,
    VQA,
)
from harness_plugins.blip.heads.base import BlipModel
from harness_plugins.blip.heads.captioning import BlipCaptionModel
from harness_plugins.blip.heads.retrieval import BlipRetrievalModel
from harness_plugins.blip.heads.verification import BlipNLVR2Verifier
from harness_plugins.blip.heads.vqa import BlipVQAModel
from harness_plugins.blip.loading.loader import LoadedBlip, load_blip
from harness_plugins.blip.loading.tokenizer import BERT_TOKENIZER_IDS, cached_bert_tokenizer
from harness_plugins.blip.tiny import load_tiny
from harness_plugins.common.weights import OFFICIAL, missing_checkpoint, resolve_weights

DEFAULT_IMAGE_SIZE = 384

MODEL_CLASSES: Mapping[str, type[BlipModel]] = {
    RETRIEVAL: BlipRetrievalModel,
    CAPTION: BlipCaptionModel,
    VQA: BlipVQAModel,
    NLVR2: BlipNLVR2Verifier,
}


@dataclass(frozen=True)
class Preset:
    name: str
    weights: Mapping[str, str] = field(default_factory=dict)
    tiny: bool = False


BLIP = Preset("blip", BASE_WEIGHTS)
BLIP_LARGE = Preset("blip-large", LARGE_WEIGHTS)
BLIP_TINY = Preset("blip-tiny", tiny=True)


def head_for_task(task: str) -> str:
    if task not in TASK_HEADS:
        raise ConfigError(f"BLIP has no head for task {task!r}; it runs {', '.join(TASK_HEADS)}")
    return TASK_HEADS[task]


def build(preset: Preset, request: ModelRequest) -> BlipModel:
    """The model object for ``request.task`` under ``preset``."""
    head = head_for_task(request.task)
    image_size = int(request.protocol.get("image_size", DEFAULT_IMAGE_SIZE))
    return MODEL_CLASSES[head](_load(preset, head, request, image_size), request, image_size)


def _load(preset: Preset, head: str, request: ModelRequest, image_size: int) -> LoadedBlip:
    if request.weights:
        return load_blip(resolve_weights(request.weights), head, image_size)
    if preset.tiny:
        return load_tiny(head, image_size, request.seed)
    default = preset.weights.get(request.task)
    if default is None:
        raise ModelLoadError(
            f"{preset.name}: BLIP released no checkpoint of this size for {request.task!r}; pass --weights "
            "(a hub id, a converted directory or an official .pth)"
        )
    return load_blip(resolve_weights(default), head, image_size)


def missing_weights(preset: Preset, request: ModelRequest) -> str | None:
    """What ``_load`` would miss for ``request``, without loading anything: the checkpoint and how
    to fetch it, or the BERT tokenizer an official ``.pth`` file needs (it carries none)."""
    if request.task not in TASK_HEADS or (preset.tiny and not request.weights):
        return None
    name = request.weights or preset.weights.get(request.task)
    if name is None:
        return f"{preset.name} has no checkpoint for {request.task!r}: pass --weights"
    missing = missing_checkpoint(name)
    if missing is not None:
        return missing
    if resolve_weights(name).kind == OFFICIAL and cached_bert_tokenizer() is None:
        return f"BLIP's tokenizer for {name}: `hf download {BERT_TOKENIZER_IDS[0]}`"
    return None


def missing_blip_weights(request: ModelRequest) -> str | None:
    return missing_weights(BLIP, request)


def missing_blip_large_weights(request: ModelRequest) -> str | None:
    return missing_weights(BLIP_LARGE, request)


def build_blip(request: ModelRequest) -> BlipModel:
    return build(BLIP, request)


def build_blip_large(request: ModelRequest) -> BlipModel:
    return build(BLIP_LARGE, request)


def build_blip_tiny(request: ModelRequest) -> BlipModel:
    return build(BLIP_TINY, request)
