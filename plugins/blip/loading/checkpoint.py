"""Official BLIP ``.pth`` checkpoints -> transformers modules.

BLIP's released files hold a ``"model"`` state dict in BLIP's own layout: a timm-style ViT under
``visual_encoder.*`` and BERT-style text modules whose names transformers kept (``text_encoder.*``,
``text_decoder.bert.*``, ``text_decoder.cls.*``). Loading renames the ViT keys, drops what only
training used (momentum encoders ``*_m.*``, the ITC queues, the temperature ``temp``, BERT's
``position_ids`` buffers), resizes the position embeddings to the protocol's resolution, infers
the configuration from the tensor shapes, and refuses any key that is missing, unexpected or
misshapen by name: a checkpoint of another head must never half-load.

Files are read with ``torch.load(weights_only=True)`` only, so a pickle that carries code is
refused instead of run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import ModelLoadError
from harness_plugins.blip.catalog import CAPTION, NLVR2, RETRIEVAL, VQA
from harness_plugins.blip.heads import nlvr2
from harness_plugins.blip.loading.resolution import interpolate_position_embedding, patch_grid
from harness_plugins.blip.loading.state_dicts import (
    first_names,
    load_state_strict,
    rename_official_vision_key,
)

BLIP_VISION_LAYER_NORM_EPS = 1e-6
"""BLIP's ViT uses LayerNorm eps 1e-6 (transformers' default is 1e-5)."""
BLIP_TEXT_LAYER_NORM_EPS = 1e-12
HEAD_DIM = 64
"""Every BLIP attention layer (ViT-B, ViT-L, BERT-base) uses 64-dimensional heads; the number of
heads is therefore width / 64, the one configuration value the tensor shapes do not show."""

_TRAINING_ONLY = re.compile(r"(image_queue|text_queue|idx_queue|ptr_queue|temp)$|.*\.embeddings\.position_ids$")
_TEXT_PREFIX = {RETRIEVAL: "text_encoder.", VQA: "text_encoder.", NLVR2: "text_encoder.", CAPTION: "text_decoder.bert."}
HF_CLASSES: Mapping[str, str] = {
    RETRIEVAL: "BlipForImageTextRetrieval",
    CAPTION: "BlipForConditionalGeneration",
    VQA: "BlipForQuestionAnswering",
}
"""The transformers class each head loads into (NLVR2 has none: ``nlvr2.BlipNLVR2Model``)."""
_TIED = (
    ("text_decoder.cls.predictions.decoder.weight", "text_decoder.bert.embeddings.word_embeddings.weight"),
    ("text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias"),
)
"""(key, the key it is tied to): a checkpoint may hold only one of a tied pair; both are the same tensor."""


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ``.pth`` file (its ``"model"`` entry when it has one, as BLIP saves).

    ``weights_only=True`` refuses any pickled object other than tensors and plain containers;
    that refusal, a corrupted file and a file without tensors all become one ``ModelLoadError``
    naming the file.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        code = re.search(r"GLOBAL (\S+)", str(exc))
        if code:
            raise ModelLoadError(
                f"{path}: refused: the file's pickle refers to Python code ({code.group(1)}), which a plain "
                "checkpoint never does; only tensors and plain containers are loaded (weights_only=True)"
            ) from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint (corrupted or another format): {first_line}") from exc
    state = loaded
    if isinstance(loaded, Mapping):
        for entry in ("model", "state_dict"):
            if isinstance(loaded.get(entry), Mapping):
                state = loaded[entry]
                break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: expected a state dict of tensors (or a dict with one under 'model')")
    return dict(state)


def detect_head(keys: Iterable[str], source: str) -> str:
    """Which BLIP model a state dict (official or transformers layout) belongs to."""
    top = {key.split(".", 1)[0] for key in keys}
    if not top & {"visual_encoder", "vision_model"}:
        raise ModelLoadError(
            f"{source}: not a BLIP checkpoint: no vision encoder keys (top-level names: {first_names(sorted(top))})"
        )
    if "cls_head" in top:
        return NLVR2
    if {"text_encoder", "text_decoder", "itm_head"} <= top:
        raise ModelLoadError(
            f"{source}: a BLIP pre-training checkpoint (ITC, ITM and decoder heads together); the harness "
            "evaluates the fine-tuned checkpoints BLIP released for each task"
        )
    if {"text_encoder", "text_decoder"} <= top:
        return VQA
    if "text_decoder" in top:
        return CAPTION
    if "itm_head" in top:
        return RETRIEVAL
    raise ModelLoadError(f"{source}: BLIP vision keys but no known head (top-level names: {first_names(sorted(top))})")


def to_transformers_layout(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename BLIP's ViT keys to transformers' ``vision_model.*``, keep text and head keys, drop
    training-only entries; an unknown ViT key is an error."""
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        top, _, rest = key.partition(".")
        if top.endswith("_m") or _TRAINING_ONLY.fullmatch(key):
            continue
        if top == "visual_encoder":
            renamed = rename_official_vision_key(rest)
            if renamed is None:
                unknown.append(key)
            else:
                converted[f"vision_model.{renamed}"] = tensor
        else:
            converted[key] = tensor
    if unknown:
        raise ModelLoadError(f"{source}: unknown BLIP ViT keys {first_names(unknown)}")
    for key, tied_to in _TIED:
        if key not in converted and tied_to in converted:
            converted[key] = converted[tied_to]
    return converted


