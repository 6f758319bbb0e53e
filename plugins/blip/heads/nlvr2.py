"""BLIP's NLVR2 model: a text encoder that cross-attends to two images at once.

transformers has no NLVR2 class, so this module builds one on its BLIP text layers. Every layer of
``BlipTextModel`` keeps its self-attention and feed-forward; only its cross-attention is replaced
by ``TwinCrossAttention``, which attends to the left image with one set of weights (``self0``,
``dense0``) and to the right image with another (``self1``, ``dense1``). Below ``merge_layer``
the two branches' outputs are averaged; from ``merge_layer`` on they are concatenated and mixed by
a 2H -> H linear, so the model is not symmetric in its two images. A two-way classifier reads the
first token (``[ENC]``, put there by the caller) of the last layer.

Module names follow BLIP's released ``model_base_nlvr.pth`` (``text_encoder.*``, ``cls_head.*``),
so its text and head keys load unchanged; only the vision keys are renamed (``visual_encoder.*``
-> ``vision_model.*``, by ``checkpoint.to_transformers_layout`` as for every BLIP head).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

from harness.errors import ModelLoadError
from harness.weights_check import one_line
from harness_plugins.blip.loading.state_dicts import load_state_strict

DEFAULT_MERGE_LAYER = 6
"""BLIP's threshold for its 12-layer text encoder: layers 0-5 average, layers 6-11 merge."""

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE = "BlipNLVR2Model"


@dataclass
class BlipNLVR2Config:
    """Everything that shapes a ``BlipNLVR2Model``; saved as ``config.json`` beside the weights."""

    vision_config: BlipVisionConfig
    text_config: BlipTextConfig
    merge_layer: int = DEFAULT_MERGE_LAYER

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": ARCHITECTURE,
            "merge_layer": self.merge_layer,
            "vision_config": self.vision_config.to_dict(),
            "text_config": self.text_config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlipNLVR2Config:
        return cls(
            vision_config=BlipVisionConfig.from_dict(data["vision_config"]),
            text_config=BlipTextConfig.from_dict(data["text_config"]),
            merge_layer=int(data["merge_layer"]),
        )


class TwinCrossAttentionOutput(nn.Module):
    """Combines the two branches' attention outputs, then dropout, residual and one shared LayerNorm."""

    def __init__(self, config: BlipTextConfig, merge: bool) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.dense0 = nn.Linear(hidden, hidden)
        self.dense1 = nn.Linear(hidden, hidden)
        self.merge_layer = nn.Linear(2 * hidden, hidden) if merge else None
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, context_left: torch.Tensor, context_right: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        """contexts (B, T, H) from each branch, residual (B, T, H) -> (B, T, H)."""
        left = self.dense0(context_left)
        right = self.dense1(context_right)
        if self.merge_layer is None:
            combined = (left + right) / 2
        else:
            combined = self.merge_layer(torch.cat([left, right], dim=-1))
        return self.LayerNorm(self.dropout(combined) + residual)


class TwinCrossAttention(nn.Module):
    """Stands in for ``BlipTextLayer.crossattention``; ``encoder_hidden_states`` is the pair
    ``(left_image_tokens, right_image_tokens)``.

    The layer also passes an image attention mask and a generation cache. Neither applies: image
    tokens are never padded (BLIP passes all-ones masks) and NLVR2 encodes, it does not generate.
    """

    def __init__(self, config: BlipTextConfig, layer_idx: int, merge: bool) -> None:
        super().__init__()
        self.self0 = BlipTextSelfAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.self1 = BlipTextSelfAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.output = TwinCrossAttentionOutput(config, merge=merge)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: tuple[torch.Tensor, torch.Tensor] | None = None,
        **_layer_kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        if not isinstance(encoder_hidden_states, tuple) or len(encoder_hidden_states) != 2:
            raise ValueError("NLVR2 cross-attention needs encoder_hidden_states=(left_tokens, right_tokens)")
        left_tokens, right_tokens = encoder_hidden_states
        context_left, _ = self.self0(hidden_states, encoder_hidden_states=left_tokens)
        context_right, _ = self.self1(hidden_states, encoder_hidden_states=right_tokens)
        # The layer discards the second element; attention maps, when asked for, are recorded
        # from self0/self1 by transformers' output capture.
        return self.output(context_left, context_right, hidden_states), None


class BlipNLVR2Model(nn.Module):
    """BLIP's NLVR2 classifier: ViT for each image, twin cross-attention text encoder, 2-way head."""

    def __init__(
        self,
        vision_config: BlipVisionConfig,
        text_config: BlipTextConfig,
        merge_layer: int = DEFAULT_MERGE_LAYER,
    ) -> None:
        super().__init__()
        if not 0 <= merge_layer <= text_config.num_hidden_layers:
            raise ValueError(
                f"merge_layer {merge_layer} is outside 0..{text_config.num_hidden_layers} "
                "(the text encoder's number of layers)"
            )
        # As BlipConfig does: the cross-attention keys and values read the ViT's width.
        text_config = copy.deepcopy(text_config)
        text_config.encoder_hidden_size = vision_config.hidden_size
        self.merge_layer = merge_layer

        self.vision_model = BlipVisionModel(vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        for index, layer in enumerate(self.text_encoder.encoder.layer):
            layer.crossattention = TwinCrossAttention(text_config, index, merge=index >= merge_layer)
        hidden = text_config.hidden_size
        self.cls_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    @property
    def config(self) -> BlipNLVR2Config:
        """Read from the submodules, so a change made to them (e.g. the vision resolution set at
        load time) is what ``save_nlvr2`` writes."""
        return BlipNLVR2Config(self.vision_model.config, self.text_encoder.config, self.merge_layer)

    def forward(
        self,
        image_embeds_left: torch.Tensor,
        image_embeds_right: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """image tokens (B, L, Dv) of each image, statement ids (B, T) with ``[ENC]`` already in
        place of the first token, their mask (B, T) -> logits (B, 2); class 1 means "true"."""
        hidden = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=(image_embeds_left, image_embeds_right),
        ).last_hidden_state
        return self.cls_head(hidden[:, 0, :])


def save_nlvr2(model: BlipNLVR2Model, out_dir: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``out_dir``; returns the folder."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True))
    tensors = {key: tensor.detach().contiguous().cpu() for key, tensor in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    return folder


def load_nlvr2(path: str | Path) -> BlipNLVR2Model:
    """A model saved by ``save_nlvr2``, in eval mode; every problem names the file at fault."""
    folder = Path(path)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for required in (config_path, weights_path):
        if not required.is_file():
            raise ModelLoadError(f"NLVR2 model folder {folder} lacks {required.name}")
    try:
        data = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("architecture") != ARCHITECTURE:
        raise ModelLoadError(f"{config_path}: expected 'architecture': {ARCHITECTURE!r}")
    from huggingface_hub.errors import StrictDataclassError

    try:
        config = BlipNLVR2Config.from_dict(data)
        model = BlipNLVR2Model(config.vision_config, config.text_config, config.merge_layer)
    except (KeyError, TypeError, ValueError, StrictDataclassError) as exc:
        raise ModelLoadError(f"{config_path}: malformed NLVR2 config ({one_line(exc)})") from exc
    try:
        state_dict = load_file(str(weights_path))
    except Exception as exc:
        raise ModelLoadError(f"{weights_path}: cannot be read as safetensors ({exc})") from exc
    load_state_strict(model, state_dict, str(weights_path))
    return model.eval()
