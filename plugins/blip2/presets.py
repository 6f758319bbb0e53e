"""Model factories of the ``blip2`` and ``blip2-tiny`` presets.

A factory picks the head the task needs (``catalog.TASK_HEADS``) and the weights (``--weights`` or
the preset's checkpoint for that task, resolved by ``common.weights.resolve_weights``: local cache or a
directory, never a download) and returns the head's model object.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.errors import ConfigError, ModelLoadError
from harness.specs import ModelRequest
from harness_plugins.blip2.base import Blip2Model
from harness_plugins.blip2.catalog import GENERATION, RETRIEVAL, TASK_HEADS, WEIGHTS
from harness_plugins.blip2.generation import Blip2GenerationModel
from harness_plugins.blip2.loading import LoadedBlip2, load_blip2
from harness_plugins.blip2.retrieval import Blip2RetrievalModel
from harness_plugins.blip2.tiny import random_tiny
from harness_plugins.common.weights import missing_checkpoint, resolve_weights

DEFAULT_IMAGE_SIZE = 224

MODEL_CLASSES: Mapping[str, type[Blip2Model]] = {RETRIEVAL: Blip2RetrievalModel, GENERATION: Blip2GenerationModel}


def head_for_task(task: str) -> str:
    if task not in TASK_HEADS:
        raise ConfigError(f"BLIP-2 has no head for task {task!r}; it runs {', '.join(TASK_HEADS)}")
    return TASK_HEADS[task]


def _load(request: ModelRequest, head: str, tiny: bool, image_size: int) -> LoadedBlip2:
    if request.weights:
        return load_blip2(resolve_weights(request.weights), head)
    if tiny:
        return random_tiny(head, image_size, request.seed)
    default = WEIGHTS.get(request.task)
    if default is None:
        raise ModelLoadError(
            f"blip2: BLIP-2 released no checkpoint for {request.task!r}; pass --weights (a hub id or a directory)"
        )
    return load_blip2(resolve_weights(default), head)


def missing_blip2_weights(request: ModelRequest) -> str | None:
    """What ``_load`` would miss for ``request``, without loading anything (``harness run`` asks
    before any weights load, so every missing checkpoint is named at once)."""
    if request.task not in TASK_HEADS:
        return None
    name = request.weights or WEIGHTS.get(request.task)
    if name is None:
        return f"blip2 has no checkpoint for {request.task!r}: pass --weights"
    return missing_checkpoint(name)


def build(request: ModelRequest, tiny: bool = False) -> Blip2Model:
    """The model object for ``request.task``."""
    head = head_for_task(request.task)
    image_size = int(request.protocol.get("image_size", DEFAULT_IMAGE_SIZE))
    return MODEL_CLASSES[head](_load(request, head, tiny, image_size), request, image_size)


def build_blip2(request: ModelRequest) -> Blip2Model:
    return build(request)


def build_blip2_tiny(request: ModelRequest) -> Blip2Model:
    return build(request, tiny=True)
