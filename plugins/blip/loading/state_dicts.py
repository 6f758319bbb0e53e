"""State-dict plumbing shared by every BLIP head: BLIP's ViT key names, and strict loading that
names every key that does not fit (a checkpoint of another architecture must never half-load)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from harness.errors import ModelLoadError
from harness.weights_check import first_names, tensor_problems

__all__ = ["first_names", "load_state_strict", "rename_official_vision_key"]

_VISION_RENAMES: tuple[tuple[str, str], ...] = (
    (r"cls_token", r"embeddings.class_embedding"),
    (r"pos_embed", r"embeddings.position_embedding"),
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embedding.\1"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"encoder.layers.\1.layer_norm1.\2"),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"encoder.layers.\1.self_attn.qkv.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layers.\1.self_attn.projection.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"encoder.layers.\1.layer_norm2.\2"),
    (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"encoder.layers.\1.mlp.\2.\3"),
    (r"norm\.(weight|bias)", r"post_layernorm.\1"),
)
"""BLIP's timm-style ViT names (after ``visual_encoder.``) -> transformers' ``BlipVisionModel``."""


def rename_official_vision_key(name: str) -> str | None:
    """A key of BLIP's ViT without its ``visual_encoder.`` prefix -> the matching key of
    ``BlipVisionModel``; None when the name is not part of BLIP's ViT."""
    for pattern, replacement in _VISION_RENAMES:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module``, naming every missing, unexpected or misshapen key, and every
    tensor whose dtype the copy would change in kind (integer weights into a float parameter)."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misfits = tensor_problems(expected, {key: (tensor.shape, tensor.dtype) for key, tensor in state.items()})
    problems = [
        f"{label} {first_names(names)}"
        for label, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("tensors of another shape or dtype (refused, not cast or resized)", misfits),
        )
        if names
    ]
    if problems:
        raise ModelLoadError(f"{source}: weights do not fit {type(module).__name__}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)

