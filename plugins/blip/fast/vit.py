"""The ViT's self-attention through ``scaled_dot_product_attention``.

Why: transformers' ``BlipAttention`` computes attention eagerly, materialising a 577 x 577 score
matrix per head and layer at 384 px (and its softmax) in memory; on a GPU that, not the matrix
products, bounds the ViT. ``scaled_dot_product_attention`` computes the same softmax(QK^T / sqrt(d)) V
with fused kernels (flash or memory-efficient attention on GPU). The module keeps its parameters
and state-dict keys; only ``forward`` changes, and it returns no attention map (nothing here asks
for one). Inference only: attention dropout is not applied, as evaluation never applies it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.blip.modeling_blip import BlipAttention


class FusedBlipAttention(BlipAttention):
    """``BlipAttention`` whose attention product is one ``scaled_dot_product_attention`` call."""

    def forward(self, hidden_states: torch.Tensor, **_kwargs: Any) -> tuple[torch.Tensor, None]:
        batch, length, width = hidden_states.shape
        query, key, value = (
            self.qkv(hidden_states).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        )
        context = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        return self.projection(context.transpose(1, 2).reshape(batch, length, width)), None


def fuse_vision_attention(module: nn.Module) -> int:
    """Re-class every ViT self-attention of ``module``; returns how many. Parameters unchanged."""
    count = 0
    for child in module.modules():
        if type(child) is BlipAttention:
            child.__class__ = FusedBlipAttention
            count += 1
    return count