def resize_positions(state: dict[str, torch.Tensor], image_size: int) -> None:
    """Resize the ViT position embeddings in ``state`` to ``image_size`` (bicubic), in place."""
    key = "vision_model.embeddings.position_embedding"
    patch = state["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    state[key] = interpolate_position_embedding(state[key], patch_grid(image_size, patch))


def infer_configs(
    state: Mapping[str, torch.Tensor], head: str, tokenizer: Any, image_size: int
) -> tuple[Any, Any]:
    """(BlipVisionConfig, BlipTextConfig) from the shapes of a transformers-layout state dict, with
    BLIP's LayerNorm epsilons and the tokenizer's special ids."""
    from transformers import BlipTextConfig, BlipVisionConfig

    vision_width = state["vision_model.embeddings.class_embedding"].shape[-1]
    vision = BlipVisionConfig(
        hidden_size=vision_width,
        intermediate_size=state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_count_layers(state, r"vision_model\.encoder\.layers\.(\d+)\."),
        num_attention_heads=max(1, vision_width // HEAD_DIM),
        image_size=image_size,
        patch_size=state["vision_model.embeddings.patch_embedding.weight"].shape[-1],
        layer_norm_eps=BLIP_VISION_LAYER_NORM_EPS,
        initializer_range=0.02,
    )
    prefix = _TEXT_PREFIX[head]
    words = state[f"{prefix}embeddings.word_embeddings.weight"]
    sep_id = tokenizer.sep_token_id
    text = BlipTextConfig(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        encoder_hidden_size=vision_width,
        intermediate_size=state[f"{prefix}encoder.layer.0.intermediate.dense.weight"].shape[0],
        num_hidden_layers=_count_layers(state, re.escape(prefix) + r"encoder\.layer\.(\d+)\."),
        num_attention_heads=max(1, words.shape[1] // HEAD_DIM),
        max_position_embeddings=state[f"{prefix}embeddings.position_embeddings.weight"].shape[0],
        layer_norm_eps=BLIP_TEXT_LAYER_NORM_EPS,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=sep_id,
        eos_token_id=sep_id,
    )
    return vision, text


def build_module(
    head: str,
    vision: Any,
    text: Any,
    image_text_hidden_size: int = 256,
    merge_layer: int = nlvr2.DEFAULT_MERGE_LAYER,
) -> nn.Module:
    """An untrained module of ``head`` for these configs (``merge_layer`` only shapes NLVR2)."""
    import transformers

    if head == NLVR2:
        return nlvr2.BlipNLVR2Model(vision, text, merge_layer=merge_layer)
    config = transformers.BlipConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_text_hidden_size=image_text_hidden_size
    )
    return getattr(transformers, HF_CLASSES[head])(config)


def load_official(
    path: Path, head: str, image_size: int, tokenizer: Any | None = None
) -> tuple[nn.Module, Any]:
    """An official BLIP checkpoint file as a ``head`` module at ``image_size``, and its tokenizer;
    refuses a checkpoint of another head."""
    state = read_checkpoint(path)
    found = detect_head(state, str(path))
    if found != head:
        raise ModelLoadError(f"{path}: a BLIP {found} checkpoint, but this task needs a {head} checkpoint")
    return module_from_official(state, str(path), head, image_size, tokenizer)


def module_from_official(
    state: Mapping[str, torch.Tensor], source: str, head: str, image_size: int | None, tokenizer: Any | None
) -> tuple[nn.Module, Any]:
    """An official-layout state dict as a transformers module (or ``BlipNLVR2Model``) in eval mode
    at ``image_size`` (None: the checkpoint's own), and its tokenizer (``tokenizer``, or the one
    the vocabulary size calls for: see ``tokenizer.tokenizer_for_vocab``)."""
    from harness_plugins.blip.loading.tokenizer import tokenizer_for_vocab

    # NLVR2's twin cross-attention and classifier keep BLIP's names in ``BlipNLVR2Model``, so the
    # one renaming serves every head.
    converted = to_transformers_layout(state, source)
    try:
        if tokenizer is None:
            tokenizer = tokenizer_for_vocab(converted[f"{_TEXT_PREFIX[head]}embeddings.word_embeddings.weight"].shape[0])
        if image_size is None:
            image_size = saved_image_size(converted)
        resize_positions(converted, image_size)
        vision, text = infer_configs(converted, head, tokenizer, image_size)
    except KeyError as exc:
        raise ModelLoadError(f"{source}: a {head} checkpoint lacks the key {exc}") from exc
    module = build_module(
        head,
        vision,
        text,
        image_text_hidden_size=converted["vision_proj.weight"].shape[0] if "vision_proj.weight" in converted else 256,
        merge_layer=_nlvr2_merge_layer(converted, text.num_hidden_layers) if head == NLVR2 else nlvr2.DEFAULT_MERGE_LAYER,
    )
    load_state_strict(module, converted, source)
    return module.eval(), tokenizer


def saved_image_size(state: Mapping[str, torch.Tensor]) -> int:
    """The resolution a transformers-layout ViT state dict was saved at."""
    positions = state["vision_model.embeddings.position_embedding"].shape[1] - 1
    patch = state["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    return math.isqrt(positions) * patch


def _nlvr2_merge_layer(state: Mapping[str, torch.Tensor], layers: int) -> int:
    """The first text layer whose twin cross-attention merges (has ``merge_layer`` weights)."""
    merging = [
        int(match.group(1))
        for key in state
        if (match := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.crossattention\.output\.merge_layer\.", key))
    ]
    return min(merging) if merging else layers


def _count_layers(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    if not indices:
        raise KeyError(pattern)
    return max(indices) + 1
